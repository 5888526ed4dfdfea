"""A real server for the worker's HTTP side: ``create_app`` under uvicorn in a thread, SQLite file
database, artifacts under tmp_path, an admin's user token and worker token (runs stay queued: the
tests call ``worker.runner.run_job`` themselves, as the Celery task does)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from workerkit import LiveServer

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.main import create_app
from app.migrate import upgrade
from app.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="worker-tests",
        maintenance_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )
    database = Database(settings)
    try:
        upgrade(database.engine)
        with database.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            user = create_token(session=session, user=admin, name="user").token
            worker = create_token(session=session, user=admin, name="worker", kind="worker").token
    finally:
        database.dispose()
    app = create_app(settings)
    app.state.enqueue = lambda run_id: None
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {user}"}, timeout=30)
    try:
        yield LiveServer(url, settings, user, worker, http)
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=30)
