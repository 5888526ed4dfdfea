"""The checkpoint store: keys ``checkpoints/<run id>/a<attempt>-e<epoch>.ckpt`` in the artifact store.

A checkpoint is opaque bytes (the worker writes it with ``torch.save`` and loads it back with
``weights_only=True``; the server never unpickles it). The artifact store (:mod:`app.runs.storage`:
files under ``ARTIFACT_DIR``, or an S3 bucket) writes all or nothing, so a reader sees either the
old or the new checkpoint, never half of one. The newest (attempt, epoch) wins and older ones are
deleted, so a late write from a stale attempt can never shadow the current attempt's checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.runs.storage import BlobStore, LocalStore, TooLarge

if TYPE_CHECKING:
    from app.settings import Settings

PREFIX = "checkpoints"
_NAME = re.compile(r"^a(\d{4,})-e(\d{6,})\.ckpt$")


def artifact_store(settings: Settings) -> BlobStore:
    """The artifact store the settings name (checkpoints and datasets share it):
    ``ARTIFACT_STORE=s3://bucket/prefix``, else files under ``ARTIFACT_DIR``."""
    if settings.artifact_store:
        from app.runs.s3store import S3Store, parse_s3_url, s3_client

        bucket, prefix = parse_s3_url(settings.artifact_store)
        return S3Store(bucket, prefix, client=s3_client(settings))
    return LocalStore(Path(settings.artifact_dir))


class CheckpointTooLarge(Exception):
    """The upload exceeded the configured size limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"checkpoint larger than the limit of {limit} bytes (MAX_CHECKPOINT_BYTES)")
        self.limit = limit


@dataclass(frozen=True)
class StoredCheckpoint:
    run_id: int
    attempt: int
    epoch: int
    key: str
    size: int
    path: Path | None = None  # the file, when the store is the local directory


class CheckpointStore:
    """Checkpoints of every run in ``store`` (a :class:`~app.runs.storage.BlobStore`, or a directory
    path for the local default)."""

    def __init__(self, store: BlobStore | Path | str, *, max_bytes: int) -> None:
        self.blobs: BlobStore = LocalStore(Path(store)) if isinstance(store, str | Path) else store
        self.max_bytes = max_bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckpointStore:
        """The store ``ARTIFACT_STORE``/``ARTIFACT_DIR`` name, limited to ``MAX_CHECKPOINT_BYTES``."""
        return cls(artifact_store(settings), max_bytes=settings.max_checkpoint_bytes)

    @staticmethod
    def key(run_id: int, attempt: int, epoch: int) -> str:
        return f"{PREFIX}/{int(run_id)}/a{int(attempt):04d}-e{int(epoch):06d}.ckpt"

    def run_dir(self, run_id: int) -> Path:
        """The run's folder (local store only; tests and operators look there)."""
        assert isinstance(self.blobs, LocalStore), "run_dir exists for the local store only"
        return self.blobs.root / PREFIX / str(int(run_id))

    def _stored(self, run_id: int) -> list[tuple[int, int, str]]:
        found = []
        for key in self.blobs.list(f"{PREFIX}/{int(run_id)}"):
            match = _NAME.match(key.rsplit("/", 1)[-1])
            if match:
                found.append((int(match.group(1)), int(match.group(2)), key))
        return sorted(found)

    def latest(self, run_id: int) -> StoredCheckpoint | None:
        """The newest stored checkpoint of ``run_id``, or None."""
        for attempt, epoch, key in reversed(self._stored(run_id)):
            size = self.blobs.size(key)
            if size is None:  # replaced by a concurrent write meanwhile: take the next newest
                continue
            path = self.blobs.local_path(key)
            return StoredCheckpoint(
                run_id=run_id, attempt=attempt, epoch=epoch, key=key, size=size, path=path
            )
        return None

    def latest_epoch(self, run_id: int) -> int | None:
        stored = self.latest(run_id)
        return stored.epoch if stored else None

    def read(self, stored: StoredCheckpoint) -> Iterator[bytes]:
        """The checkpoint's bytes, chunk by chunk (``app.runs.storage.NotStored`` if it is gone)."""
        return self.blobs.get_stream(stored.key)

    async def write_stream(
        self, run_id: int, attempt: int, epoch: int, chunks: AsyncIterator[bytes]
    ) -> StoredCheckpoint:
        """Store the checkpoint of ``epoch`` from ``chunks``; raise :class:`CheckpointTooLarge`."""
        key = self.key(run_id, attempt, epoch)
        try:
            size = await self.blobs.put_stream(key, chunks, max_bytes=self.max_bytes)
        except TooLarge:
            raise CheckpointTooLarge(self.max_bytes) from None
        return self._commit(run_id, attempt, epoch, key, size)

    def write_bytes(self, run_id: int, attempt: int, epoch: int, data: bytes) -> StoredCheckpoint:
        if len(data) > self.max_bytes:
            raise CheckpointTooLarge(self.max_bytes)
        key = self.key(run_id, attempt, epoch)
        size = self.blobs.put_bytes(key, data)
        return self._commit(run_id, attempt, epoch, key, size)

    def _commit(self, run_id: int, attempt: int, epoch: int, key: str, size: int) -> StoredCheckpoint:
        """Drop the checkpoints older than the one just stored."""
        for old_attempt, old_epoch, old_key in self._stored(run_id):
            if (old_attempt, old_epoch) < (int(attempt), int(epoch)):
                self.blobs.delete(old_key)
        path = self.blobs.local_path(key)
        return StoredCheckpoint(
            run_id=run_id, attempt=int(attempt), epoch=int(epoch), key=key, size=size, path=path
        )

    def remove(self, run_id: int) -> bool:
        """Delete every checkpoint of ``run_id`` (the run was deleted). True when something was removed."""
        return self.blobs.delete_prefix(f"{PREFIX}/{int(run_id)}") > 0

    def stored_run_ids(self) -> list[int]:
        ids = {key.split("/")[1] for key in self.blobs.list(PREFIX) if key.count("/") >= 2}
        return sorted(int(name) for name in ids if name.isdigit())
