"""A per-app, short-lived memory of resolved bearer tokens (issue 19: one SELECT fewer per request).

Every authenticated API call used to look its token up (a join of ``api_tokens`` and ``users``)
before doing anything else; an ingesting worker sends the same token hundreds of times a second.
An entry is kept for at most ``TTL_S`` seconds and never past the moment its ``last_used_at``
falls due for the once-a-minute refresh (``app.auth.api_tokens.LAST_USED_RESOLUTION``), so the
use is still recorded exactly as without the cache; a token that needs that write is not kept.

Revocation: :func:`forget_all` (called by ``revoke_token``) empties every cache of the process at
once, so a token revoked through this server is refused from its next request on; one revoked
elsewhere (another server process, the CLI, SQL) is refused within ``TTL_S`` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.auth.tokens import Principal

TTL_S = 5.0
MAX_ENTRIES = 10_000
K = TypeVar("K")
V = TypeVar("V")
_generation = 0  # bumped by forget_all: entries of an older generation are gone


def generation() -> int:
    """Read before looking a token up, passed to :meth:`TokenCache.put`: a revoke in between wins."""
    return _generation


def forget_all(session: Session | None = None) -> None:
    """Drop every cached token and remembered access (``app.auth.access_cache``) of every cache in
    this process (a token was revoked, a member's role changed or was removed).

    With the ``session`` whose transaction makes that change: again once it commits. A lookup that
    ran in between read the old rows (the change was not committed yet) and would keep what it
    found for ``TTL_S`` seconds under the new generation."""
    global _generation
    _generation += 1
    if session is not None:
        event.listen(session, "after_commit", _forget_after_commit, once=True)


def _forget_after_commit(_session: Session) -> None:
    forget_all()


class GenerationalCache(Generic[K, V]):
    """``key -> value`` for a few seconds, all of it dropped at once by :func:`forget_all`."""

    def __init__(self) -> None:
        self._entries: dict[K, tuple[V, float, int]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, until, generation = entry
        if generation != _generation or time.monotonic() >= until:
            with self._lock:
                self._entries.pop(key, None)
            return None
        return value

    def _keep(self, key: K, value: V, *, seconds: float, since: int) -> None:
        """Keep ``value`` for ``seconds`` (nothing when <= 0, or when :func:`forget_all` ran since
        ``since``, the :func:`generation` read before the lookup that found it)."""
        if seconds <= 0 or since != _generation:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (value, time.monotonic() + seconds, since)


class TokenCache(GenerationalCache[str, Principal]):
    """``token hash -> principal`` for a few seconds (see the module docstring)."""

    def put(self, token_hash: str, principal: Principal, *, fresh_for_s: float, since: int) -> None:
        """Keep ``principal`` for ``min(TTL_S, fresh_for_s)`` seconds (nothing when that is <= 0);
        ``since``: :func:`generation` before the lookup (a token revoked since is not kept)."""
        self._keep(token_hash, principal, seconds=min(TTL_S, fresh_for_s), since=since)
