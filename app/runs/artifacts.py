"""The checkpoint store: one directory per run under ``ARTIFACT_DIR/checkpoints``.

A checkpoint is opaque bytes (the worker writes it with ``torch.save`` and loads it back with
``weights_only=True``; the server never unpickles it). Writes stream into a temporary file in the
same directory, are fsynced and then renamed, so a reader sees either the old or the new checkpoint,
never half of one. The newest (attempt, epoch) wins and older ones are deleted, so a late write from
a stale attempt can never shadow the current attempt's checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^a(\d{4,})-e(\d{6,})\.ckpt$")


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
    path: Path
    size: int


class CheckpointStore:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = Path(root) / "checkpoints"
        self.max_bytes = max_bytes

    def run_dir(self, run_id: int) -> Path:
        return self.root / str(int(run_id))

    def latest(self, run_id: int) -> StoredCheckpoint | None:
        """The newest stored checkpoint of ``run_id``, or None."""
        directory = self.run_dir(run_id)
        if not directory.is_dir():
            return None
        found = sorted((*_parse(path), path) for path in directory.iterdir() if _NAME.match(path.name))
        if not found:
            return None
        attempt, epoch, path = found[-1]
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # replaced by a concurrent write: ask again
            return self.latest(run_id)
        return StoredCheckpoint(run_id=run_id, attempt=attempt, epoch=epoch, path=path, size=size)

    def latest_epoch(self, run_id: int) -> int | None:
        stored = self.latest(run_id)
        return stored.epoch if stored else None

    async def write_stream(
        self, run_id: int, attempt: int, epoch: int, chunks: AsyncIterator[bytes]
    ) -> StoredCheckpoint:
        """Store the checkpoint of ``epoch`` from ``chunks``; raise :class:`CheckpointTooLarge`."""
        directory = self.run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=directory)
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise CheckpointTooLarge(self.max_bytes)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            return self._commit(run_id, attempt, epoch, Path(tmp_name), size)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def write_bytes(self, run_id: int, attempt: int, epoch: int, data: bytes) -> StoredCheckpoint:
        if len(data) > self.max_bytes:
            raise CheckpointTooLarge(self.max_bytes)
        directory = self.run_dir(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return self._commit(run_id, attempt, epoch, Path(tmp_name), len(data))
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _commit(self, run_id: int, attempt: int, epoch: int, tmp: Path, size: int) -> StoredCheckpoint:
        directory = self.run_dir(run_id)
        final = directory / f"a{int(attempt):04d}-e{int(epoch):06d}.ckpt"
        os.replace(tmp, final)
        _fsync_dir(directory)
        for path in directory.iterdir():
            if _NAME.match(path.name) and _parse(path) < (int(attempt), int(epoch)):
                path.unlink(missing_ok=True)
        return StoredCheckpoint(run_id=run_id, attempt=int(attempt), epoch=int(epoch), path=final, size=size)

    def remove(self, run_id: int) -> bool:
        """Delete every checkpoint of ``run_id`` (the run was deleted). True when something was removed."""
        directory = self.run_dir(run_id)
        if not directory.exists():
            return False
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def stored_run_ids(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name) for p in self.root.iterdir() if p.is_dir() and p.name.isdigit())


def _parse(path: Path) -> tuple[int, int]:
    match = _NAME.match(path.name)
    assert match is not None
    return int(match.group(1)), int(match.group(2))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
