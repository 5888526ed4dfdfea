"""The "Reproduce the paper" button: the demo's sweeps submitted from the browser, their progress, and
the reports written from the database once every run has finished.

How the reports get written: the runs page polls :func:`progress` (``GET /demo/<batch>``); when every
run of the batch has finished, the page posts ``/demo/<batch>/reports`` (:func:`write_reports`), which
computes the same findings as ``collapsewatch demo`` (:mod:`app.demo.findings`) and saves one
pinned report per experiment. The write is idempotent (reports are found again by their title, which
names the batch), and the progress card offers the same button without JavaScript.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Report
from app.auth.roles import Actor, check_new_runs
from app.compare.reports import create_report
from app.demo.experiments import (
    DEMO_TAG,
    REPORT_PREFIX,
    Experiment,
    batch_tag,
    experiments,
    new_batch,
    report_title,
    view_query,
)
from app.demo.findings import FINDINGS, RunResult
from app.errors import Conflict, DomainError
from app.models import Project, Run
from app.runs import store, submit
from app.runs.events import Publisher
from app.series.epochs import list_epochs
from collapsewatch.contract import TERMINAL_STATUSES, JobSubmit

MAX_BATCH_RUNS = 200
DEMO_PROJECT = "demo"
"""The project the button queues its runs in where the user may add runs to it (else the user's own
``demo-…`` project: :func:`demo_project`). A batch is its runs in one such project, not any run that
carries the batch's tag (anyone may tag their own runs ``demo:<batch>``)."""


def is_demo_project(name: str) -> bool:
    return name == DEMO_PROJECT or name.startswith(f"{DEMO_PROJECT}-")


def demo_project(*, session: Session, actor: Actor) -> str:
    """Where this user's demo goes: ``demo`` if they may add runs there (or nobody made it yet), else
    ``demo-<user id>``, else (someone took that name too) a new ``demo-<random>`` one they will own.
    So the first account to click the button never locks the others out."""
    for name in (DEMO_PROJECT, f"{DEMO_PROJECT}-{actor.user_id}", f"{DEMO_PROJECT}-{secrets.token_hex(4)}"):
        try:
            check_new_runs(session=session, actor=actor, project_name=name)
        except DomainError as exc:
            if exc.status_code == 403 and actor.is_worker:
                raise
            continue
        return name
    raise Conflict(f"no project to queue the demo in: '{DEMO_PROJECT}' and its variants are taken")


@dataclass
class Progress:
    batch: str
    project: str
    total: int = 0
    finished: int = 0
    running: int = 0
    failed: int = 0
    reports: list[tuple[str, str]] = field(default_factory=list)  # (title, url)

    @property
    def done(self) -> bool:
        return self.total > 0 and self.finished >= self.total

    def as_json(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "project": self.project,
            "total": self.total,
            "finished": self.finished,
            "running": self.running,
            "failed": self.failed,
            "done": self.done,
            "reports": [{"title": t, "url": u} for t, u in self.reports],
        }


def submit_demo(
    *,
    session: Session,
    owner_id: int,
    quick: bool,
    project: str,
    max_attempts: int,
    publisher: Publisher,
    enqueue: Callable[[int], object],
) -> str:
    """Submit every experiment (one sweep each, tagged ``demo:<batch>``); returns the batch id."""
    batch = new_batch()
    items = [
        JobSubmit.model_validate(item.submit)
        for item in experiments(quick=quick, project=project, batch=batch)
    ]
    submit.submit_jobs(  # every sweep in one transaction: all of the batch or none of it
        session=session,
        data=items,
        owner_id=owner_id,
        max_attempts=max_attempts,
        publisher=publisher,
        enqueue=enqueue,
    )
    return batch


def _batch_runs(session: Session, batch: str, visible: list[int] | None) -> list[Run]:
    """The batch's runs: those tagged with it in the one demo project holding most of them."""
    filt = store.RunFilter(tag=batch_tag(batch), project_ids=visible)
    runs, _total = store.list_runs(session=session, filt=filt, limit=MAX_BATCH_RUNS, sort="id")
    runs = [run for run in runs if is_demo_project(run.project.name)]
    if not runs:
        return []
    [(home, _count)] = Counter(run.project_id for run in runs).most_common(1)
    return [run for run in runs if run.project_id == home]


def _reports(session: Session, project_id: int, batch: str) -> list[Report]:
    stmt = (
        select(Report)
        .where(
            Report.project_id == project_id,
            Report.title.startswith(f"{REPORT_PREFIX} {batch}:", autoescape=True),
        )
        .order_by(Report.id)
    )
    return list(session.scalars(stmt))


def progress(*, session: Session, batch: str, visible: list[int] | None) -> Progress:
    """Counts of the batch's runs (only those the user may read) and its reports so far."""
    runs = _batch_runs(session, batch, visible)
    found = Progress(batch=batch, project=runs[0].project.name if runs else "")
    found.total = len(runs)
    found.finished = sum(r.status in TERMINAL_STATUSES for r in runs)
    found.running = sum(r.status == "running" for r in runs)
    found.failed = sum(r.status in ("failed", "cancelled") for r in runs)
    if runs:
        found.reports = [(r.title, f"/reports/{r.id}") for r in _reports(session, runs[0].project_id, batch)]
    return found


def recent_batches(*, session: Session, visible: list[int] | None, limit: int = 3) -> list[str]:
    """The newest demo batches among the readable runs (for the runs page's progress cards)."""
    filt = store.RunFilter(tag=DEMO_TAG, project_ids=visible)
    runs, _total = store.list_runs(session=session, filt=filt, limit=MAX_BATCH_RUNS, sort="-id")
    batches: list[str] = []
    for run in (run for run in runs if is_demo_project(run.project.name)):
        for tag in run.tags or []:
            if tag.startswith("demo:") and tag[5:] not in batches:
                batches.append(tag[5:])
    return batches[:limit]


def _experiment(run: Run, items: list[Experiment]) -> Experiment | None:
    return next((item for item in items if item.key in (run.tags or [])), None)


def write_reports(*, session: Session, actor: Actor, batch: str, visible: list[int] | None) -> Progress:
    """Once every run of the batch has finished: one pinned report per experiment (idempotent).
    Returns the progress with the reports; writes nothing while runs are still going."""
    current = progress(session=session, batch=batch, visible=visible)
    if not current.done or current.reports:
        return current
    runs = _batch_runs(session, batch, visible)
    project = session.get(Project, runs[0].project_id)
    assert project is not None
    items = experiments(project=project.name, batch=batch)
    for item in items:
        mine = [r for r in runs if _experiment(r, items) is item]
        if not mine:
            continue
        results = []
        for run in mine:
            final = (
                list_epochs(session=session, run_id=run.id, since=run.last_epoch) if run.last_epoch else []
            )
            record = final[-1].model_dump(mode="json") if final else None
            results.append(RunResult.from_wire(store.run_public(run).model_dump(mode="json"), record))
        finding = FINDINGS[item.key](results)
        create_report(
            session=session,
            actor=actor,
            project=project.name,
            title=report_title(batch, item),
            notes=finding.notes,
            pinned=True,
            query_string=view_query(str(mine[0].sweep_id), item.view),
        )
    session.flush()
    return progress(session=session, batch=batch, visible=visible)
