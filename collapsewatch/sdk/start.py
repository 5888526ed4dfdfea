"""Starting a run: :func:`init` (one line, like ``wandb.init``), :func:`start_run` on a client you
hold, and :func:`attach` to an existing run and attempt (a worker after ``claim``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from collapsewatch.contract import RunCreate
from collapsewatch.sdk.client import Client
from collapsewatch.sdk.run import Run, jsonable

__all__ = ["attach", "init", "start_run"]


def start_run(
    client: Client,
    project: str = "default",
    config: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
) -> Run:
    """Create a run and return a :class:`Run` to log into. Raises ``ValueError`` for a bad project,
    name or tag and :class:`ServerUnavailable` if the server cannot be reached (a run needs its id).
    Leftover spooled writes of earlier processes are re-sent in the background."""
    body = RunCreate(project=project, name=name, config=jsonable(dict(config or {})), tags=list(tags))
    info = client.create_run(body)
    client.start_recovery()
    return Run(client, info.id, info.attempt, info=info)


def attach(client: Client, run_id: int, attempt: int) -> Run:
    """A :class:`Run` for an existing run and attempt (a worker after ``claim``)."""
    return Run(client, run_id, attempt)


def init(
    project: str = "default",
    config: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    url: str | None = None,
    token: str | None = None,
    **options: Any,
) -> Run:
    """Start a run in one line, like ``wandb.init``: ``run = init(project="p", config={...})``.

    ``url`` / ``token`` default to ``$COLLAPSEWATCH_URL`` / ``$COLLAPSEWATCH_TOKEN``; ``options`` go
    to :class:`Client`. The run owns its client and closes it on ``finish()``."""
    if url is None and token is None:
        client = Client.from_env(**options)
    else:
        client = Client(
            url or os.environ.get("COLLAPSEWATCH_URL", "http://127.0.0.1:8000"),
            token or os.environ.get("COLLAPSEWATCH_TOKEN", ""),
            **options,
        )
    try:
        run = start_run(client, project, config, name=name, tags=tags)
    except BaseException:
        client.close()
        raise
    run.owns_client = True
    return run
