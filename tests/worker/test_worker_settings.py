"""The worker's credentials: ``--token``, ``WORKER_TOKEN`` or the file ``WORKER_TOKEN_FILE`` names
(docker-compose's init service writes it); a missing or empty file is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from collapsewatch.cli import build_parser
from worker.settings import WorkerSettings


def _settings(**values: object) -> WorkerSettings:
    return WorkerSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_worker_token_file_is_read_when_no_token_is_given(tmp_path: Path) -> None:
    path = tmp_path / "worker-token"
    path.write_text("cw_from_file\n")
    assert _settings(worker_token_file=path).worker_token == "cw_from_file"
    assert _settings(worker_token_file=path, worker_token="cw_explicit").worker_token == "cw_explicit"


@pytest.mark.parametrize("content", [None, ""])
def test_worker_token_file_missing_or_empty_names_the_setting(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "worker-token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match="WORKER_TOKEN_FILE"):
        _settings(worker_token_file=path)


def test_worker_command_takes_server_and_token_flags() -> None:
    args = build_parser("worker").parse_args(
        [
            "worker",
            "--server",
            "https://cw.example.org",
            "--token",
            "cw_t",
            "--broker",
            "redis://:pw@h:6379/0",
        ]
    )
    assert (args.server, args.token, args.broker) == (
        "https://cw.example.org",
        "cw_t",
        "redis://:pw@h:6379/0",
    )
