"""A new epoch written in one PostgreSQL statement (issue 19: ingestion close to the database's speed).

The usual path (``app.series.epochs.put_epoch``) takes six round trips on PostgreSQL: BEGIN, the run's
row locked and checked, the epoch inserted, the run's summary updated, the event inserted, COMMIT.
Here the common case, a new epoch from the run's current attempt, is one statement run in autocommit
(so itself one transaction) by the event loop, on a connection of ``app.driver_pool`` (no trip to
the thread pool): data-modifying CTEs lock the run's row when it
takes writes from this attempt, insert the epoch unless it exists, and only then bump the summary
(the same rules as ``bumped_summary``, in SQL) and insert the event. Nothing is written unless the
epoch is: when the run is missing, finished, queued or on another attempt, or the epoch is already
stored (a replay, a newer attempt superseding), the statement changes nothing and the usual path
answers (the same 404/409 and replay answers as before).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg as sa_psycopg

from app.db import json_text
from app.driver_pool import AsyncDriverPool, PoolBusy
from app.models import EPOCH_STAT_COLUMNS, RunEvent
from app.runs.fencing import NOT_WRITABLE_STATUSES
from collapsewatch.contract import EpochIn

FINAL_STATS = ("mean_sv", "sv_position", "effective_rank", "dead_dims")  # kept in the run's summary
BEST_METRICS = ("val_acc", "recall_at_1")  # their best value is kept in the run's summary
_NOT_WRITABLE = ", ".join(f"'{s}'" for s in sorted(NOT_WRITABLE_STATUSES))
_JSON_COLUMNS = ("metrics", "std_hist", "singular_values", "dim_std", "layers")
_INT_COLUMNS = ("dead_dims",)


def _typed(name: str) -> str:
    kind = "json" if name in _JSON_COLUMNS else "integer" if name in _INT_COLUMNS else "float8"
    return f"CAST(:{name} AS {kind})"


def _change(pos: int, key: str, when: str) -> str:
    """One row of the summary's changes: (its order, key, its JSON text from json_text, whether due)."""
    return f"({pos}, '{key}', CAST(:sum_{key} AS json), {when})"


_STATS_DUE = (
    "CAST(:sum_stats_epoch AS json) IS NOT NULL "
    "AND :epoch >= COALESCE((r.summary->>'stats_epoch')::integer, -1)"
)


def _better(key: str) -> str:
    stored = f"(r.summary->>'best_{key}')"
    value = f"CAST(:best_{key} AS float8)"
    return f"{value} IS NOT NULL AND ({stored} IS NULL OR {stored}::float8 < {value})"


# the summary's changes as rows, in the order bumped_summary adds them (dict order)
_DUE = [(name, _STATS_DUE) for name in (*FINAL_STATS, "stats_epoch")]
_DUE += [(f"best_{key}", _better(key)) for key in BEST_METRICS]
_CHANGES = ",\n                ".join(_change(pos, key, when) for pos, (key, when) in enumerate(_DUE, 1))
# the run's summary with those changes merged, all in ``json``: every stored number keeps its text
# (``jsonb`` would rewrite 1e+16 as 10000000000000000 and -0.0 as 0), existing keys keep their
# place, new keys follow in order: what ``dict |=`` in bumped_summary does
_MERGED_SUMMARY = f"""(
        WITH changes AS (
            SELECT pos, key, value FROM (VALUES
                {_CHANGES}
            ) AS c(pos, key, value, due)
            WHERE due
        )
        SELECT COALESCE(json_object_agg(key, value ORDER BY pos), '{{}}'::json) FROM (
            SELECT old.key, COALESCE(changes.value, old.value) AS value, old.pos AS pos
            FROM json_each(r.summary) WITH ORDINALITY AS old(key, value, pos)
            LEFT JOIN changes ON changes.key = old.key
            UNION ALL
            SELECT changes.key, changes.value, 1000000 + changes.pos
            FROM changes
            WHERE NOT EXISTS (SELECT 1 FROM json_each(r.summary) AS o(key, value) WHERE o.key = changes.key)
        ) AS merged
    )"""


_STAT_COLUMNS = (*EPOCH_STAT_COLUMNS, "std_hist", "singular_values", "dim_std")
_INSERT_COLUMNS = ("metrics", *_STAT_COLUMNS, "layers")
STATEMENT = text(
    f"""
WITH r AS (
    SELECT id, summary, last_epoch FROM runs
    WHERE id = :run_id AND attempt = :attempt AND status NOT IN ({_NOT_WRITABLE})
    FOR UPDATE
), ins AS (
    INSERT INTO epochs (run_id, epoch, attempt, recorded_at, {", ".join(_INSERT_COLUMNS)})
    SELECT r.id, :epoch, :attempt, CAST(:now AS timestamptz), {", ".join(map(_typed, _INSERT_COLUMNS))}
    FROM r
    ON CONFLICT (run_id, epoch) DO NOTHING
    RETURNING id
), upd AS (
    UPDATE runs SET
        summary = {_MERGED_SUMMARY},
        last_epoch = GREATEST(r.last_epoch, :epoch),
        updated_at = CAST(:now AS timestamptz)
    FROM r
    WHERE runs.id = r.id AND EXISTS (SELECT 1 FROM ins)
    RETURNING runs.id
), ev AS (
    INSERT INTO run_events (run_id, type, payload, created_at)
    SELECT :run_id, 'epoch', CAST(:event AS json), CAST(:now AS timestamptz) FROM ins
    RETURNING id
)
SELECT (SELECT id FROM ins) AS epoch_id, (SELECT id FROM ev) AS event_id,
       (SELECT count(*) FROM upd) AS updated
"""
)
# the statement in psycopg's own parameter style (app.driver_pool runs it)
DRIVER_SQL = str(STATEMENT.compile(dialect=sa_psycopg.dialect()))


def _params(run_id: int, epoch: int, data: EpochIn, now: datetime) -> dict[str, Any]:
    stats = data.stats
    params: dict[str, Any] = {"run_id": run_id, "epoch": epoch, "attempt": data.attempt, "now": now}
    params["metrics"] = json_text(data.metrics)
    for name in EPOCH_STAT_COLUMNS:
        params[name] = getattr(stats, name) if stats else None
    params["std_hist"] = json_text(stats.std_hist.model_dump()) if stats else None
    params["singular_values"] = json_text(stats.singular_values) if stats else None
    params["dim_std"] = json_text(stats.dim_std) if stats else None
    layers = {name: found.model_dump() for name, found in data.layers.items()}
    params["layers"] = json_text(layers) if layers else None
    final = {name: getattr(stats, name) for name in FINAL_STATS} | {"stats_epoch": epoch} if stats else {}
    for name in (*FINAL_STATS, "stats_epoch"):
        params[f"sum_{name}"] = json_text(final[name]) if stats else None
    for key in BEST_METRICS:
        value = data.metrics.get(key)
        params[f"best_{key}"] = value
        params[f"sum_best_{key}"] = json_text(value) if value is not None else None
    params["event"] = json_text({"epoch": epoch, "attempt": data.attempt})
    return params


async def insert_new_epoch(
    *, pool: AsyncDriverPool, run_id: int, epoch: int, data: EpochIn, now: datetime
) -> RunEvent | None:
    """Write a new epoch of a writable run in one autocommitted statement on a connection of
    ``pool``; its event (to publish), or None when it wrote nothing (the usual path then answers),
    which includes when every connection of ``pool`` is busy."""
    try:
        row = await pool.first_row(DRIVER_SQL, _params(run_id, epoch, data, now))
    except PoolBusy:
        return None
    assert row is not None  # the final SELECT always answers one row
    epoch_id, event_id, updated = row
    if epoch_id is None:
        return None
    if event_id is None or updated != 1:  # pragma: no cover - one statement: all or nothing
        raise RuntimeError(f"epoch {epoch} of run {run_id} was written without its event or summary")
    payload = {"epoch": epoch, "attempt": data.attempt}
    return RunEvent(id=int(event_id), run_id=run_id, type="epoch", payload=payload, created_at=now)
