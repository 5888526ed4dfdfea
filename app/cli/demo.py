"""``collapsewatch demo``'s local side: a token for the local admin when none is given (the experiments
live in :mod:`app.demo.experiments`, the HTTP client in :mod:`app.cli.demo_client`)."""

from __future__ import annotations


def local_token() -> str:
    """A new user token for the local admin, written straight to the configured database (the
    embedded set-up: the same machine and settings as ``collapsewatch up``)."""
    from app.auth.api_tokens import create_token, ensure_admin
    from app.cli.common import reaching_database
    from app.db import Database
    from app.migrate import upgrade
    from app.settings import get_settings

    settings = get_settings()
    db = Database(settings)
    try:
        with reaching_database(settings):
            upgrade(db.engine)
            with db.transaction() as session:
                admin = ensure_admin(session=session, email=settings.admin_email)
                return create_token(session=session, user=admin, name="demo").token
    finally:
        db.dispose()
