"""The artifact store: opaque blobs by key, on the local disk (the default) or in an S3 bucket.

Keys are relative POSIX paths such as ``checkpoints/7/a0002-e000005.ckpt`` or ``datasets/<sha256>.npz``
(lower-level names for each domain are the domain's business; :mod:`app.runs.artifacts` keeps the
checkpoints). Both backends offer the same operations:

- ``put_stream(key, chunks, max_bytes=)`` / ``put_bytes``: all or nothing; a reader sees the old
  object or the new one, never half of one (local: temporary file, fsync, rename; S3: a PUT or a
  completed multipart upload is atomic). Over ``max_bytes`` raises :class:`TooLarge` and stores nothing.
- ``get_stream(key)`` (an iterator of chunks), ``get_bytes``, ``size``, ``exists``, ``local_path``
  (the file, for the local store only: routes may then serve it with ``FileResponse``).
- ``delete(key)``, ``delete_prefix(prefix)``, ``list(prefix)`` (keys, sorted).

``ARTIFACT_STORE`` empty keeps files under ``ARTIFACT_DIR`` (:class:`LocalStore`, a shared volume in
docker-compose); ``ARTIFACT_STORE=s3://bucket/prefix`` uses any S3-compatible service through boto3
(:class:`app.runs.s3store.S3Store`: AWS S3, MinIO, Ceph, moto in the tests), so web replicas on several
hosts share one store. ``app.runs.artifacts.artifact_store(settings)`` picks the one the settings name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Protocol

CHUNK = 1024 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


class TooLarge(Exception):
    """The upload went over its size limit; nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the limit of {limit} bytes")
        self.limit = limit


class NotStored(KeyError):
    """No object under that key."""


class StoreError(OSError):
    """The store could not be reached or refused the operation (an S3 error, as an ``OSError`` like a
    full or read-only disk, so callers handle both backends alike)."""


def check_key(key: str) -> str:
    """``key`` if it is a clean relative path (no ``..``, no leading ``/``), else ValueError."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"artifact key {key!r} is not allowed: use letters, digits, '._-' and '/'")
    return key


def clean_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return check_key(prefix) + "/" if prefix else ""


class BlobStore(Protocol):
    """What checkpoints and datasets need from a store (see the module docstring)."""

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int: ...
    def put_bytes(self, key: str, data: bytes) -> int: ...
    def get_stream(self, key: str) -> Iterator[bytes]: ...
    def get_bytes(self, key: str) -> bytes: ...
    def size(self, key: str) -> int | None: ...
    def exists(self, key: str) -> bool: ...
    def local_path(self, key: str) -> Path | None: ...
    def delete(self, key: str) -> bool: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def list(self, prefix: str = "") -> list[str]: ...


class LocalStore:
    """Files under ``root`` (one file per key; temporary uploads are hidden ``.upload-*`` files)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=final.parent)
        size = 0
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(max_bytes)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            self._commit(Path(tmp_name), final)
            return size
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> int:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._commit(Path(tmp_name), final)
            return len(data)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    @staticmethod
    def _commit(tmp: Path, final: Path) -> None:
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    def get_stream(self, key: str) -> Iterator[bytes]:
        try:
            handle = self.path(key).open("rb")
        except FileNotFoundError:
            raise NotStored(key) from None
        return _read_chunks(handle)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise NotStored(key) from None

    def size(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (a folder); the count of objects removed."""
        folder = self.root / clean_prefix(prefix) if prefix.strip("/") else self.root
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".upload-"))
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def list(self, prefix: str = "") -> list[str]:
        """Every stored key under ``prefix`` (a folder, or '' for all), sorted."""
        start = clean_prefix(prefix)
        folder = self.root / start if start else self.root
        if not folder.is_dir():
            return []
        keys = [
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        ]
        return sorted(keys)


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
