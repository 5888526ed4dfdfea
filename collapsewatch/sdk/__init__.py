"""The SDK: :func:`init` starts a run (online, offline or disabled), :class:`Run` logs into it,
:class:`Client` speaks the HTTP API, ``collapsewatch sync`` (:mod:`collapsewatch.sdk.sync`) uploads
offline runs."""

from collapsewatch.sdk.client import Client
from collapsewatch.sdk.errors import ApiError, CollapsewatchError, Conflict, ServerUnavailable, StaleAttempt
from collapsewatch.sdk.offline import OfflineRun
from collapsewatch.sdk.run import Run
from collapsewatch.sdk.start import attach, init, start_run

__all__ = [
    "ApiError",
    "Client",
    "CollapsewatchError",
    "Conflict",
    "OfflineRun",
    "Run",
    "ServerUnavailable",
    "StaleAttempt",
    "attach",
    "init",
    "start_run",
]
