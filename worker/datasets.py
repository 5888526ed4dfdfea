"""The dataset of a claimed ``npz`` job, opened for training and checked against its sha256.

The worker asks the server about ``spec.dataset_id`` for the run it holds
(``GET /api/v1/datasets/{id}?run=&attempt=``), then:

- an **upload** is read from this host's cache, ``COLLAPSEWATCH_DATASET_CACHE_DIR/<sha256>.npz``, or
  downloaded there first (``Client.download_dataset``; the server sends it only to the attempt that
  holds the run); a cached file is hashed again before use and fetched anew if it was damaged;
- a **reference** ``root-name/relative/path.npz`` is resolved under this host's data root of that
  name (``COLLAPSEWATCH_DATA_ROOTS``), symlinks followed; a path that leaves the root is refused, and
  so is the file actually opened if it turns out to lie elsewhere (a link swapped in between).

Either way the bytes used are the bytes hashed: the open file is hashed, rewound and handed to the
training engine. Content that differs from the registered sha256 (a file swapped or changed after
registration) fails the run with a message saying so. Refusals read the same whether or not a file
exists outside the root.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from collapsewatch.sdk.client import Client
from worker.training.data import DataError

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DatasetInfo:
    """What the server says about a dataset (``GET /api/v1/datasets/{id}``)."""

    id: int
    kind: str  # "upload" | "reference"
    sha256: str
    reference: str | None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(int(data["id"]), str(data["kind"]), str(data["sha256"]).lower(), data.get("reference"))


def fetch_info(client: Client, dataset_id: int, *, run_id: int, attempt: int) -> DatasetInfo:
    response = client.request(
        "GET", f"/api/v1/datasets/{int(dataset_id)}", params={"run": run_id, "attempt": attempt}
    )
    return DatasetInfo.of(response.json())


def open_dataset(
    client: Client,
    dataset_id: int,
    *,
    run_id: int,
    attempt: int,
    cache_dir: Path,
    roots: Mapping[str, Path],
) -> BinaryIO:
    """The dataset's file, open for reading at its start, its content checked (the caller closes it)."""
    info = fetch_info(client, dataset_id, run_id=run_id, attempt=attempt)
    if info.kind == "reference":
        return open_reference(info, roots)
    return open_cached(client, info, cache_dir=cache_dir, run_id=run_id, attempt=attempt)


def sha256_of(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def _changed(info: DatasetInfo, found: str, where: str) -> DataError:
    return DataError(
        f"dataset_id {info.id}: the content {where} has sha256 {found}, not the registered "
        f"{info.sha256}: the file changed after it was registered. Register it again and submit the "
        "job with the new dataset_id"
    )


def _checked(handle: BinaryIO, info: DatasetInfo, where: str) -> BinaryIO:
    found = sha256_of(handle)
    if found != info.sha256:
        handle.close()
        raise _changed(info, found, where)
    return handle


def open_cached(client: Client, info: DatasetInfo, *, cache_dir: Path, run_id: int, attempt: int) -> BinaryIO:
    """An uploaded dataset from the cache by sha256, downloaded into it first when missing."""
    cache = Path(cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = cache / f"{info.sha256}.npz"
    if target.is_file():
        handle = open(target, "rb")  # noqa: SIM115 - handed to the caller
        if sha256_of(handle) == info.sha256:
            return handle
        handle.close()
        target.unlink(missing_ok=True)  # damaged in the cache: fetch it again
    partial = cache / f".download-{uuid.uuid4().hex}.npz"
    try:
        found = client.download_dataset(info.id, run_id=run_id, attempt=attempt, dest=partial)
        if found != info.sha256:
            raise _changed(info, found, "the server sent")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return _checked(open(target, "rb"), info, "in the cache")


def _refused(info: DatasetInfo, why: str) -> DataError:
    return DataError(f"dataset_id {info.id}: reference {info.reference!r} refused: {why}")


def resolve_reference(info: DatasetInfo, roots: Mapping[str, Path]) -> tuple[Path, Path]:
    """``(root, path)``: the data root (resolved) and the reference resolved under it, symlinks
    followed; :class:`DataError` when the root is not configured here or the path leaves it."""
    reference = info.reference or ""
    name, _, relative = reference.partition("/")
    parts = relative.split("/")
    if (
        not relative
        or any(part in ("", ".", "..") for part in parts)
        or "\\" in relative
        or "\x00" in relative
    ):
        raise _refused(info, "it must be root-name/relative/path with no '.', '..' or empty parts")
    if name not in roots:
        configured = ", ".join(sorted(roots)) or "none"
        raise _refused(
            info,
            f"this worker has no data root {name!r} (COLLAPSEWATCH_DATA_ROOTS; configured: {configured})",
        )
    root = roots[name].resolve()
    path = root.joinpath(*parts).resolve()  # symlinks followed, dangling or not: no probing of outside
    if not path.is_relative_to(root):
        raise _refused(info, f"it resolves outside data root {name!r}")
    return root, path


def open_reference(info: DatasetInfo, roots: Mapping[str, Path]) -> BinaryIO:
    """A dataset under a data root, opened, its real location and content checked."""
    root, path = resolve_reference(info, roots)
    name = (info.reference or "").partition("/")[0]
    try:
        # O_NONBLOCK: a FIFO placed there must not hang the worker (no effect on regular files).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        raise _refused(info, _unmatched(name)) from None
    try:
        opened = Path(os.readlink(f"/proc/self/fd/{fd}")) if Path("/proc/self/fd").is_dir() else path
        if not opened.is_relative_to(root):  # a link swapped in after the check above
            raise _refused(info, f"it resolves outside data root {name!r}")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refused(info, _unmatched(name))
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if sha256_of(handle) != info.sha256:
        handle.close()
        raise _refused(info, _unmatched(name))
    return handle


def _unmatched(root_name: str) -> str:
    """One refusal for a missing, unreadable, odd or changed file under a data root: data roots are
    shared by every project on this worker, so the text must not tell which files exist there or
    what they hold (no hash found is printed)."""
    return (
        f"no readable regular file with the registered sha256 under data root {root_name!r} (a missing "
        "file, an unreadable one and one changed since it was registered read the same); check the "
        "path on this worker, then register it again with the file's sha256"
    )
