"""A real collapsewatch server for tests (SDK, browser pages): ``create_app(settings)`` under uvicorn in
a thread, on a free port of 127.0.0.1 with a SQLite file database, and an API token for its local admin."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """``create_app(settings)`` under uvicorn in a thread; ``stop`` shuts it down, ``start`` serves a
    fresh app on the same port and database. ``configure`` is called with each new app before it
    serves (e.g. to swap ``app.state.enqueue`` for a recorder)."""

    def __init__(self, settings: Settings, configure: Callable[[FastAPI], None] | None = None) -> None:
        self.settings = settings
        self.configure = configure
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        app = create_app(self.settings)
        if self.configure is not None:
            self.configure(app)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning",
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        self._server = None


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'collapsewatch.db'}",
        "broker_url": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "artifact_dir": tmp_path / "artifacts",
        "secret_key": "test-secret",
        "maintenance_interval_seconds": 0,
    } | overrides
    return Settings(**values, _env_file=None)  # type: ignore[call-arg]


def admin_token(settings: Settings) -> str:
    """Migrate the database and return a new API token of the local admin."""
    database = Database(settings)
    try:
        upgrade(database.engine)
        with database.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            return create_token(session=session, user=admin, name="sdk test").token
    finally:
        database.dispose()
