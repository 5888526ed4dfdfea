"""The fencing checks of a write to a run (DESIGN.md §4), and the lean row the ingestion routes use.

Every ingestion request (an epoch, a metrics batch) locks its run and checks its state and attempt
before writing. :func:`writable_state` does that with one Core ``SELECT … FOR UPDATE`` of the five
columns the checks and the epoch summary need, instead of loading the ORM ``Run`` (its JSON config,
tags, worker and provenance, the identity map): on the epoch PUT that load was the largest single
cost of the request. :func:`set_run_columns` writes columns back with one Core ``UPDATE``. The
checks themselves (:func:`check_writable`) are the ones ``app.runs.store.writable_run`` applies to
an ORM run: both paths answer the same 409s.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from sqlalchemy import Integer, bindparam, select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import Run
from collapsewatch.contract import TERMINAL_STATUSES

_RUNS: Any = Run.__table__
# the statuses in which a run takes no write from any attempt (check_writable's 409s; the event
# loop's one-statement and one-transaction epoch writes test the same set)
NOT_WRITABLE_STATUSES = frozenset({*TERMINAL_STATUSES, "queued"})


class Fenced(Protocol):
    """What the checks read: an ORM ``Run`` or a :class:`RunState`."""

    @property
    def id(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def attempt(self) -> int: ...


class RunState(NamedTuple):
    """A run's row as an ingestion request reads it, under the row lock."""

    id: int
    status: str
    attempt: int
    summary: dict[str, Any]
    last_epoch: int | None


_LOCKED_STATE = (
    select(_RUNS.c.id, _RUNS.c.status, _RUNS.c.attempt, _RUNS.c.summary, _RUNS.c.last_epoch)
    .where(_RUNS.c.id == bindparam("run_id", type_=Integer))
    .with_for_update()
)
_UPDATES: dict[tuple[str, ...], Any] = {}


def check_attempt(run: Fenced, attempt: int) -> None:
    if attempt < run.attempt:
        raise Conflict(
            f"attempt {attempt} is stale: run {run.id} is on attempt {run.attempt}; stop this attempt"
        )
    if attempt > run.attempt:
        raise Conflict(
            f"attempt {attempt} of run {run.id} has not been claimed (current attempt: {run.attempt})"
        )


def check_writable(run: Fenced, attempt: int) -> None:
    """409 when ``run`` takes no write from ``attempt``: terminal, another attempt, or queued again."""
    if run.status in TERMINAL_STATUSES:
        raise Conflict(f"run {run.id} is {run.status}; it accepts no more writes")
    check_attempt(run, attempt)
    if run.status == "queued":
        raise Conflict(
            f"run {run.id} is queued again (the lease of attempt {attempt} expired); stop this attempt"
            if attempt
            else f"run {run.id} is queued; claim it before writing"
        )


def writable_state(*, session: Session, run_id: int, attempt: int) -> RunState:
    """Lock the run for a write from ``attempt`` and return its :class:`RunState`: 404 unknown, 409 as
    :func:`check_writable` says (the lock is PostgreSQL's row lock; SQLite writes are serialised)."""
    # on the session's connection: a Core statement needs none of the ORM's execute machinery
    row = session.connection().execute(_LOCKED_STATE, {"run_id": run_id}).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    state = RunState(row.id, row.status, row.attempt, row.summary or {}, row.last_epoch)
    check_writable(state, attempt)
    return state


def set_run_columns(*, session: Session, run_id: int, **values: Any) -> None:
    """Write ``values`` (column: value) to the run's row with one Core UPDATE, built once per set of
    columns. An ORM ``Run`` of this session already loaded is not refreshed (the caller has none)."""
    names = tuple(sorted(values))
    stmt = _UPDATES.get(names)
    if stmt is None:
        stmt = _UPDATES[names] = (
            update(_RUNS)
            .where(_RUNS.c.id == bindparam("run_id_", type_=Integer))
            .values({name: bindparam(f"{name}_", type_=_RUNS.c[name].type) for name in names})
        )
    params = {"run_id_": run_id} | {f"{name}_": value for name, value in values.items()}
    session.connection().execute(stmt, params)
