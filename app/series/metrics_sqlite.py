"""A metrics batch written by the event loop on SQLite: the counterpart of ``app.series.epoch_sqlite``.

The usual path (``app.series.metrics.write_metrics``) sends the batch to the thread pool and runs it
in the request's session. Here the common case, a batch from the run's current attempt, is the same
transaction run by the event loop on its own connection (``app.loop_sqlite``): ``BEGIN IMMEDIATE``;
the run's state read and checked; the points upserted into ``metrics`` and merged into
``metric_chunks`` by the same function the usual path runs on its session's driver connection
(:func:`app.series.metrics.store_batch_sqlite`); the run's ``updated_at`` set, encoded by the
column's own type; ``COMMIT``.

Nothing is written when the run is missing, finished, queued or on another attempt: the transaction
is rolled back and the usual path answers (the same 404 and 409s as before); when another connection
holds the write lock, the usual path waits for it as before. A batch whose steps span many chunks
(``MAX_LOOP_CHUNKS``) is written the usual way too: reading and merging them would hold the event
loop for as long as the series is long.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from functools import lru_cache

from sqlalchemy.engine import Dialect

from app.loop_sqlite import Codec, LoopBusy, LoopSqlite, bind_processor
from app.models import Run
from app.runs.fencing import NOT_WRITABLE_STATUSES
from app.series.chunks import Batch, chunk_span
from app.series.metrics import store_batch_sqlite

# the chunks a batch may read and rewrite on the event loop (keys x chunks spanned): a dense batch of
# 1,000 steps spans 4 or 5; a sparse one (steps 0 and 10**6) would read every chunk in between
MAX_LOOP_CHUNKS = 16
_STATE = "SELECT status, attempt FROM runs WHERE id = ?"
_TOUCH_RUN = "UPDATE runs SET updated_at = ? WHERE id = ?"


@lru_cache(maxsize=4)
def _updated_at(dialect: Dialect) -> Codec:
    return bind_processor(Run.__table__.c.updated_at, dialect)


def write_new_points(*, db: LoopSqlite, run_id: int, attempt: int, batch: Batch, now: datetime) -> int | None:
    """Write ``batch`` to a writable run in one transaction on the event loop's connection; the points
    written, or None when it wrote nothing (the usual path then answers), which includes when another
    connection holds the write lock, and when the batch spans more than ``MAX_LOOP_CHUNKS`` chunks
    (its work grows with them, and the event loop serves everyone else meanwhile). The caller then
    awaits ``db.checkpoint_if_due()``."""
    lo, hi = chunk_span(batch)
    if (hi - lo + 1) * len(batch.names) > MAX_LOOP_CHUNKS:
        return None
    touched = _updated_at(db.dialect)(now)

    def write(conn: sqlite3.Connection) -> int | None:
        found = conn.execute(_STATE, (run_id,)).fetchone()
        if found is None or found[0] in NOT_WRITABLE_STATUSES or found[1] != attempt:
            return None
        store_batch_sqlite(conn, run_id=run_id, batch=batch, attempt=attempt)
        conn.execute(_TOUCH_RUN, (touched, run_id))
        return len(batch.steps)

    try:
        return db.write(write)
    except LoopBusy:
        return None
