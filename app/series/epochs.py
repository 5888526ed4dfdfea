"""Epoch records: idempotent upsert with attempt fencing, listing, run summaries.

NaN/Inf policy: collapse statistics must be finite (422 otherwise); metric values are finite numbers
or null, where null means "not finite / not available" (the SDK turns NaN and +-Inf into null).
Fencing: a write must carry the run's current attempt (an older one gets 409, a newer one 409 until it
is claimed); a replay of the epoch by the attempt that already wrote it is a no-op; a newer attempt
overwrites an epoch written by an older one; nothing can be written to a finished run.
When the request's session has not started a transaction (the caller's access is cached), the
epoch route first tries a new epoch from the event loop itself: one statement on PostgreSQL
(``app.series.epoch_pg``), one transaction on SQLite's loop connection (``app.series.epoch_sqlite``);
everything else takes :func:`put_epoch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.models import EPOCH_STAT_COLUMNS, Epoch, Run, utcnow
from app.runs.fencing import RunState, set_run_columns, writable_state
from app.runs.store import Written, get_run, record_event
from app.runs.upsert import dialect_insert
from app.series.epoch_pg import BEST_METRICS, FINAL_STATS
from collapsewatch.contract import CollapseStatsIn, EpochIn, EpochPublic, StdHist

MAX_EPOCH = 2**31 - 1
MAX_DIMS = 2**31 - 1
SCALAR_STATS = EPOCH_STAT_COLUMNS
COLUMNS = (
    *SCALAR_STATS,
    "attempt",
    "metrics",
    "std_hist",
    "singular_values",
    "dim_std",
    "layers",
    "recorded_at",
)
_EPOCHS: Any = Epoch.__table__
_UPSERTS: dict[str, Any] = {}  # per dialect: the epoch INSERT ... ON CONFLICT, built once
_INSERTS: dict[str, Any] = {}  # per dialect: INSERT ... ON CONFLICT DO NOTHING (a new epoch)


@dataclass
class EpochWrite:
    record: EpochPublic
    changed: bool
    written: Written


def stored_stats(values: dict[str, Any]) -> CollapseStatsIn:
    """A stats dict as stored (validated on the way in): constructed without re-validating, but with a
    StdHist (a plain dict there makes pydantic warn on every dump)."""
    hist = StdHist.model_construct(**values["std_hist"])
    return CollapseStatsIn.model_construct(**(values | {"std_hist": hist}))


def epoch_public(row: Epoch) -> EpochPublic:
    stats = None
    if row.mean_sv is not None and row.std_hist is not None:
        values: dict[str, Any] = {name: getattr(row, name) for name in SCALAR_STATS}
        values |= {"singular_values": row.singular_values, "dim_std": row.dim_std, "std_hist": row.std_hist}
        stats = stored_stats(values)
    layers = {name: stored_stats(found) for name, found in (row.layers or {}).items()}
    return EpochPublic(
        epoch=row.epoch,
        attempt=row.attempt,
        metrics=row.metrics,
        stats=stats,
        recorded_at=row.recorded_at,
        layers=layers,
    )


def epoch_values(run_id: int, epoch: int, data: EpochIn, *, recorded_at: datetime) -> dict[str, Any]:
    """The epoch row's columns (Python values, before the columns' types encode them)."""
    values: dict[str, Any] = {
        "run_id": run_id,
        "epoch": epoch,
        "attempt": data.attempt,
        "metrics": data.metrics,
        "recorded_at": recorded_at,
    }
    stats = data.stats
    for name in SCALAR_STATS:
        values[name] = getattr(stats, name) if stats else None
    values["std_hist"] = stats.std_hist.model_dump() if stats else None
    values["singular_values"] = stats.singular_values if stats else None
    values["dim_std"] = stats.dim_std if stats else None
    values["layers"] = {name: found.model_dump() for name, found in data.layers.items()} or None
    return values


def _upsert_statement(*, session: Session) -> Any:
    """Insert an epoch; on (run, epoch) overwrite it only from a newer attempt (Core: no ORM bulk path)."""
    name = session.get_bind().dialect.name
    stmt = _UPSERTS.get(name)
    if stmt is None:
        insert = dialect_insert(session=session, table=_EPOCHS)
        stmt = _UPSERTS[name] = insert.on_conflict_do_update(
            index_elements=["run_id", "epoch"],
            set_={c: insert.excluded[c] for c in COLUMNS},
            where=_EPOCHS.c.attempt < insert.excluded.attempt,
        )
    return stmt


def _insert_statement(*, session: Session) -> Any:
    """Insert an epoch unless (run, epoch) is stored: the common case in one statement."""
    name = session.get_bind().dialect.name
    stmt = _INSERTS.get(name)
    if stmt is None:
        insert = dialect_insert(session=session, table=_EPOCHS)
        stmt = _INSERTS[name] = insert.on_conflict_do_nothing(index_elements=["run_id", "epoch"]).returning(
            _EPOCHS.c.id
        )
    return stmt


def bumped_summary(run: RunState, epoch: int, data: EpochIn) -> tuple[dict[str, Any], int]:
    """The run's summary and last epoch once this new epoch is counted (the run is left as is)."""
    summary = dict(run.summary)
    stats = data.stats
    if stats is not None and epoch >= summary.get("stats_epoch", -1):
        summary |= {name: getattr(stats, name) for name in FINAL_STATS} | {"stats_epoch": epoch}
    for key in BEST_METRICS:
        value = data.metrics.get(key)
        best = summary.get(f"best_{key}")
        if value is not None and (best is None or value > best):
            summary[f"best_{key}"] = value
    return summary, epoch if run.last_epoch is None else max(run.last_epoch, epoch)


def recompute_summary(*, session: Session, run: Run) -> None:
    """Rebuild ``run.summary`` and ``run.last_epoch`` from the stored epochs (after a supersede)."""
    rows = session.execute(
        select(Epoch.epoch, Epoch.metrics, *(getattr(Epoch, n) for n in FINAL_STATS))
        .where(Epoch.run_id == run.id)
        .order_by(Epoch.epoch)
    ).all()
    summary: dict[str, Any] = {}
    for row in rows:
        if row.mean_sv is not None:
            summary |= {name: getattr(row, name) for name in FINAL_STATS} | {"stats_epoch": row.epoch}
        for key in BEST_METRICS:
            value = row.metrics.get(key)
            best = summary.get(f"best_{key}")
            if value is not None and (best is None or value > best):
                summary[f"best_{key}"] = value
    run.summary = summary
    run.last_epoch = rows[-1].epoch if rows else None


def epoch_record(epoch: int, data: EpochIn) -> EpochPublic:
    """The record a PUT of ``epoch`` stores and answers (422 for a dead-dimension count that is not one)."""
    if data.stats is not None and data.stats.dead_dims > MAX_DIMS:
        message = f"{data.stats.dead_dims} is not a dimension count (at most {MAX_DIMS})"
        raise InvalidInput(["body", "stats", "dead_dims"], message)
    return EpochPublic(
        epoch=epoch, attempt=data.attempt, metrics=data.metrics, stats=data.stats, recorded_at=utcnow(),
        layers=data.layers,
    )  # fmt: skip


def put_epoch(
    *, session: Session, run_id: int, epoch: int, data: EpochIn, record: EpochPublic | None = None
) -> EpochWrite:
    """Store one epoch record (see the module docstring for the rules); ``record``: its
    :func:`epoch_record`, when the caller made it already."""
    record = record or epoch_record(epoch, data)
    run = writable_state(session=session, run_id=run_id, attempt=data.attempt)
    values = epoch_values(run_id, epoch, data, recorded_at=record.recorded_at)
    # a new epoch (the common case) in one statement; under the run's write lock nobody else writes
    # this (run, epoch) between the insert and the select below
    inserted = session.connection().execute(_insert_statement(session=session), values).first() is not None
    if inserted:
        summary, last_epoch = bumped_summary(run, epoch, data)
        changes = {"summary": summary, "last_epoch": last_epoch, "updated_at": utcnow()}
        set_run_columns(session=session, run_id=run_id, **changes)
    else:
        where = (_EPOCHS.c.run_id == run_id, _EPOCHS.c.epoch == epoch)
        existing = session.execute(select(_EPOCHS.c.attempt).where(*where)).scalar_one()
        if existing == data.attempt:  # a replay: answer with what is stored
            row = session.scalars(select(Epoch).where(Epoch.run_id == run_id, Epoch.epoch == epoch)).one()
            return EpochWrite(epoch_public(row), changed=False, written=Written())
        if existing > data.attempt:  # pragma: no cover - fenced above
            raise Conflict(f"epoch {epoch} was written by attempt {existing}; {data.attempt} is stale")
        session.execute(_upsert_statement(session=session), [values])
        locked = get_run(session=session, run_id=run_id)  # already locked by writable_state
        recompute_summary(session=session, run=locked)
        locked.updated_at = utcnow()
    event = record_event(
        session=session, run_id=run_id, type="epoch", payload={"epoch": epoch, "attempt": data.attempt}
    )
    return EpochWrite(record, changed=True, written=Written([event]))


def layer_curves(
    *, session: Session, run_ids: list[int], layer: str, key: str
) -> dict[int, dict[int, float]]:
    """``{run: {epoch: value}}`` of one statistic (``mean_sv``, ``sv_position`` …) of one named layer
    (``layer="embedding"`` falls back to the default ``stats`` where a run logged no layers)."""
    if key not in SCALAR_STATS or not run_ids:
        return {}
    stmt = (
        select(Epoch.run_id, Epoch.epoch, Epoch.layers, getattr(Epoch, key))
        .where(Epoch.run_id.in_(run_ids))
        .order_by(Epoch.run_id, Epoch.epoch)
    )
    curves: dict[int, dict[int, float]] = {}
    for run_id, epoch, layers, default in session.execute(stmt):
        found = (layers or {}).get(layer)
        value = found.get(key) if found else (default if layer == "embedding" else None)
        if value is not None:
            curves.setdefault(run_id, {})[epoch] = value
    return curves


def list_epochs(
    *, session: Session, run_id: int, since: int | None = None, limit: int | None = None
) -> list[EpochPublic]:
    stmt = select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)
    if since is not None:
        stmt = stmt.where(Epoch.epoch >= since)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [epoch_public(row) for row in session.scalars(stmt)]
