"""Run ids are never reused, on SQLite too.

SQLite gives a table without AUTOINCREMENT the id ``max(id) + 1``: purging the newest runs would hand
their ids to the next runs created, in any project, and whatever still names the old id (a checkpoint
not removed yet, a stale SDK process, a bookmarked compare URL, a pinned report) would name the new
run. Rebuilding ``runs`` with AUTOINCREMENT would drop the table, which cascades to every epoch while
foreign keys are on; instead a purge records the highest id it removed (``id_floors``) and new runs
start above it. PostgreSQL sequences never go back, so nothing is recorded there.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import IdFloor, Run

RUNS = "runs"


def _reuses_ids(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def record_purged(*, session: Session, run_ids: Iterable[int]) -> None:
    """Before purging ``run_ids``: remember the highest, so no new run gets it again."""
    top = max(run_ids, default=None)
    if top is None or not _reuses_ids(session):
        return
    floor = session.get(IdFloor, RUNS)
    if floor is None:
        session.add(IdFloor(name=RUNS, value=top))
    elif floor.value < top:
        floor.value = top
    session.flush()


def next_run_ids(*, session: Session, count: int) -> list[int] | None:
    """Explicit ids for ``count`` new runs where the database would otherwise reuse a purged one
    (None: let the database number them). Called inside the write transaction that inserts them."""
    if not _reuses_ids(session):
        return None
    floor = session.get(IdFloor, RUNS)
    if floor is None:
        return None
    top = session.scalar(select(func.max(Run.id))) or 0
    if top > floor.value:
        return None  # max(id) + 1 is above every purged id already
    return list(range(floor.value + 1, floor.value + 1 + count))
