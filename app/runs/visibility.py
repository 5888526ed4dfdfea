"""Which runs a list shows: the one place that says what "hidden by default" means.

A run is *live* until it is archived (hidden from lists, restorable) or deleted (in the trash until
it is purged, :mod:`app.runs.bulk`). Every list — the API's ``GET /api/v1/runs``, the runs page, the
compare page's sweeps and pickers, counts — filters with :func:`lifecycle_clause`, so archived and
deleted runs stay out unless the caller asks for them.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import ColumnElement, and_, true

from app.models import Run

Lifecycle = Literal["live", "archived", "all", "trash"]
LIFECYCLES: tuple[Lifecycle, ...] = ("live", "archived", "all", "trash")
"""``live`` (the default): neither archived nor deleted; ``archived``: archived only; ``all``: live
and archived (not the trash); ``trash``: deleted, waiting to be purged."""


def lifecycle_clause(lifecycle: Lifecycle = "live") -> ColumnElement[bool]:
    """The WHERE clause of a list of runs in ``lifecycle`` (``live`` is served by a partial index)."""
    if lifecycle == "live":
        return and_(Run.archived_at.is_(None), Run.deleted_at.is_(None))
    if lifecycle == "archived":
        return and_(Run.archived_at.is_not(None), Run.deleted_at.is_(None))
    if lifecycle == "all":
        return Run.deleted_at.is_(None)
    if lifecycle == "trash":
        return Run.deleted_at.is_not(None)
    return true()  # pragma: no cover - Literal
