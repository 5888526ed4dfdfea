"""Team mode as docker-compose.yml ships it, as real processes (tests/queue/composerun.py): Redis with
the compose file's own command (password and all), the migrate and worker-token services once, two
web replicas on two ports sharing the secret and the artifacts volume, two Celery workers in
separate working directories reading the token the init service wrote.

Then: a sweep of 4 jobs submitted on replica A; an SSE subscriber on replica B sees every epoch of
every run in order; one worker is SIGKILLed mid-job and the job resumes from its checkpoint on the
other worker with no duplicate epoch; a share link made on A opens on B; the API rate limit counts
one budget across both replicas.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.queue.composekit import env_example, raw, resolve
from tests.queue.composerun import Host
from tests.queue.harness import TINY_SPEC, free_port, kill_group, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
EPOCHS = 6
SPEC = TINY_SPEC | {"batch_size": 4, "lr": 0.005, "epochs": EPOCHS}  # ~0.3 s epochs: time to act
# The rate-limit check sends BURST + 100 requests; it tells one shared budget from one per replica
# while RATE x (its duration) < 100, i.e. for 200 s here. The workers' token stays under BURST.
BURST, RATE = 300, 0.5


class EventLog:
    """One SSE subscription read in a thread: the (event, data) pairs, until the stream ends."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ended = threading.Event()
        self.status: int | None = None
        self.complete = False  # the server ended the stream (the run is finished)
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        fields: dict[str, str] = {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=120)) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line and not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
                    elif not line and "data" in fields:
                        self.events.append((fields.get("event", "message"), json.loads(fields["data"])))
                        fields = {}
            self.complete = True
        except httpx.HTTPError:
            pass  # the server went away (teardown); ``complete`` stays False
        finally:
            self.ended.set()

    def epochs(self) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == "epoch"]


@pytest.fixture
def team(tmp_path: Path, team_database_url: str) -> Iterator[dict[str, Any]]:
    """The compose services as processes; yields what the test needs and stops everything after."""
    db = make_url(team_database_url)
    redis_port, port_a, port_b = free_port(), free_port(), free_port()
    required, _ = env_example()
    env = {name: secrets.token_hex(16) for name in required} | {
        "POSTGRES_USER": db.username or "postgres", "POSTGRES_DB": db.database or "",
        "POSTGRES_PASSWORD": db.password or "trust-auth-ignores-it",
        "COLLAPSEWATCH_QUEUE_PREFIX": f"team{secrets.token_hex(4)}-",
        "COLLAPSEWATCH_LEASE_SECONDS": "6", "COLLAPSEWATCH_HEARTBEAT_SECONDS": "1",
        "COLLAPSEWATCH_MAINTENANCE_INTERVAL_SECONDS": "0.5", "COLLAPSEWATCH_SWEEP_AFTER_SECONDS": "4",
        "COLLAPSEWATCH_API_RATE_LIMIT_PER_SECOND": str(RATE),
        "COLLAPSEWATCH_API_RATE_LIMIT_BURST": str(BURST),
    }  # fmt: skip
    services = resolve(raw(), env)["services"]
    network = {"postgres:5432": f"{db.host}:{db.port or 5432}", "redis:6379": f"127.0.0.1:{redis_port}"}
    host_a = Host(tmp_path, network | {"web:8000": f"127.0.0.1:{port_a}"})
    host_b = dataclasses.replace(host_a, network=network | {"web:8000": f"127.0.0.1:{port_b}"})
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis = services["redis"]
        argv = [*redis["command"], "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                "--dir", str(host_a.volume("redisdata"))]  # fmt: skip
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True))
        wait_for(lambda: _redis_answers(redis_port, env["REDIS_PASSWORD"]), timeout=20, what="redis")
        assert not _redis_answers(redis_port, None), (
            "compose's Redis must refuse clients without the password"
        )
        migrated = host_a.run(services["migrate"], "migrate")
        assert migrated.returncode == 0 and "upgrade done" in migrated.stderr, migrated.stderr
        minted = host_a.run(services["worker-token"], "worker-token")
        assert minted.returncode == 0, minted.stderr
        token_file = host_a.volume("secrets") / "worker-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        web, started = {}, []  # both replicas and both workers start at once, as `up` starts them
        for name, port, host in (("web-a", port_a, host_a), ("web-b", port_b, host_b)):
            proc, log = host.start(services["web"], name, port=str(port), host="127.0.0.1")
            web[name] = f"http://127.0.0.1:{port}"
            started.append((proc, lambda p=proc, u=web[name], lg=log: _healthy(p, u, lg), name))
        workers = []
        for name, host in (("worker-1", host_a), ("worker-2", host_b)):
            proc, log = host.start(services["worker"], name)
            workers.append(proc)
            started.append((proc, lambda p=proc, lg=log: _ready(p, lg), name))
        procs.extend(proc for proc, _, _ in started)
        for _, ready, name in started:
            wait_for(ready, timeout=120, what=name)
        created = host_a.run({**services["web"], "command": ["collapsewatch", "token", "create"]}, "exec-web")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        yield {"a": web["web-a"], "b": web["web-b"], "token": token, "workers": workers, "root": tmp_path}
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                stop(proc)
            kill_group(proc)  # leftover pool children


def _redis_answers(port: int, password: str | None) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, password=password, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{url} exited: {log.read_text(errors='replace')[-3000:]}")
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ready(proc: subprocess.Popen[bytes], log: Path) -> bool:
    text = log.read_text(errors="replace") if log.exists() else ""
    if proc.poll() is not None:
        raise AssertionError(f"worker exited ({proc.returncode}): {text[-3000:]}")
    return " ready." in text


def _logs(root: Path) -> str:
    return "\n".join(
        f"===== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(root.glob("*.log"))
    )


def test_team_mode_sweep_on_two_replicas_and_two_workers(team: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {team['token']}"}
    a = httpx.Client(base_url=team["a"], headers=auth, timeout=30)
    b = httpx.Client(base_url=team["b"], headers=auth, timeout=30)
    body = {"project": "team", "spec": SPEC, "sweep": {"lr": [0.005, 0.01]}, "seeds": [0, 1]}
    submitted = a.post("/api/v1/jobs", json=body)
    assert submitted.status_code == 201, submitted.text
    runs = [run["id"] for run in submitted.json()]
    assert len(runs) == 4 and len({run["sweep_id"] for run in submitted.json()}) == 1
    streams = {run: EventLog(f"{team['b']}/api/v1/runs/{run}/events", auth) for run in runs}

    # SIGKILL the worker of the first run to get past epoch 2 (seen live on B's streams, no polling:
    # the rate limit is low here); the other worker finishes that run from its checkpoint
    def past_two() -> int | None:
        return next((r for r in runs if any(e["epoch"] >= 2 for e in streams[r].epochs())), None)

    victim = a.get(
        f"/api/v1/runs/{wait_for(past_two, timeout=180, what='a run past epoch 2', every=0.05)}"
    ).json()
    assert victim["status"] == "running" and victim["last_epoch"] < EPOCHS, victim
    group = os.getpgid(victim["worker"]["pid"])
    [killed] = [proc for proc in team["workers"] if proc.pid == group]
    kill_group(killed, signal.SIGKILL)

    try:  # each stream ends once its run is finished
        wait_for(
            lambda: all(s.ended.is_set() for s in streams.values()), timeout=300, what="the sweep", every=1
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_logs(team['root'])}") from None
    states = {run: b.get(f"/api/v1/runs/{run}").json() for run in runs}
    assert all(s["status"] == "succeeded" for s in states.values()), states
    resumed = states[victim["id"]]
    assert resumed["attempt"] == 2 and resumed["worker"]["pid"] != victim["worker"]["pid"]
    logs = [item["line"] for item in a.get(f"/api/v1/runs/{victim['id']}/logs").json()]
    assert any("resuming after epoch" in line for line in logs), logs

    for run in runs:
        stored = b.get(f"/api/v1/runs/{run}/epochs").json()
        assert [e["epoch"] for e in stored] == list(range(1, EPOCHS + 1)), (run, stored)  # no duplicates
        if run == victim["id"]:  # epochs before the kill stay attempt 1's, the rest are attempt 2's
            attempts = [e["attempt"] for e in stored]
            assert attempts == sorted(attempts) and attempts[0] == 1 and attempts[-1] == 2
        assert streams[run].complete and streams[run].status == 200, f"the stream of run {run} broke"
        seen = streams[run].epochs()
        keys = [(e["attempt"], e["epoch"]) for e in seen]
        assert keys == sorted(set(keys)), f"run {run}: epochs out of order on replica B: {keys}"
        last = {e["epoch"]: e for e in seen}  # a resumed attempt may re-send the epoch in flight
        assert sorted(last) == list(range(1, EPOCHS + 1)) and list(last.values()) == stored
        assert len(seen) - EPOCHS <= (1 if run == victim["id"] else 0)

    # a share link made on replica A opens on replica B, for anyone holding it
    query = f"runs={','.join(map(str, runs))}&stat=mean_sv"
    report = a.post("/api/v1/reports", json={"project": "team", "title": "Team sweep", "query": query})
    assert report.status_code == 201, report.text
    share = a.post(f"/api/v1/reports/{report.json()['id']}/shares", json={})
    assert share.status_code == 201, share.text
    link = share.json()["url"].split("/s/", 1)[1]
    page = httpx.get(f"{team['b']}/s/{link}", timeout=30)
    assert page.status_code == 200 and "Team sweep" in page.text

    # the API rate limit: one budget per token across both replicas (Redis), not one per replica
    fresh = {"Authorization": f"Bearer {_new_token(a)}"}
    replicas = {side: httpx.Client(base_url=team[side], headers=fresh, timeout=30) for side in ("a", "b")}
    codes: dict[str, list[int]] = {"a": [], "b": []}
    started = time.monotonic()
    for i in range(BURST + 100):  # 200 per replica: under BURST each, over BURST together
        side = "a" if i % 2 == 0 else "b"
        codes[side].append(replicas[side].get("/api/v1/projects").status_code)
    elapsed = time.monotonic() - started
    for client in replicas.values():
        client.close()
    allowed = sum(code == 200 for side in codes.values() for code in side)
    assert set(codes["a"]) | set(codes["b"]) <= {200, 429}
    assert 429 in codes["a"] and 429 in codes["b"], codes
    assert allowed <= BURST + RATE * elapsed + 1, (allowed, elapsed)
    print(
        f"rate limit across replicas: {allowed} of {BURST + 100} allowed in {elapsed:.1f} s (burst {BURST})"
    )
    a.close()
    b.close()


def _new_token(client: httpx.Client) -> str:
    response = client.post("/api/v1/tokens", json={"name": "rate check"})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])
