"""The per-app cache of resolved bearer tokens (``app.auth.token_cache``): one SELECT fewer per
request, while a revoke through the server is refused at once and one made elsewhere within TTL_S."""

from __future__ import annotations

from pathlib import Path

import pytest
from apikit import Api
from sqlalchemy import select, update

from app.auth import token_cache
from app.auth.api_tokens import revoke_token
from app.auth.token_cache import TokenCache
from app.auth.tokens import Principal, hash_token
from app.models import ApiToken, utcnow


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'collapsewatch.db'}"


def _token_id(api: Api, token: str) -> int:
    with api.db.session(write=False) as session:
        found = session.scalar(select(ApiToken.id).where(ApiToken.token_hash == hash_token(token)))
    assert found is not None
    return int(found)


def _cached(api: Api, token: str) -> Principal | None:
    cache: TokenCache = api.client.app.state.token_cache
    return cache.get(hash_token(token))


def test_token_when_used_twice_is_cached_only_once_its_use_is_recorded(api: Api) -> None:
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200  # records the use
    assert _cached(api, api.user_token) is None  # that request wrote: the next one looks again
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    cached = _cached(api, api.user_token)
    assert cached is not None and cached.token_id == _token_id(api, api.user_token)


def test_token_when_revoked_through_the_server_is_refused_at_once(api: Api) -> None:
    for _ in range(2):
        assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    assert _cached(api, api.user_token) is not None
    with api.db.transaction() as session:
        assert revoke_token(session=session, token_id=_token_id(api, api.user_token))
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 401


def test_a_lookup_while_the_revoke_was_not_committed_yet_is_not_kept_past_the_commit(api: Api) -> None:
    """Another request looked the token up after the revoke began but before it committed: it read
    the token as still valid and cached it. The commit forgets it again."""
    for _ in range(2):
        assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    with api.db.transaction() as session:
        assert revoke_token(session=session, token_id=_token_id(api, api.user_token))
        since = token_cache.generation()  # the other request's lookup, between the two
        assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200  # not committed yet
        cache: TokenCache = api.client.app.state.token_cache
        principal = Principal(user_id=1, kind="user", token_id=_token_id(api, api.user_token))
        cache.put(hash_token(api.user_token), principal, fresh_for_s=60, since=since)
        assert _cached(api, api.user_token) is not None
    assert _cached(api, api.user_token) is None
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 401


def test_token_when_revoked_elsewhere_is_refused_once_the_entry_expires(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        assert api.client.get("/api/v1/runs", headers=api.user).status_code == 200
    with api.db.transaction() as session:  # another process: no forget_all here
        session.execute(update(ApiToken).values(revoked_at=utcnow()))
    now = token_cache.time.monotonic()
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: now + token_cache.TTL_S)
    assert api.client.get("/api/v1/runs", headers=api.user).status_code == 401


def test_cache_keeps_an_entry_at_most_ttl_and_never_past_the_use_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(token_cache.time, "monotonic", lambda: clock[0])
    cache, who = TokenCache(), Principal(user_id=1, kind="user", token_id=7)
    since = token_cache.generation()
    cache.put("a", who, fresh_for_s=60, since=since)
    cache.put("b", who, fresh_for_s=1, since=since)
    cache.put("c", who, fresh_for_s=0, since=since)  # its use is due: not kept
    assert cache.get("a") == who and cache.get("b") == who and cache.get("c") is None
    clock[0] += 1
    assert cache.get("a") == who and cache.get("b") is None
    clock[0] += token_cache.TTL_S
    assert cache.get("a") is None


def test_cache_drops_everything_on_a_revoke_even_one_looked_up_before_it() -> None:
    cache, who = TokenCache(), Principal(user_id=1, kind="worker", token_id=3)
    before = token_cache.generation()
    cache.put("a", who, fresh_for_s=60, since=before)
    token_cache.forget_all()
    assert cache.get("a") is None
    cache.put("b", who, fresh_for_s=60, since=before)  # looked up before the revoke: not kept
    assert cache.get("b") is None
