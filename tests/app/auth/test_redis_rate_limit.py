"""The team-mode API rate limit (app/auth/ratelimit.py RedisRateLimiter): token buckets in Redis, taken
by a Lua script, shared by every web replica; on the machine's real Redis, each test under its own
key prefix."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.auth.api_tokens import create_token, ensure_admin
from app.auth.ratelimit import RateLimiter, RedisRateLimiter, make_rate_limiter
from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> str:
    return f"cwtest-{uuid.uuid4().hex[:10]}"


def test_redis_limiter_allows_the_burst_then_says_how_long_to_wait(redis_url: str, prefix: str) -> None:
    clock = Clock()
    limiter = RedisRateLimiter(redis_url, 4.0, 2, prefix=prefix, clock=clock)
    assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.25)
    clock.now += 0.1
    assert limiter.acquire("a") == pytest.approx(0.15)  # a refused request takes nothing
    clock.now += 0.15
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # each key has its own bucket
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(3)][-1] == pytest.approx(0.25)  # refilled to the burst only
    limiter.close()


def test_redis_limiters_of_two_replicas_share_one_bucket(redis_url: str, prefix: str) -> None:
    clock = Clock()
    replica_a = RedisRateLimiter(redis_url, 1.0, 5, prefix=prefix, clock=clock)
    replica_b = RedisRateLimiter(redis_url, 1.0, 5, prefix=prefix, clock=clock)
    assert [replica_a.acquire(("token", 7)) for _ in range(3)] == [0.0] * 3
    assert [replica_b.acquire(("token", 7)) for _ in range(2)] == [0.0] * 2
    assert replica_b.acquire(("token", 7)) == pytest.approx(1.0)
    assert replica_a.acquire(("token", 7)) == pytest.approx(1.0)
    other = RedisRateLimiter(redis_url, 1.0, 5, prefix=f"{prefix}-other", clock=clock)
    assert other.acquire(("token", 7)) == 0.0  # another deployment (QUEUE_PREFIX) counts apart
    for limiter in (replica_a, replica_b, other):
        limiter.close()


def test_redis_limiter_buckets_expire_once_they_would_be_full(redis_url: str, prefix: str) -> None:
    limiter = RedisRateLimiter(redis_url, 10.0, 20, prefix=prefix)
    limiter.acquire(("user", 1))
    client = redis.Redis.from_url(redis_url)
    ttl_ms = client.pttl(limiter.key(("user", 1)))
    assert 0 < ttl_ms <= 20 / 10.0 * 1000 + 1000
    assert limiter.key(("user", 1)) == f"{prefix}:ratelimit:user:1"
    client.close()
    limiter.close()


def test_redis_limiter_when_redis_is_unreachable_counts_in_the_process(prefix: str) -> None:
    with socket_port() as port:  # nothing listens there
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", 1.0, 2, prefix=prefix, timeout_s=0.2)
        assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
        assert limiter.acquire("a") > 0  # the local buckets still limit
        limiter.close()


class socket_port:
    """A port that was free a moment ago (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'cw.db'}", broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        artifact_dir=tmp_path / "artifacts", secret_key="test", maintenance_interval_seconds=0,
        _env_file=None, **values,
    )  # type: ignore[call-arg]  # fmt: skip


def test_make_rate_limiter_picks_redis_in_team_mode(tmp_path: Path, redis_url: str, prefix: str) -> None:
    team = make_rate_limiter(_settings(tmp_path, redis_url=redis_url, queue_prefix=f"{prefix}-"))
    assert isinstance(team, RedisRateLimiter) and team.prefix == f"collapsewatch:{prefix}-:ratelimit"
    team.close()
    assert isinstance(make_rate_limiter(_settings(tmp_path)), RateLimiter)
    assert make_rate_limiter(_settings(tmp_path, redis_url=redis_url, api_rate_limit_per_second=0)) is None


def test_api_rate_limit_counts_across_two_apps_sharing_redis(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    """Two app instances (replicas) with their own process state: the caller's budget is one."""
    settings = _settings(
        tmp_path, redis_url=redis_url, queue_prefix=f"{prefix}-",
        api_rate_limit_per_second=0.01, api_rate_limit_burst=4,
    )  # fmt: skip
    replica_a, replica_b = create_app(settings), create_app(settings)
    with TestClient(replica_a) as a, TestClient(replica_b) as b:
        with replica_a.state.db.transaction() as session:
            admin = ensure_admin(session=session, email="admin@localhost")
            headers = {"Authorization": f"Bearer {create_token(session=session, user=admin, name='t').token}"}
        assert [a.get("/api/v1/runs", headers=headers).status_code for _ in range(2)] == [200, 200]
        assert [b.get("/api/v1/runs", headers=headers).status_code for _ in range(2)] == [200, 200]
        refused = b.get("/api/v1/runs", headers=headers)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert "API_RATE_LIMIT_PER_SECOND" in refused.json()["message"]
        assert a.get("/api/v1/runs", headers=headers).status_code == 429
