"""Uploaded datasets in the artifact store: ``ARTIFACT_DIR/datasets/<generated name>.npz``.

An upload streams into a temporary file in the same directory (hashed and counted on the way, refused
past the size limit), is checked, then renamed to a random name that nothing the client sent goes into.
A refused or failed upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

_STORED = re.compile(r"^[0-9a-f]{32}\.npz$")
CHUNK = 1024 * 1024


class DatasetTooLarge(Exception):
    """The upload is larger than ``MAX_DATASET_BYTES`` (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"file: the upload is larger than {limit} bytes (MAX_DATASET_BYTES); register data this big "
            "by reference under a worker data root (POST /api/v1/dataset-references)"
        )
        self.limit = limit


@dataclass(frozen=True)
class Received:
    """A finished upload in its temporary file: its size and sha256 (hex)."""

    path: Path
    size: int
    sha256: str


class DatasetFiles:
    def __init__(self, artifact_dir: Path, *, max_bytes: int) -> None:
        self.root = Path(artifact_dir) / "datasets"
        self.max_bytes = max_bytes

    @contextmanager
    def _temporary(self) -> Iterator[tuple[BinaryIO, Path]]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".npz", dir=self.root)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle, path
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    async def receive_stream(self, chunks: AsyncIterator[bytes]) -> Received:
        """Write ``chunks`` to a temporary file; :class:`DatasetTooLarge` past the limit."""
        digest, size = hashlib.sha256(), 0
        with self._temporary() as (handle, path):
            async for chunk in chunks:
                size = self._append(handle, digest, size, chunk)
            handle.flush()
            os.fsync(handle.fileno())
        return Received(path, size, digest.hexdigest())

    def receive_file(self, source: BinaryIO) -> Received:
        """Copy an already received file (a multipart part) into a temporary file of the store."""
        digest, size = hashlib.sha256(), 0
        with self._temporary() as (handle, path):
            while chunk := source.read(CHUNK):
                size = self._append(handle, digest, size, chunk)
            handle.flush()
            os.fsync(handle.fileno())
        return Received(path, size, digest.hexdigest())

    def _append(self, handle: BinaryIO, digest: Any, size: int, chunk: bytes) -> int:
        """Write one chunk and hash it; the size so far, or :class:`DatasetTooLarge` past the limit."""
        size += len(chunk)
        if size > self.max_bytes:
            raise DatasetTooLarge(self.max_bytes)
        digest.update(chunk)
        handle.write(chunk)
        return size

    def keep(self, received: Received) -> str:
        """Move a checked upload to its generated name; returns that name (``storage_name``)."""
        name = f"{secrets.token_hex(16)}.npz"
        os.replace(received.path, self.root / name)
        return name

    def discard(self, received: Received) -> None:
        received.path.unlink(missing_ok=True)

    def path(self, storage_name: str) -> Path:
        """Where a stored upload lives (the name is checked: it never comes from a client)."""
        if not _STORED.match(storage_name):
            raise ValueError(f"not a stored dataset name: {storage_name!r}")
        return self.root / storage_name

    def remove(self, storage_name: str) -> None:
        self.path(storage_name).unlink(missing_ok=True)
