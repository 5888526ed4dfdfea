"""Share-link and invitation tokens never reach the logs (app/log_redact.py): the filter itself,
and the output of a real ``uvicorn`` serving real requests for those paths."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.auth import invitations
from app.auth.api_tokens import ensure_admin
from app.auth.roles import Actor
from app.compare import reports
from app.db import Database
from app.migrate import upgrade
from app.runs import submit
from app.settings import Settings
from app.web.log_redact import RedactSecretPaths, install, redact
from collapsewatch.contract import JobSubmit

REPO = Path(__file__).resolve().parents[3]


def test_redact_replaces_share_and_invite_tokens_only() -> None:
    line = "GET /s/AbC_-123456789xyz/export.csv?x=1 /invite/QwErTy_12345678 /runs/5 /static/s/ok"
    assert redact(line) == "GET /s/[redacted]/export.csv?x=1 /invite/[redacted] /runs/5 /static/s/ok"


def test_filter_rewrites_uvicorn_access_record_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/s/SECRETSECRETSECRET", "1.1", 200),
        None,
    )
    assert RedactSecretPaths().filter(record)
    assert "SECRETSECRETSECRET" not in record.getMessage() and "/s/[redacted]" in record.getMessage()


def test_install_puts_one_filter_on_the_access_logger() -> None:
    install()
    install()
    access = logging.getLogger("uvicorn.access")
    assert sum(isinstance(f, RedactSecretPaths) for f in access.filters) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _secrets(settings: Settings) -> tuple[str, str]:
    """A report with a share link and an invitation, written through the services."""
    database = Database(settings)
    upgrade(database.engine)
    try:
        with database.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            created, _ = submit.create_jobs(
                session=session, data=JobSubmit(project="team"), owner_id=admin.id, max_attempts=1
            )
            actor = Actor(admin.id, is_admin=True)
            report = reports.create_report(
                session=session,
                actor=actor,
                project="team",
                title="t",
                notes="",
                pinned=True,
                query_string=f"runs={created[0].id}",
            )
            share = reports.create_share(session=session, actor=actor, report=report, expires_at=None)
            invite = invitations.create_invitation(
                session=session,
                actor=actor,
                email="new@example.org",
                project_id=report.project_id,
                role="viewer",
                local_admin_email=settings.admin_email,
            )
        return share, invite.token
    finally:
        database.dispose()


def test_real_server_logs_never_contain_the_raw_tokens(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts",
        secret_key="log-secret",  # type: ignore[arg-type]
        _env_file=None,  # type: ignore[call-arg]
    )
    share, invite = _secrets(settings)
    port = _free_port()
    env = os.environ | {
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        "ARTIFACT_DIR": str(settings.artifact_dir),
        "SECRET_KEY": "log-secret",
        "LOCAL_AUTOLOGIN": "false",
        "MAINTENANCE_INTERVAL_SECONDS": "0",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--log-level", "debug"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            assert httpx.get(f"{base}/s/{share}").status_code == 200
            assert httpx.get(f"{base}/s/{share}/export.csv").status_code == 200
            assert httpx.get(f"{base}/invite/{invite}").status_code == 200
            assert httpx.get(f"{base}/s/{share}x").status_code == 404
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    output = log_path.read_text()
    assert "/s/[redacted]" in output and "/invite/[redacted]" in output  # the access log was captured
    assert share not in output and invite not in output
    assert share[:12] not in output and invite[:12] not in output
