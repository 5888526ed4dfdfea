"""INSERT … ON CONFLICT for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def dialect_insert(*, session: Session, table: Any) -> Any:
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {name!r}")


def upsert(
    *,
    session: Session,
    table: Any,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    update: Sequence[str],
    where: Callable[[Any], ColumnElement[bool]] | None = None,
) -> None:
    """Insert ``rows``; on a ``conflict`` key clash overwrite the ``update`` columns.

    ``where(excluded)`` optionally restricts the overwrite (e.g. only from a newer attempt).
    """
    if not rows:
        return
    stmt = dialect_insert(session=session, table=table)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=list(conflict),
        set_={c: excluded[c] for c in update},
        where=where(excluded) if where else None,
    )
    session.execute(stmt, list(rows))


def insert_ignore(*, session: Session, table: Any, row: dict[str, Any], conflict: Sequence[str]) -> None:
    stmt: Insert = dialect_insert(session=session, table=table).values(**row)
    session.execute(stmt.on_conflict_do_nothing(index_elements=list(conflict)))  # type: ignore[attr-defined]
