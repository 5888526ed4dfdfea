"""Starting a run: :func:`init` (one line, like ``wandb.init``), :func:`start_run` on a client you
hold, and :func:`attach` to an existing run and attempt (a worker after ``claim``)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from collapsewatch.contract import RunCreate
from collapsewatch.sdk import provenance as provenance_info
from collapsewatch.sdk.client import Client
from collapsewatch.sdk.disabled import DisabledRun
from collapsewatch.sdk.errors import ServerUnavailable
from collapsewatch.sdk.heartbeat import heartbeat_interval
from collapsewatch.sdk.offline import OfflineRun
from collapsewatch.sdk.run import Run
from collapsewatch.sdk.values import jsonable

__all__ = ["attach", "init", "start_run"]
Mode = Literal["online", "offline", "disabled"]
INIT_DEADLINE = 4.0
"""Seconds ``init`` tries to reach the server before it gives up (or falls back to offline)."""


def run_body(
    project: str,
    config: Mapping[str, Any] | None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    provenance: bool = True,
) -> RunCreate:
    """The ``RunCreate`` of a new run, with a fresh ``client_id`` (``ValueError`` for a bad project,
    name or tag)."""
    return RunCreate(
        project=project,
        name=name,
        config=jsonable(dict(config or {})),
        tags=list(tags),
        client_id=uuid.uuid4().hex,
        provenance=provenance_info.collect() if provenance else None,
    )


def start_run(
    client: Client,
    project: str = "default",
    config: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    provenance: bool = True,
) -> Run:
    """Create a run and return a :class:`Run` to log into (it heartbeats while it is open). Raises
    ``ValueError`` for a bad project, name or tag and :class:`ServerUnavailable` if the server cannot be
    reached (a run needs its id). Leftover spooled writes of earlier processes are re-sent in the
    background."""
    info = client.create_run(run_body(project, config, name=name, tags=tags, provenance=provenance))
    client.start_recovery()
    return Run(client, info.id, info.attempt, info=info, heartbeat=heartbeat_interval(info.lease_seconds))


def attach(client: Client, run_id: int, attempt: int) -> Run:
    """A :class:`Run` for an existing run and attempt (a worker after ``claim``; no heartbeat: the
    worker keeps its own lease)."""
    return Run(client, run_id, attempt)


def init(
    project: str = "default",
    config: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    id: int | None = None,
    resume: bool = False,
    mode: Mode | None = None,
    fallback: Literal["offline"] | None = None,
    dir: str | os.PathLike[str] | None = None,
    url: str | None = None,
    token: str | None = None,
    provenance: bool = True,
    **options: Any,
) -> Run:
    """Start a run in one line, like ``wandb.init``: ``run = init(project="p", config={...})``.

    * ``url`` / ``token`` default to ``$COLLAPSEWATCH_URL`` (``http://127.0.0.1:8000``) /
      ``$COLLAPSEWATCH_TOKEN``; ``options`` go to :class:`Client`. The run owns its client.
    * ``mode`` (default ``$COLLAPSEWATCH_MODE``, else ``"online"``): ``"offline"`` writes the run under
      ``dir`` (default ``$COLLAPSEWATCH_DIR``, else ``./collapsewatch``) with no network at all, for
      ``collapsewatch sync`` to upload later; ``"disabled"`` returns a run whose every call is a no-op.
    * Online, if the server cannot be reached within 4 s, ``init`` raises :class:`ServerUnavailable`
      naming the URL, or with ``fallback="offline"`` logs offline instead.
    * ``init(id=N, resume=True)`` continues SDK run N (``crashed`` after its process died) as a new
      attempt: log from ``run.start_epoch`` on; writes of the old attempt are refused from now on.
    * ``provenance=False`` leaves out the git commit, command line, versions and host.
    """
    deadline = time.monotonic() + INIT_DEADLINE  # counted from here: provenance takes its share
    chosen = mode or os.environ.get("COLLAPSEWATCH_MODE") or "online"
    if chosen not in get_args(Mode):
        raise ValueError(f"mode: {chosen!r} is not a mode; use one of {', '.join(get_args(Mode))}")
    if fallback not in (None, "offline"):
        raise ValueError(f"fallback: {fallback!r} is not allowed; use None or 'offline'")
    if (id is None) == resume:
        raise ValueError("resume=True needs the id of the run to continue, and id= is only for resume=True")
    if chosen == "disabled":
        return DisabledRun()
    if resume and chosen == "offline":
        raise ValueError("resume=True needs the server; it cannot be used with mode='offline'")
    body = None if resume else run_body(project, config, name=name, tags=tags, provenance=provenance)
    if chosen == "offline":
        assert body is not None
        return OfflineRun(body, dir)
    client = _client(url, token, options)
    try:
        if body is None:
            assert id is not None
            info = client.resume_run(id, deadline=deadline)
        else:
            info = client.create_run(body, deadline=deadline)
    except ServerUnavailable as exc:
        client.close()
        if fallback == "offline" and body is not None:
            print(
                f"collapsewatch: the server at {client.url} is unreachable; logging offline", file=sys.stderr
            )
            return OfflineRun(body, dir)
        raise ServerUnavailable(
            f"cannot reach the collapsewatch server at {client.url} ({_reason(exc)}); start it or fix "
            "COLLAPSEWATCH_URL, or log offline: init(mode='offline') or COLLAPSEWATCH_MODE=offline "
            "(init(fallback='offline') does so only when the server is away)"
        ) from None
    except BaseException:
        client.close()
        raise
    client.start_recovery()
    run = Run(client, info.id, info.attempt, info=info, heartbeat=heartbeat_interval(info.lease_seconds))
    run.owns_client = True
    return run


def _client(url: str | None, token: str | None, options: dict[str, Any]) -> Client:
    if url is None and token is None:
        return Client.from_env(**options)
    return Client(
        url or os.environ.get("COLLAPSEWATCH_URL", "http://127.0.0.1:8000"),
        token or os.environ.get("COLLAPSEWATCH_TOKEN", ""),
        **options,
    )


def _reason(exc: ServerUnavailable) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text
