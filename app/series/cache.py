"""Rendered ``GET /api/v1/series`` bodies, reused while none of their runs changed.

The version of a cached body is the ``(id, updated_at)`` of each of its runs: every epoch PUT and
metrics POST bumps ``runs.updated_at`` in the same transaction (``app.series.epochs`` /
``app.series.metrics``; the route tests pin it), under the run's write lock, so a changed run
never keeps its old version. The compare page asks the same question again and again while runs
are finished or idle; a changed run costs one full query.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Run

Version = tuple[tuple[int, Any], ...]


def runs_version(*, session: Session, run_ids: Sequence[int]) -> Version:
    rows = session.execute(select(Run.id, Run.updated_at).where(Run.id.in_(run_ids)).order_by(Run.id))
    return tuple((int(r), t) for r, t in rows)


class SeriesCache:
    """A small thread-safe LRU of rendered bodies (one per process and app)."""

    def __init__(self, max_entries: int = 32, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[Hashable, tuple[Version, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Version) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, version: Version, body: str) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._entries[key] = (version, body)
            self._bytes += len(body)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)
