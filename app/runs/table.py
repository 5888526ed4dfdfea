"""The dashboard's runs table: filters (incl. method from the config) and sorts (incl. the collapse
summary kept on each run). A plain query function; the page and the bench call it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from app.models import Project, Run
from app.runs.store import config_equals, has_tag
from app.runs.visibility import LIFECYCLES, lifecycle_clause
from collapsewatch.contract import RunStatus

SUMMARY_SORTS = ("mean_sv", "sv_position", "effective_rank", "dead_dims", "best_val_acc", "best_recall_at_1")
COLUMN_SORTS: dict[str, Any] = {
    "id": Run.id,
    "name": Run.name,
    "status": Run.status,
    "created_at": Run.created_at,
    "last_epoch": Run.last_epoch,
}
SORT_KEYS = (*COLUMN_SORTS, *SUMMARY_SORTS)
NOT_NULL = frozenset({"id", "status", "created_at"})
STATUSES: tuple[str, ...] = RunStatus.__args__  # type: ignore[attr-defined]
PAGE_SIZE = 50


@dataclass(frozen=True)
class TableQuery:
    project: str = ""
    status: str = ""
    regularizer: str = ""
    objective: str = ""
    tag: str = ""
    sweep: str = ""
    sort: str = "-id"
    page: int = 1
    lifecycle: str = "live"  # live | archived | all | trash (app.runs.visibility)

    def problems(self) -> dict[str, str]:
        """Query values the table cannot honour, by parameter (the page shows them and ignores them)."""
        found: dict[str, str] = {}
        if self.sort.removeprefix("-") not in SORT_KEYS:
            found["sort"] = f"{self.sort!r} is not a column; use one of {', '.join(SORT_KEYS)}"
        if self.lifecycle not in LIFECYCLES:
            found["lifecycle"] = f"{self.lifecycle!r} is not a view; use one of {', '.join(LIFECYCLES)}"
        if self.status and self.status not in STATUSES:
            found["status"] = f"{self.status!r} is not a status; use one of {', '.join(STATUSES)}"
        return found


@dataclass
class TablePage:
    runs: list[Run]
    total: int
    page: int
    pages: int
    problems: dict[str, str] = field(default_factory=dict)


def _filtered(*, session: Session, q: TableQuery, visible: list[int] | None) -> Select[Any]:
    stmt = select(Run).join(Run.project)
    shown = q.lifecycle if q.lifecycle in LIFECYCLES else "live"
    stmt = stmt.where(lifecycle_clause(shown))
    if visible is not None:
        stmt = stmt.where(Run.project_id.in_(visible))
    if q.project:
        stmt = stmt.where(Project.name == q.project)
    if q.status in STATUSES:
        stmt = stmt.where(Run.status == q.status)
    if q.regularizer:
        stmt = stmt.where(config_equals(key="regularizer", value=q.regularizer))
    if q.objective:
        stmt = stmt.where(config_equals(key="objective", value=q.objective))
    if q.sweep:
        stmt = stmt.where(Run.sweep_id == q.sweep)
    if q.tag:
        stmt = stmt.where(has_tag(session=session, tag=q.tag))
    return stmt


def _order(sort: str) -> list[Any]:
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        key, sort = "id", "-id"
    column = COLUMN_SORTS[key] if key in COLUMN_SORTS else Run.summary[key].as_float()
    descending = sort.startswith("-")
    ordered = column.desc() if descending else column.asc()
    if key not in NOT_NULL:  # NULLS LAST on a NOT NULL column would keep PostgreSQL off its index
        ordered = ordered.nulls_last()
    return [ordered, Run.id.desc() if descending else Run.id.asc()]


def runs_table(
    *, session: Session, query: TableQuery, visible: list[int] | None = None, page_size: int = PAGE_SIZE
) -> TablePage:
    """One page of runs matching the filters, sorted, with the total count. ``visible``: the
    project ids the viewer may read (None = all, for admins; see app.auth.roles.visible_project_ids)."""
    stmt = _filtered(session=session, q=query, visible=visible)
    total = int(
        session.scalar(select(func.count()).select_from(stmt.with_only_columns(Run.id).subquery())) or 0
    )
    pages = max(1, -(-total // page_size))
    page = min(max(1, query.page), pages)
    rows = session.scalars(stmt.order_by(*_order(query.sort)).limit(page_size).offset((page - 1) * page_size))
    return TablePage(list(rows.unique()), total, page, pages, query.problems())


def filter_choices(*, session: Session, visible: list[int] | None = None) -> dict[str, list[str]]:
    """Values for the filter drop-downs: the viewer's projects and most recent sweeps."""
    projects_stmt = select(Project.name).order_by(Project.name)
    sweeps_stmt = (
        select(Run.sweep_id, func.max(Run.id).label("newest"))
        .where(Run.sweep_id.is_not(None), lifecycle_clause("live"))
        .group_by(Run.sweep_id)
        .order_by(text("newest DESC"))
        .limit(30)
    )
    if visible is not None:
        projects_stmt = projects_stmt.where(Project.id.in_(visible))
        sweeps_stmt = sweeps_stmt.where(Run.project_id.in_(visible))
    projects = list(session.scalars(projects_stmt))
    sweeps = session.execute(sweeps_stmt).all()
    return {"projects": projects, "sweeps": [str(s[0]) for s in sweeps]}
