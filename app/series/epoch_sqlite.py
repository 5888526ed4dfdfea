"""A new epoch written by the event loop on SQLite: the counterpart of ``app.series.epoch_pg`` (issue 19).

The usual path (``app.series.epochs.put_epoch``) sends the write to the thread pool and runs it
through the request's session. Here the common case, a new epoch from the run's current attempt, is
the same transaction run by the event loop on its own connection (``app.loop_sqlite``):
``BEGIN IMMEDIATE``; the run's state read and checked; the epoch inserted unless it exists; the
summary bumped by :func:`app.series.epochs.bumped_summary`; the event inserted; ``COMMIT``. Values
are encoded by the columns' own SQLAlchemy types for the engine's dialect, so the rows are the ones
the session would store, byte for byte (JSON text, naive UTC timestamps, JSON ``null``).

Nothing is written unless the epoch is: when the run is missing, finished, queued or on another
attempt, or the epoch is already stored (a replay, a newer attempt superseding), the transaction is
rolled back and the usual path answers (the same 404/409 and replay answers as before); when
another connection holds the write lock, the usual path waits for it as before.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Dialect

from app.loop_sqlite import Codec, LoopBusy, LoopSqlite, bind_processor
from app.models import EPOCH_STAT_COLUMNS, Epoch, Run, RunEvent
from app.runs.fencing import NOT_WRITABLE_STATUSES, RunState
from app.series.epochs import bumped_summary, epoch_values
from collapsewatch.contract import EpochIn

_EPOCH_COLUMNS = ("run_id", "epoch", "attempt", "recorded_at", "metrics", *EPOCH_STAT_COLUMNS,
                  "std_hist", "singular_values", "dim_std", "layers")  # fmt: skip
_STATE = "SELECT status, attempt, summary, last_epoch FROM runs WHERE id = ?"
_INSERT_EPOCH = (
    f"INSERT INTO epochs ({', '.join(_EPOCH_COLUMNS)}) VALUES ({', '.join('?' for _ in _EPOCH_COLUMNS)}) "
    "ON CONFLICT (run_id, epoch) DO NOTHING RETURNING id"
)
_UPDATE_RUN = "UPDATE runs SET summary = ?, last_epoch = ?, updated_at = ? WHERE id = ?"
_INSERT_EVENT = "INSERT INTO run_events (run_id, type, payload, created_at) VALUES (?, ?, ?, ?) RETURNING id"


class _Codecs:
    """The columns' SQLAlchemy bind (and the summary's result) processors for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        epochs, runs, events = Epoch.__table__.c, Run.__table__.c, RunEvent.__table__.c
        self.epoch = [bind_processor(epochs[name], dialect) for name in _EPOCH_COLUMNS]
        self.summary = bind_processor(runs.summary, dialect)
        self.updated_at = bind_processor(runs.updated_at, dialect)
        self.payload = bind_processor(events.payload, dialect)
        self.created_at = bind_processor(events.created_at, dialect)
        read: Codec | None = runs.summary.type.dialect_impl(dialect).result_processor(dialect, None)
        self.read_summary = read or (lambda value: value)

    def epoch_row(self, values: dict[str, Any]) -> list[Any]:
        return [codec(values[name]) for codec, name in zip(self.epoch, _EPOCH_COLUMNS, strict=True)]


@lru_cache(maxsize=4)
def _codecs(dialect: Dialect) -> _Codecs:
    return _Codecs(dialect)


def insert_new_epoch(
    *, db: LoopSqlite, run_id: int, epoch: int, data: EpochIn, now: datetime
) -> RunEvent | None:
    """Write a new epoch of a writable run in one transaction on the event loop's connection; its
    event (to publish), or None when it wrote nothing (the usual path then answers), which includes
    when another connection holds the write lock. The caller then awaits ``db.checkpoint_if_due()``."""
    codecs = _codecs(db.dialect)
    payload = {"epoch": epoch, "attempt": data.attempt}

    def write(conn: sqlite3.Connection) -> int | None:
        found = conn.execute(_STATE, (run_id,)).fetchone()
        if found is None or found[0] in NOT_WRITABLE_STATUSES or found[1] != data.attempt:
            return None
        values = epoch_values(run_id, epoch, data, recorded_at=now)
        if conn.execute(_INSERT_EPOCH, codecs.epoch_row(values)).fetchone() is None:
            return None  # stored already: a replay, or a newer attempt superseding
        state = RunState(run_id, found[0], found[1], codecs.read_summary(found[2]) or {}, found[3])
        summary, last_epoch = bumped_summary(state, epoch, data)
        conn.execute(_UPDATE_RUN, (codecs.summary(summary), last_epoch, codecs.updated_at(now), run_id))
        event = (run_id, "epoch", codecs.payload(payload), codecs.created_at(now))
        event_id: int = conn.execute(_INSERT_EVENT, event).fetchone()[0]
        return event_id

    try:
        event_id = db.write(write)
    except LoopBusy:
        return None
    if event_id is None:
        return None
    return RunEvent(id=event_id, run_id=run_id, type="epoch", payload=payload, created_at=now)
