"""The S3-compatible backend of the artifact store (:mod:`app.runs.storage`), through boto3.

``ARTIFACT_STORE=s3://bucket/prefix`` with ``S3_ENDPOINT_URL`` (empty for AWS), ``S3_REGION`` and
``S3_ACCESS_KEY_ID``/``S3_SECRET_ACCESS_KEY`` (empty: boto3's own lookup). Path-style addressing, so
MinIO, Ceph and moto work as AWS does. S3 errors surface as :class:`app.runs.storage.StoreError`
(an ``OSError``, like a full disk for the local store).
"""

from __future__ import annotations

import contextlib
import errno
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from app.runs.storage import CHUNK, NotStored, StoreError, TooLarge, check_key, clean_prefix

if TYPE_CHECKING:
    from app.settings import Settings

SPOOL_IN_MEMORY = 8 * 1024 * 1024  # an upload is buffered in memory up to this size, then on disk


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


class S3Store:
    """Objects in ``bucket`` under ``prefix`` through a boto3 S3 client (any S3-compatible service)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any) -> None:
        self.bucket = bucket
        self.prefix = clean_prefix(prefix)
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
        start = self.prefix + clean_prefix(prefix)
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


def _body_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


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
