"""Many runs at once: tag, untag, archive, unarchive, delete (to the trash), restore, purge.

A run's lifecycle (W&B / MLflow style): *live* → *archived* (hidden from lists, ``unarchive``
brings it back) and → *deleted* (in the trash: hidden, ``restore`` brings it back); the trash is
purged after ``TRASH_RETENTION_DAYS`` by the maintenance loop (:func:`purge_expired`), or at once by a
project owner (``purge``). Purging deletes the run's rows (epochs, metrics and their chunks, events
cascade with it) and then its checkpoints from the artifact store (:func:`remove_artifacts`).

Rules, checked for every run before anything changes, so a request changes all its runs or none:

- runs the caller may not read, and runs that do not exist, are named in one 404 (the same words
  for both); editors (or owners, admins) may tag, archive, delete and restore, purging needs the
  owner role (403 naming the role);
- queued and running runs cannot be archived or deleted (409 naming them: cancel them first);
- runs in the trash only take ``restore`` and ``purge`` (409); only runs in the trash are purged.

Doing again what is already done (archiving an archived run, restoring a live one) changes nothing
and is not an error; ``changed`` lists the runs that did change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, lazyload

from app.auth.roles import RANK, Actor, Forbidden, effective_role
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Run, utcnow
from app.runs.ids import record_purged
from collapsewatch.contract import TERMINAL_STATUSES, Tag

if TYPE_CHECKING:
    from app.runs.artifacts import CheckpointStore

log = logging.getLogger(__name__)

BulkAction = Literal["tag", "untag", "archive", "unarchive", "delete", "restore", "purge"]
MAX_BULK_RUNS = 1000
MAX_BULK_TAGS = 32  # also the most tags one run may carry, as a job spec allows (contract.JobSubmit)
IN_TRASH_ONLY: frozenset[str] = frozenset({"restore", "purge"})


# a JSON integer (not "2_0", "+2", true or 2.0, which lax parsing reads as ints), within the ids'
# 32 bits: 422 on every backend, not a 404 on one and a database error on another
RunIdIn = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]


class RunsBulkIn(BaseModel):
    """``POST /api/v1/run-actions``: one action on up to 1,000 runs (``tags`` for tag and untag)."""

    model_config = ConfigDict(extra="forbid")

    action: BulkAction
    run_ids: list[RunIdIn] = Field(..., min_length=1, max_length=MAX_BULK_RUNS)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_BULK_TAGS)

    @model_validator(mode="after")
    def _tags_for_tagging(self) -> RunsBulkIn:
        if self.action in ("tag", "untag") and not self.tags:
            raise ValueError(f"tags: {self.action} needs at least one tag (1-64 characters each)")
        if self.action not in ("tag", "untag") and self.tags:
            raise ValueError(f"tags: only tag and untag take tags, not {self.action}")
        return self


class RunsBulkOut(BaseModel):
    action: BulkAction
    run_ids: list[int] = Field(description="the runs of the request, each once, ascending")
    changed: list[int] = Field(description="the runs whose tags or lifecycle changed")


def _names(run_ids: Iterable[int]) -> str:
    ids = sorted(run_ids)
    shown = ", ".join(str(i) for i in ids[:20])
    more = f" and {len(ids) - 20} more" if len(ids) > 20 else ""
    return ("run " if len(ids) == 1 else "runs ") + shown + more


def _authorize(*, session: Session, actor: Actor, ids: list[int], action: BulkAction) -> None:
    """404 naming the runs that do not exist or that the actor cannot see; 403 for a missing role."""
    rows = session.execute(select(Run.id, Run.project_id).where(Run.id.in_(ids))).all()
    project_of = {row.id: row.project_id for row in rows}
    if actor.is_worker:
        raise Forbidden("worker tokens may only call the ingestion and lifecycle routes")
    role_of = {
        pid: effective_role(session=session, actor=actor, project_id=pid) for pid in set(project_of.values())
    }
    unseen = [i for i in ids if i not in project_of or role_of[project_of[i]] is None]
    if unseen:
        missing = _names(unseen)
        raise NotFound(f"{missing} {'does' if len(unseen) == 1 else 'do'} not exist; nothing was changed")
    need = "owner" if action == "purge" else "editor"
    short = sorted({i for i in ids if RANK[role_of[project_of[i]] or "viewer"] < RANK[need]})
    if short:
        raise Forbidden(
            f"{action} needs the {need} role in the project of {_names(short)}; nothing was changed"
        )


def _check_states(runs: Sequence[Run], action: BulkAction) -> None:
    if action in IN_TRASH_ONLY:
        if action == "purge":
            alive = [r.id for r in runs if r.deleted_at is None]
            if alive:
                raise Conflict(
                    f"{_names(alive)} not in the trash; delete them first (action delete); "
                    "nothing was changed"
                )
        return
    trashed = [r.id for r in runs if r.deleted_at is not None]
    if trashed and action != "delete":
        raise Conflict(f"{_names(trashed)} in the trash; restore them first; nothing was changed")
    if action in ("archive", "delete"):
        active = [r for r in runs if r.status not in TERMINAL_STATUSES]
        if active:
            listed = ", ".join(f"{r.id} ({r.status})" for r in active[:20])
            raise Conflict(
                f"runs still queued or running cannot be {action}d: {listed}; cancel them first "
                "(the Cancel button on the run page, or POST /api/v1/runs/{id}/cancel) and try again "
                "once they end; nothing was changed"
            )


def _tagged(run: Run, tags: Sequence[str], action: BulkAction) -> list[str] | None:
    """The run's new tag list, or None when it does not change."""
    old = list(run.tags or [])
    if action == "tag":
        new = old + [t for t in dict.fromkeys(tags) if t not in old]
        if len(new) > MAX_BULK_TAGS:
            raise InvalidInput(
                ["tags"], f"run {run.id} would carry {len(new)} tags; a run carries at most {MAX_BULK_TAGS}"
            )
    else:
        new = [t for t in old if t not in set(tags)]
    return None if new == old else new


def _change(run: Run, data: RunsBulkIn, *, actor: Actor, now: datetime) -> bool:
    action = data.action
    if action in ("tag", "untag"):
        tags = _tagged(run, data.tags, action)
        if tags is None:
            return False
        run.tags = tags
    elif action == "archive" and run.archived_at is None:
        run.archived_at = now
    elif action == "unarchive" and run.archived_at is not None:
        run.archived_at = None
    elif action == "delete" and run.deleted_at is None:
        run.deleted_at, run.deleted_by = now, actor.user_id
    elif action == "restore" and run.deleted_at is not None:
        run.deleted_at, run.deleted_by = None, None
    else:
        return False
    run.updated_at = now
    return True


def apply(*, session: Session, actor: Actor, data: RunsBulkIn) -> RunsBulkOut:
    """Apply ``data.action`` to every run of ``data.run_ids``, or raise and change none.

    Purged runs are gone from the database when the transaction commits; remove their files
    after the commit with :func:`remove_artifacts` (the maintenance loop also drops orphans)."""
    ids = sorted(set(data.run_ids))
    _authorize(session=session, actor=actor, ids=ids, action=data.action)
    stmt = select(Run).where(Run.id.in_(ids)).order_by(Run.id).options(lazyload(Run.project))
    runs = list(session.scalars(stmt.with_for_update(of=Run)).unique())
    gone = set(ids) - {run.id for run in runs}
    if gone:  # purged by another request since _authorize read them (PostgreSQL: no lock until now)
        raise NotFound(f"{_names(gone)} {'does' if len(gone) == 1 else 'do'} not exist; nothing was changed")
    _check_states(runs, data.action)
    if data.action == "purge":
        purge(session=session, run_ids=ids)
        return RunsBulkOut(action=data.action, run_ids=ids, changed=ids)
    now = utcnow()
    changed = [run.id for run in runs if _change(run, data, actor=actor, now=now)]
    session.flush()
    return RunsBulkOut(action=data.action, run_ids=ids, changed=changed)


def purge(*, session: Session, run_ids: Sequence[int]) -> None:
    """Delete the runs' rows; their epochs, metrics, metric chunks and events cascade with them. Their
    ids are never given to a new run (app.runs.ids)."""
    if run_ids:
        record_purged(session=session, run_ids=run_ids)
        session.execute(
            delete(Run).where(Run.id.in_(list(run_ids))), execution_options={"synchronize_session": False}
        )
        session.expire_all()


def purge_expired(*, session: Session, deleted_before: datetime, limit: int = 200) -> list[int]:
    """Purge the runs deleted before ``deleted_before`` (the retention period), oldest first, at
    most ``limit`` per call; their ids (remove their files after the commit)."""
    stmt = (
        select(Run.id)
        .where(Run.deleted_at.is_not(None), Run.deleted_at < deleted_before)
        .order_by(Run.deleted_at, Run.id)
        .limit(limit)
    )
    ids = list(session.scalars(stmt))
    purge(session=session, run_ids=ids)
    return ids


def remove_artifacts(store: CheckpointStore | None, run_ids: Iterable[int]) -> list[int]:
    """Delete the checkpoints of purged runs; the ids whose files could not be removed now (the
    maintenance loop's orphan sweep removes them later)."""
    failed: list[int] = []
    if store is None:
        return failed
    for run_id in run_ids:
        try:
            store.remove(run_id)
        except OSError as exc:
            log.warning("could not remove the checkpoints of purged run %s (%s); will retry", run_id, exc)
            failed.append(run_id)
    return failed
