"""Set-up for the API fuzzing: an app on a SQLite file with tokens and runs in every state.

Imported as ``fuzzkit`` (a unique module name; ``tests/`` has no packages). The tally of cases and
failures is printed at the end of the pytest run (``conftest.pytest_terminal_summary``).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.auth.api_tokens import create_token, ensure_admin
from app.main import create_app
from app.settings import Settings
from tests.app.apikit import STATS as STATS  # one valid statistics record for all the kits

# CI: a bounded run; `make fuzz` raises it (FUZZ_EXAMPLES=300).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SPEC: dict[str, Any] = {"dataset": "digits", "epochs": 3, "device": "cpu"}


@dataclass
class Tally:
    """Cases sent per operation and the operations whose test failed."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failed: set[str] = field(default_factory=set)
    hostile: int = 0  # cases given a hostile value by `hostile_case`


TALLY = Tally()


@dataclass
class FuzzTarget:
    app: FastAPI
    token: str
    run_ids: list[int]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def existing(self, value: Any) -> int | str:
        """Map a generated id onto an existing run three times in four (the rest stay as generated)."""
        if isinstance(value, str):  # a hostile string (``hostile_case``) stays as it is
            return value
        if not isinstance(value, int) or value % 4 == 0:
            return int(value) if isinstance(value, int) else 1
        return self.run_ids[value % len(self.run_ids)]


class FirstChunkOnly:
    """Test-only ASGI wrapper: an event stream ends after its first chunk (a status event or a
    keep-alive), so the fuzzer checks its status, headers and content type without waiting."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).endswith("/events"):
            await self.app(scope, receive, send)
            return
        done = False

        async def send_once(message: dict[str, Any]) -> None:
            nonlocal done
            if done:
                return
            if message["type"] == "http.response.body" and message.get("more_body"):
                message = {**message, "more_body": False}
            done = message["type"] == "http.response.body"
            await send(message)

        await self.app(scope, receive, send_once)


class _NoQueue:
    """The fuzzer's stand-in for the broker: runs stay queued (no worker takes them)."""

    def __call__(self, run_id: int) -> None:
        return None


def pg_fuzz_url() -> tuple[str, str]:
    """(admin URL, app URL) of a uniquely named PostgreSQL database (created by the fixture)."""
    admin = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"cw_fuzz_{uuid.uuid4().hex[:10]}"
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return admin, f"{base}/{name}"


def make_app(root: Path, database_url: str | None = None) -> FastAPI:
    """The app under test (nothing touches its database until :func:`seed`)."""
    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        database_url=database_url or f"sqlite:///{root / 'fuzz.db'}",
        broker_url=f"sqla+sqlite:///{root / 'broker.db'}",
        artifact_dir=root / "artifacts",
        secret_key="fuzz-secret",
        maintenance_interval_seconds=0,
        api_rate_limit_per_second=0,  # thousands of cases from one token: 429s would hide them
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings)
    app.state.enqueue = _NoQueue()
    app.state.sse_keepalive_s = 0.05  # SSE streams speak at once; the fuzzer cuts them after a timeout
    return app


def seed(app: FastAPI) -> FuzzTarget:
    """Migrate, create the admin's token and runs in every state."""
    settings: Settings = app.state.settings
    with TestClient(app) as client:  # runs the migrations; the fuzzer starts its own lifespan later
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            token = create_token(session=session, user=admin, name="fuzz").token
        run_ids = _seed_runs(client, {"Authorization": f"Bearer {token}"})
    return FuzzTarget(app=app, token=token, run_ids=run_ids)


def _seed_runs(client: TestClient, headers: dict[str, str]) -> list[int]:
    """An SDK run with epochs and a checkpoint, a queued job, a running job and a finished one."""

    def ok(response: Any) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    sdk = ok(client.post("/api/v1/runs", json={"project": "fuzz", "config": {"a": 1}}, headers=headers))
    for epoch in (1, 2):
        body = {"attempt": 1, "metrics": {"val_acc": 0.5, "train_loss": 1.0}, "stats": STATS}
        ok(client.put(f"/api/v1/runs/{sdk['id']}/epochs/{epoch}", json=body, headers=headers))
    points = [{"key": "loss", "step": s, "value": 1.0 / (s + 1)} for s in range(5)]
    batch = {"attempt": 1, "points": points}
    ok(client.post(f"/api/v1/runs/{sdk['id']}/metrics", json=batch, headers=headers))
    ckpt = client.put(
        f"/api/v1/runs/{sdk['id']}/checkpoint?attempt=1&epoch=2", content=b"\0" * 64, headers=headers
    )
    assert ckpt.status_code == 201, ckpt.text
    submit = {"project": "fuzz", "spec": SPEC, "seeds": [0, 1, 2]}
    jobs = ok(client.post("/api/v1/jobs", json=submit, headers=headers))
    queued, running, finished = (run["id"] for run in jobs)
    ok(client.post(f"/api/v1/runs/{running}/claim", json={}, headers=headers))
    ok(client.post(f"/api/v1/runs/{finished}/claim", json={}, headers=headers))
    done = {"attempt": 1, "status": "succeeded"}
    ok(client.post(f"/api/v1/runs/{finished}/finish", json=done, headers=headers))
    return [sdk["id"], queued, running, finished]


# Hostile values (issue 15): mixed into the generated cases by `hostile_case` (a flatmap_case hook)
# --------------------------------------------------------------------------------------------------

UNICODE_DIGITS = [
    "²",
    "①",
    "١٢",
    "\uff11\uff12",
    "߁",
    "\U0001d7d9",
]  # digits to str.isdigit(), not to int() (or a surprise)
ODD_INTEGERS = [" 12", "+12", "1_000", "12.0", "0x10", "9" * 40, "-0"]
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"]
_PLACEHOLDER = "\u2603cw-hostile\u2603"


def _json_tokens() -> list[bytes]:
    deep_array = b"[" * 40 + b"1" + b"]" * 40
    deep_object = b'{"a":' * 40 + b"1" + b"}" * 40
    too_deep = b"[" * 5000 + b"]" * 5000  # past the parser's recursion limit
    huge = b"[" + b",".join([b"0.5"] * 50_000) + b"]"
    return [*NON_FINITE, deep_array, deep_object, too_deep, huge, b'"' + b"x" * 100_000 + b'"']


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (the document itself included)."""
    found = [path]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*path, index))
    return found


def _with_token(body: Any, path: tuple[Any, ...], token: bytes) -> bytes:
    """``body`` as JSON text with the value at ``path`` replaced by the raw ``token``."""
    import copy
    import json

    if not path:
        return token
    doc = copy.deepcopy(body)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = _PLACEHOLDER
    return json.dumps(doc).encode().replace(json.dumps(_PLACEHOLDER).encode(), token, 1)


def hostile_case(_context: Any, case: Any) -> Any:
    """A strategy: the generated case as it is, or with one hostile value put in: a non-finite number,
    a deep or huge value or an overlong string anywhere in a JSON body, or a Unicode or odd integer
    in a path or query parameter."""
    from hypothesis import strategies as st

    options: list[Any] = [st.just(case)]
    body = getattr(case, "body", None)
    if isinstance(body, dict | list):
        places = _paths(body)
        options.append(
            st.tuples(st.sampled_from(places), st.sampled_from(_json_tokens())).map(
                lambda choice: _replace(case, body=_with_token(body, *choice))
            )
        )
    for container in ("query", "path_parameters"):
        values = getattr(case, container, None) or {}
        if values:
            options.append(
                st.tuples(
                    st.sampled_from(sorted(values)), st.sampled_from(UNICODE_DIGITS + ODD_INTEGERS)
                ).map(
                    lambda choice, container=container, values=values: _replace(
                        case, **{container: {**values, choice[0]: choice[1]}}
                    )
                )
            )
    return st.one_of(*options)


def _replace(case: Any, **changes: Any) -> Any:
    """The drawn case with ``changes`` (in place: each example draws its own case)."""
    TALLY.hostile += 1
    for name, value in changes.items():
        setattr(case, name, value)
    return case
