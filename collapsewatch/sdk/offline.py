"""Offline runs: ``init(mode="offline")`` (or ``COLLAPSEWATCH_MODE=offline``) writes the run to a
directory instead of a server, with no network at all, and ``collapsewatch sync`` uploads it later.

Layout, like W&B's ``./wandb/offline-run-*``: under ``$COLLAPSEWATCH_DIR`` (default ``./collapsewatch``
in the working directory), one directory per run, ``offline-run-<YYYYmmdd_HHMMSS>-<id>/`` holding

* ``run.json`` -- the ``RunCreate`` body (project, name, config, tags, provenance and the run's
  ``client_id``, which makes its upload idempotent: the server returns the same run for it);
* ``writes.jsonl`` -- the run's writes in order, one fsync'd JSON line each (epoch records, scalar
  batches, log lines, the final status), locked with ``flock`` while the run is being written;
* ``sync.json`` -- written by ``collapsewatch sync``: per server URL, the run id there and how many
  bytes of ``writes.jsonl`` were delivered, so an interrupted sync resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from collapsewatch.contract import RunCreate
from collapsewatch.sdk.run import Run
from collapsewatch.sdk.spool import Entry

try:  # POSIX advisory locks; elsewhere offline runs are simply not locked.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

RUN_FILE = "run.json"
WRITES_FILE = "writes.jsonl"
SYNC_FILE = "sync.json"
DEFAULT_DIR = "collapsewatch"


def default_root() -> Path:
    """Where offline runs go: ``$COLLAPSEWATCH_DIR``, else ``./collapsewatch`` in the working directory."""
    return Path(os.environ.get("COLLAPSEWATCH_DIR") or DEFAULT_DIR)


def lock(fd: int) -> bool:
    """Take the exclusive lock of an offline run's journal without waiting; False if someone has it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` atomically (a crash leaves the old or the new file, never half)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class OfflineJournal:
    """The sink of an offline run: appends each write to ``writes.jsonl`` (write + fsync), holding the
    file's lock until :meth:`close` (a ``collapsewatch sync`` skips runs still being written)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / WRITES_FILE
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if not lock(self._fd):
            os.close(self._fd)
            raise RuntimeError(f"{self.path} is being written by another process")

    @property
    def pending(self) -> int:
        return 0

    def put(self, entry: Entry) -> None:
        if self._fd is None:
            raise RuntimeError(f"offline run {self.path.parent} is closed")
        line = json.dumps({k: v for k, v in entry.items() if k != "run"}, separators=(",", ":"))
        view = memoryview(line.encode() + b"\n")
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def flush(self, timeout: float | None) -> bool:
        return True

    def close(self, timeout: float | None) -> bool:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        return True


class OfflineRun(Run):
    """A :class:`Run` written to a local directory (``dir``); upload it with ``collapsewatch sync DIR``.

    It has no server id yet (``id`` is None); ``client_id`` names it and makes the upload idempotent."""

    mode = "offline"

    def __init__(
        self, body: RunCreate, root: str | os.PathLike[str] | None = None, *, flush_interval: float = 2.0
    ):
        if body.client_id is None:
            raise ValueError("an offline run needs a client_id")
        base = Path(root) if root is not None else default_root()
        stamp = time.strftime("%Y%m%d_%H%M%S")
        directory = (base / f"offline-run-{stamp}-{body.client_id[:8]}").absolute()
        directory.mkdir(parents=True, exist_ok=False)
        write_json(directory / RUN_FILE, body.model_dump(mode="json"))
        self.client, self.id, self.info, self._heartbeat = None, None, None, None
        self.owns_client = False
        self.dir = directory
        self.client_id = body.client_id
        self._start(OfflineJournal(directory), 1, finish_timeout=0.0, flush_interval=flush_interval)
        where = f"collapsewatch: offline run, written to {directory}"
        print(f"{where}; upload it later with: collapsewatch sync {directory}", file=sys.stderr)

    def __repr__(self) -> str:
        return f"OfflineRun(dir={str(self.dir)!r})"


def find_runs(paths: list[Path]) -> list[Path]:
    """Offline run directories: each path that is one, and the runs directly inside each that is not."""
    found: list[Path] = []
    for path in paths:
        if (path / RUN_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(child for child in path.iterdir() if (child / RUN_FILE).is_file()))
    return found


def read_writes(directory: Path) -> tuple[list[tuple[Entry, int]], int]:
    """The complete lines of ``writes.jsonl`` as ``(entry, end offset)``, and the offset after the last
    one (a torn last line of a crashed writer is ignored)."""
    with contextlib.suppress(FileNotFoundError), open(directory / WRITES_FILE, "rb") as handle:
        data = handle.read()
        complete = data.rfind(b"\n") + 1
        entries: list[tuple[Entry, int]] = []
        position = 0
        for line in data[:complete].split(b"\n")[:-1]:
            position += len(line) + 1
            with contextlib.suppress(ValueError):
                entries.append((json.loads(line), position))
        return entries, complete
    return [], 0
