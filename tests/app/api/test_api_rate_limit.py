"""The per-caller API rate limit (app/ratelimit.py, app/deps.py): token buckets, 429 + Retry-After."""

from __future__ import annotations

import pytest
from apikit import Api

from app.auth.api_tokens import create_token, ensure_admin
from app.auth.ratelimit import RateLimiter
from app.main import create_app
from app.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_rate_limit_per_second": 2.0, "api_rate_limit_burst": 3})


@pytest.fixture
def clock(api: Api) -> Clock:
    """The app's limiter on a clock the test moves (same rate and burst as the settings)."""
    fake = Clock()
    api.client.app.state.rate_limiter = RateLimiter(2.0, 3, clock=fake)  # type: ignore[attr-defined]
    return fake


def _second_user_token(api: Api) -> str:
    with api.db.transaction() as session:
        admin = ensure_admin(session=session, email="admin@localhost")
        return create_token(session=session, user=admin, name="second").token


def test_limiter_allows_the_burst_then_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(4.0, 2, clock=clock)
    assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.25)
    clock.now += 0.1
    assert limiter.acquire("a") == pytest.approx(0.15)  # a refused request takes nothing
    clock.now += 0.15
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("b") == 0.0  # each key has its own bucket


def test_limiter_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 3, clock=clock)
    for _ in range(3):
        assert limiter.acquire("a") == 0.0
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(4)][-1] == pytest.approx(1.0)


def test_limiter_forgets_refilled_buckets_first_and_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, clock=clock, max_keys=3)
    for key in "abc":
        limiter.acquire(key)  # one left each; full again after 1 s
    clock.now += 5
    limiter.acquire("busy")  # 4 keys > 3: a, b and c are full again, so they go
    assert len(limiter) == 1
    limiter.acquire("busy")
    assert limiter.acquire("busy") > 0  # an emptied bucket is remembered
    for key in range(10):  # none full: the oldest half goes each time the table overflows
        limiter.acquire(key)
        assert len(limiter) <= 4


def test_limiter_rejects_a_zero_rate() -> None:
    with pytest.raises(ValueError, match="per_second"):
        RateLimiter(0.0, 10)


def test_request_beyond_the_burst_gets_429_with_retry_after(api: Api, clock: Clock) -> None:
    for _ in range(3):
        assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    refused = api.client.get("/api/v1/runs", headers=api.user)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "API_RATE_LIMIT_PER_SECOND" in refused.json()["message"]
    assert "2 requests/s" in refused.json()["message"]
    clock.now += 0.5  # one request's worth at 2/s
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 429


def test_rate_limit_is_per_token(api: Api, clock: Clock) -> None:
    for _ in range(3):
        api.client.get("/api/v1/runs", headers=api.user)
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 429
    other = {"Authorization": f"Bearer {_second_user_token(api)}"}
    assert api.client.get("/api/v1/runs", headers=other).status_code == 200
    run = api.client.post("/api/v1/runs", json={"project": "p"}, headers=other).json()
    body = {"attempt": 1, "metrics": {"loss": 1.0}}
    assert (
        api.client.put(f"/api/v1/runs/{run['id']}/epochs/1", json=body, headers=api.worker).status_code == 200
    )


def test_refused_credentials_use_no_budget(api: Api, clock: Clock) -> None:
    for _ in range(10):
        bad = api.client.get("/api/v1/runs", headers={"Authorization": "Bearer cw_not-a-token"})
        assert bad.status_code == 401
    for _ in range(3):
        assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200


def test_rate_zero_means_no_limit(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"api_rate_limit_per_second": 0.0}))
    assert app.state.rate_limiter is None
    limited = create_app(settings)
    assert (limited.state.rate_limiter.per_second, limited.state.rate_limiter.burst) == (2.0, 3)
