"""A per-app, short-lived memory of "this caller may ingest into run N" (issue 19: an ingesting worker
or SDK sends hundreds of requests a second to one run, and each used to look its access up again).

Only permissions are remembered, never a run's state: whether the run still accepts writes (its
status, the attempt, the trash) is checked by the write itself, on every request. An entry lives at
most ``TTL_S`` seconds. :func:`app.auth.token_cache.forget_all` (a token revoked, a member's role
changed or removed, through this server) empties every cache of the process at once; a change made
elsewhere (another server process, SQL) takes effect within ``TTL_S`` seconds, as for tokens.
"""

from __future__ import annotations

from app.auth import token_cache
from app.auth.roles import Actor

TTL_S = 5.0
Key = tuple[int, bool, int | None, int]


def key_of(actor: Actor, run_id: int) -> Key:
    return (actor.user_id, actor.is_admin, actor.worker_token_id, run_id)


class AccessCache(token_cache.GenerationalCache[Key, int]):
    """``(caller, run id) -> the run's project id`` for a few seconds (see the module docstring)."""

    def put(self, key: Key, project_id: int, *, since: int) -> None:
        """Remember an allowed access; ``since``: :func:`token_cache.generation` before the check
        (a revoke or a role change in between wins)."""
        self._keep(key, project_id, seconds=TTL_S, since=since)
