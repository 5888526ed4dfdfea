"""The SDK's on-disk spool of undelivered writes (see :mod:`collapsewatch.sdk.client`).

Every write of a :class:`collapsewatch.sdk.run.Run` (an epoch record, a batch of scalars, log lines, the final
status) goes through an :class:`collapsewatch.sdk.outbox.Outbox`, drained by one background thread, in order:

* normally a write is sent at once (the training loop never waits for the network);
* when a send fails for a retryable reason (connection refused, timeout, 5xx, 429), that write and
  every later one are appended to the run's spool file and re-sent from there, in order, with
  exponential backoff and jitter, until the server answers again;
* spool files are JSON lines, one fsync'd line per write, so a crash loses at most the line being
  written (a torn last line is cut off when the file is opened again). A file belongs to one writer
  (``run-<id>.<session>.jsonl``, locked with ``flock`` while in use); a sidecar ``.offset`` file
  records how many bytes were delivered, and both are deleted once everything is delivered.

Re-sending is safe because every write is idempotent on the server: epoch records are keyed by
``(run, epoch)`` and a replay from the same attempt is a no-op, scalars upsert by ``(run, key, step)``,
and replaying the same finish is a no-op. Only log lines can appear twice (when a response is lost
after the server stored them). Writes keep their order, so the finish always comes last.

Leftover files of a process that died are re-sent by :func:`replay_file` (``Client.flush_spool()``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collapsewatch.sdk.errors import Conflict

try:  # POSIX advisory locks; elsewhere spool files are simply not locked.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("collapsewatch.spool")

Entry = dict[str, Any]


class Spool:
    """The journal of one writer's undelivered writes for one run (see the module docstring).

    Not thread-safe: the :class:`Outbox` serialises access. If the file cannot be written (disk
    full, read-only directory) the entries are kept in memory and a warning is logged once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset_path = path.with_suffix(".offset")
        self._fd: int | None = None
        self._pending: deque[tuple[Entry, int | None]] = deque()  # (entry, end offset in the file)
        self._disk_ok = True

    @classmethod
    def new(cls, directory: Path, run_id: int) -> Spool:
        session = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        return cls(directory / f"run-{run_id}.{session}.jsonl")

    def __len__(self) -> int:
        return len(self._pending)

    def acquire(self) -> bool:
        """Open and lock an existing file and load what is still undelivered.

        Returns False when another live writer holds the file or it vanished meanwhile.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        try:  # deleted (fully delivered) between our open and our lock?
            same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self._fd = fd
        self._load()
        return True

    def _load(self) -> None:
        assert self._fd is not None
        offset = self._read_offset()
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        data = b"".join(chunks)
        if offset > len(data):
            offset = 0  # inconsistent sidecar: re-send everything (writes are idempotent)
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a torn last line from a crash mid-write
            os.ftruncate(self._fd, complete)
            log.warning("spool %s: dropped a partial last line (%d bytes)", self.path, len(data) - complete)
        position = offset
        for line in data[offset:complete].split(b"\n")[:-1]:
            position += len(line) + 1
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("spool %s: skipped an unreadable line at byte %d", self.path, position)
                continue
            self._pending.append((entry, position))

    def _read_offset(self) -> int:
        try:
            return int(self._offset_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def append(self, entry: Entry) -> None:
        """Add ``entry`` at the end, durably (write + fsync) when the disk allows."""
        end: int | None = None
        if self._disk_ok:
            try:
                end = self._append_to_disk(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
            except OSError as exc:
                self._disk_ok = False
                log.warning(
                    "spool %s is not writable (%s); undelivered writes are kept in memory", self.path, exc
                )
        self._pending.append((entry, end))

    def _append_to_disk(self, line: bytes) -> int:
        if self._fd is None:
            self._fd = self._open_for_append()
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        return os.fstat(self._fd).st_size

    def _open_for_append(self) -> int:
        """Open (or create) the journal, locked. A new file is created and locked under a temporary
        name first, so a concurrent :func:`replay_file` can never see it unlocked."""
        if self.path.exists():  # re-opened after release() by a late write of this writer
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._offset_path.unlink()  # never let a stale sidecar skip the entries of a new file
        tmp = self.path.with_suffix(".jsonl.new")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        return fd

    def peek(self) -> Entry | None:
        return self._pending[0][0] if self._pending else None

    def pop(self) -> None:
        """Mark the first entry delivered; deletes the files once nothing is left. A failure to
        record that on disk only means the entry may be sent again later (which is harmless)."""
        _entry, end = self._pending.popleft()
        if self._fd is None:
            return
        try:
            if not self._pending:
                self._delete()
            elif end is not None:
                tmp = self._offset_path.with_suffix(".offset.tmp")
                tmp.write_text(str(end))
                os.replace(tmp, self._offset_path)
        except OSError as exc:
            log.warning("spool %s: could not record a delivery (%s); it may be re-sent", self.path, exc)

    def _delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # first the journal, then the sidecar (a lone sidecar is harmless)
        with contextlib.suppress(FileNotFoundError):
            self._offset_path.unlink()
        self.release()

    def release(self) -> None:
        """Close and unlock; undelivered entries stay on disk for a later :func:`replay_file`."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def leftover_files(directory: Path) -> list[Path]:
    """Spool files in ``directory``, oldest first (by modification time)."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob("run-*.jsonl") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def replay_file(
    path: Path,
    send: Callable[[Entry], None],
    *,
    retryable: tuple[type[BaseException], ...],
    on_rejected: Callable[[Entry, Exception], None],
) -> tuple[int, int]:
    """Re-send the undelivered entries of one spool file in order.

    Stops at the first retryable failure (the server is still away). Returns ``(delivered, left)``;
    a file another live writer holds is skipped and counted as left.
    """
    spool = Spool(path)
    if not spool.acquire():
        return 0, (1 if path.exists() else 0)
    delivered = 0
    try:
        while (entry := spool.peek()) is not None:
            try:
                send(entry)
            except retryable:
                break
            except Exception as exc:
                on_rejected(entry, exc)
            delivered += 1
            spool.pop()
        return delivered, len(spool)
    finally:
        spool.release()


def spool_dir_for(url: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The spool directory of one server: ``<root>/<host_port>-<hash of the URL>``, where ``root``
    defaults to ``$XDG_CACHE_HOME/collapsewatch/spool`` (``~/.cache/collapsewatch/spool``)."""
    if root is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(cache) / "collapsewatch" / "spool"
    readable = re.sub(r"[^A-Za-z0-9]+", "_", url.split("://", 1)[-1]).strip("_")[:60]
    return Path(root) / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


_log = logging.getLogger("collapsewatch.sdk")


def log_rejection(entry: Entry, exc: Exception) -> None:
    """A write the server refused for good (4xx): it is dropped, and we say so."""
    if entry.get("kind") == "finish" and isinstance(exc, Conflict):
        _log.info("run %s was already finished; the replayed finish was ignored", entry.get("run"))
        return
    where = f"epoch {entry['epoch']}" if entry.get("kind") == "epoch" else entry.get("kind")
    _log.warning("run %s: the server refused a %s write, which was dropped: %s", entry.get("run"), where, exc)
