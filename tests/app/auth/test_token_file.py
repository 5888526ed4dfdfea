"""The worker token kept in a file (app/auth/token_file.py): what docker-compose's one-shot
``worker-token`` service writes with ``collapsewatch token create --worker --file PATH`` and the
workers read through ``WORKER_TOKEN_FILE``; idempotent across restarts, renewed once invalid."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import update

from app.auth.api_tokens import resolve_token
from app.auth.token_file import ensure_token_file
from app.db import Database
from app.models import ApiToken


def test_token_file_when_run_again_keeps_the_valid_token(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "worker-token"
    token, created = ensure_token_file(
        database=database, path=path, admin_email="admin@localhost", kind="worker", name="compose worker"
    )
    assert created and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = ensure_token_file(
        database=database, path=path, admin_email="admin@localhost", kind="worker", name="compose worker"
    )
    assert (again, created_again) == (token, False)
    with database.session(write=False) as session:
        resolved = resolve_token(session=session, token=token)
    assert resolved is not None and resolved.principal.kind == "worker"


def test_token_file_when_revoked_or_wrong_kind_writes_a_new_one(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "worker-token"
    first, _ = ensure_token_file(database=database, path=path, admin_email="a@x", kind="worker", name="w")
    with database.transaction() as session:
        session.execute(update(ApiToken).values(revoked_at=ApiToken.created_at))
    second, created = ensure_token_file(
        database=database, path=path, admin_email="a@x", kind="worker", name="w"
    )
    assert created and second != first and path.read_text().strip() == second
    user_token, _ = ensure_token_file(database=database, path=path, admin_email="a@x", kind="user", name="u")
    assert user_token != second  # a worker token is not a user token: replaced
    path.write_text("cw_garbage\n")
    assert ensure_token_file(database=database, path=path, admin_email="a@x", kind="user", name="u")[1]
