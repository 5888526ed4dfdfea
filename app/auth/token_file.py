"""A token kept in a file for another process: the embedded worker's, or the worker token that
docker-compose's one-shot ``worker-token`` service writes into a volume the workers read
(``COLLAPSEWATCH_WORKER_TOKEN_FILE``), so a first start needs no token typed by hand.

:func:`ensure_token_file` keeps a still-valid token of the right kind that is already in the file
(a restart changes nothing), and otherwise creates one for the local admin and writes it
atomically with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from app.auth.api_tokens import create_token, ensure_admin, resolve_token
from app.db import Database


def ensure_token_file(
    *, database: Database, path: Path, admin_email: str, kind: str, name: str
) -> tuple[str, bool]:
    """The token in ``path`` (valid, of ``kind``), or a new one written there: (token, created)."""
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            with database.session(write=False) as session:
                resolved = resolve_token(session=session, token=token)
            if resolved is not None and resolved.principal.kind == kind:
                return token, False
    with database.transaction() as session:
        admin = ensure_admin(session=session, email=admin_email)
        new = create_token(session=session, user=admin, name=name, kind=kind)
    write_secret(path, new.token)
    return new.token, True


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` (mode 0600) all at once: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
