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

``ARTIFACT_STORE`` empty keeps files under ``ARTIFACT_DIR`` (a shared volume in docker-compose);
``ARTIFACT_STORE=s3://bucket/prefix`` uses any S3-compatible service through boto3 (AWS S3, MinIO,
Ceph, moto in the tests), so web replicas on several hosts share one store.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.settings import Settings

CHUNK = 1024 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # an S3 upload is buffered in memory up to this size, then on disk
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


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StoreError(
            errno.EIO, f"S3 {what}: {error.get('Code', '?')} {error.get('Message', '')}".strip()
        ) from exc
    except BotoCoreError as exc:
        raise StoreError(errno.EIO, f"S3 {what}: {exc}") from exc


def check_key(key: str) -> str:
    """``key`` if it is a clean relative path (no ``..``, no leading ``/``), else ValueError."""
    if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"artifact key {key!r} is not allowed: use letters, digits, '._-' and '/'")
    return key


def _prefix(prefix: str) -> str:
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
        folder = self.root / _prefix(prefix) if prefix.strip("/") else self.root
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".upload-"))
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def list(self, prefix: str = "") -> list[str]:
        """Every stored key under ``prefix`` (a folder, or '' for all), sorted."""
        start = _prefix(prefix)
        folder = self.root / start if start else self.root
        if not folder.is_dir():
            return []
        keys = [
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        ]
        return sorted(keys)


class S3Store:
    """Objects in ``bucket`` under ``prefix`` through a boto3 S3 client (any S3-compatible service)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any) -> None:
        self.bucket = bucket
        self.prefix = _prefix(prefix)
        self.client = client

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Buffer the upload (memory, then disk past 8 MiB) while counting, then upload it whole, so an
        oversized or interrupted upload never reaches the bucket."""
        from starlette.concurrency import run_in_threadpool

        size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as buffer:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                buffer.write(chunk)
            buffer.seek(0)
            await run_in_threadpool(self._upload, key, buffer)
        return size

    def put_bytes(self, key: str, data: bytes) -> int:
        with _s3_errors("upload"):
            self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)
        return len(data)

    def _upload(self, key: str, handle: IO[bytes]) -> None:
        with _s3_errors("upload"):
            self.client.upload_fileobj(handle, self.bucket, self._name(key))

    def get_stream(self, key: str) -> Iterator[bytes]:
        try:
            with _s3_errors("download"):
                body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except StoreError as exc:
            if _missing(exc.__cause__):
                raise NotStored(key) from None
            raise
        return _body_chunks(body)

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.get_stream(key))

    def size(self, key: str) -> int | None:
        try:
            with _s3_errors("head"):
                head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except StoreError as exc:
            if _missing(exc.__cause__):
                return None
            raise
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def local_path(self, key: str) -> Path | None:
        return None

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        with _s3_errors("delete"):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self._name(key)} for key in keys[start : start + 1000]]
            with _s3_errors("delete"):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def list(self, prefix: str = "") -> list[str]:
        start = self.prefix + _prefix(prefix)
        keys: list[str] = []
        with _s3_errors("list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start)
            for page in pages:
                keys.extend(item["Key"].removeprefix(self.prefix) for item in page.get("Contents", ()))
        return sorted(keys)


def _missing(exc: BaseException | None) -> bool:
    """A ClientError that says the object does not exist."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _body_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client from the settings (empty values fall back to boto3's own configuration)."""
    try:
        import boto3
        from botocore.config import Config
    except ModuleNotFoundError as exc:  # pragma: no cover - the image and [dev] install it
        raise RuntimeError("ARTIFACT_STORE=s3://… needs boto3: pip install 'collapsewatch[s3]'") from exc
    secret = settings.s3_secret_access_key.get_secret_value()
    options: dict[str, Any] = {
        "endpoint_url": settings.s3_endpoint_url or None,
        "region_name": settings.s3_region or None,
        "aws_access_key_id": settings.s3_access_key_id or None,
        "aws_secret_access_key": secret or None,
        # path-style addressing works with every S3-compatible server (MinIO, Ceph, moto)
        "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
    }
    return boto3.client("s3", **options)


def artifact_store(settings: Settings) -> BlobStore:
    """The store the settings name: ``ARTIFACT_STORE=s3://…``, else files under ``ARTIFACT_DIR``."""
    if settings.artifact_store:
        bucket, prefix = parse_s3_url(settings.artifact_store)
        return S3Store(bucket, prefix, client=s3_client(settings))
    return LocalStore(Path(settings.artifact_dir))
