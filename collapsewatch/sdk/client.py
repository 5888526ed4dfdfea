"""The typed HTTP client of the collapsewatch API (DESIGN.md §5), shared by the SDK and the workers.

Most users never build one: ``collapsewatch.init(...)`` does (see :mod:`collapsewatch.sdk.start`).
:class:`Client` is also what the Celery workers use (``claim``, ``heartbeat``, ``put_epoch``,
``upload_checkpoint``, ``finish`` ...). Every call retries connection errors, timeouts, 5xx, 408 and
429 with exponential backoff and jitter; other 4xx answers raise :class:`ApiError` at once with the
server's message. Undelivered writes of runs live in an on-disk spool (:mod:`collapsewatch.sdk.spool`),
re-sent by :mod:`collapsewatch.sdk.recovery`. Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from collapsewatch.contract import (
    AttemptIn,
    ClaimIn,
    ClaimPublic,
    EpochIn,
    EpochPublic,
    FinalStatus,
    FinishIn,
    HeartbeatPublic,
    MetricBatchIn,
    RunCreate,
    RunPublic,
    WorkerInfo,
)
from collapsewatch.sdk.errors import (
    FINAL_STATUSES,
    RETRY_STATUSES,
    ApiError,
    CollapsewatchError,
    Conflict,
    NotClaimable,
    ServerUnavailable,
    StaleAttempt,
    error_message,
    retry_after_seconds,
)
from collapsewatch.sdk.outbox import backoff_delay
from collapsewatch.sdk.recovery import SpoolRecovery
from collapsewatch.sdk.spool import spool_dir_for

API = "/api/v1"
__all__ = [
    "ApiError",
    "Client",
    "CollapsewatchError",
    "Conflict",
    "NotClaimable",
    "ServerUnavailable",
    "StaleAttempt",
]


class Client(SpoolRecovery):
    """Typed client of the collapsewatch HTTP API with a bearer token (synchronous, thread-safe).

    ``timeout`` is per request in seconds. Failed requests are retried ``max_retries`` times, after
    ``backoff * 2**n`` seconds (capped at ``backoff_max``, with jitter; a ``Retry-After`` header is
    honoured up to the cap). ``spool_dir`` (default ``$COLLAPSEWATCH_SPOOL_DIR`` or
    ``~/.cache/collapsewatch/spool``) holds the runs' undelivered writes, one sub-directory per
    server URL. Runs flush buffered scalars every ``flush_interval`` seconds and ``finish()`` waits at
    most ``finish_timeout`` seconds for undelivered writes.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        max_retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 10.0,
        flush_interval: float = 2.0,
        finish_timeout: float = 60.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url: {url!r} must start with http:// or https://")
        if not token:
            raise ValueError("token is empty; create one with `collapsewatch token create`")
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.flush_interval = flush_interval
        self.finish_timeout = finish_timeout
        self.spool_dir = spool_dir_for(self.url, spool_dir or os.environ.get("COLLAPSEWATCH_SPOOL_DIR"))
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "collapsewatch-sdk/0.1"},
        )
        self._recovery: threading.Thread | None = None
        self._closed = threading.Event()

    @classmethod
    def from_env(cls, **options: Any) -> Client:
        """A client for ``$COLLAPSEWATCH_URL`` (default ``http://127.0.0.1:8000``) and
        ``$COLLAPSEWATCH_TOKEN``; ``options`` are passed to :class:`Client`."""
        token = os.environ.get("COLLAPSEWATCH_TOKEN", "")
        if not token:
            raise ValueError(
                "COLLAPSEWATCH_TOKEN is not set; create a token with `collapsewatch token create`"
            )
        return cls(os.environ.get("COLLAPSEWATCH_URL", "http://127.0.0.1:8000"), token, **options)

    def close(self) -> None:
        self._closed.set()
        if self._recovery is not None:
            self._recovery.join(timeout=self._http.timeout.read or 10.0)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int | None = None,
        conflict: type[Conflict] = Conflict,
        deadline: float | None = None,
    ) -> httpx.Response:
        """Send one request with retries; returns a 2xx/3xx response, raises :class:`ApiError` (409 as
        ``conflict``) or, once ``retries`` (default ``max_retries``) are used up or the ``deadline``
        (a ``time.monotonic()`` value) has come, :class:`ServerUnavailable`."""
        allowed = self.max_retries if retries is None else retries
        failures = 0
        while True:
            if self._closed.is_set():  # a run outliving its client: keep its writes in the spool
                raise ServerUnavailable(f"{method} {self.url}{path}: this client is closed")
            retry_after: float | None = None
            timeout: Any = self._http.timeout
            if deadline is not None:  # no single attempt may outlast the deadline either
                left = max(0.05, deadline - time.monotonic())
                timeout = httpx.Timeout(min(left, self._http.timeout.read or left))
            try:
                response = self._http.request(
                    method, path, json=json, content=content, params=params, headers=headers,
                    timeout=timeout,
                )  # fmt: skip
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status < 400:
                    return response
                message = error_message(response)
                if status == 404 and message == "Not Found":  # no such route: not a collapsewatch root
                    message = (
                        f"Not Found: no API route here; the URL must be the server's root "
                        f"(e.g. http://127.0.0.1:8000), not {self.url}"
                    )
                if (status < 500 and status not in RETRY_STATUSES) or status in FINAL_STATUSES:
                    kind = conflict if status == 409 else ApiError
                    raise kind(status, message, method=method, url=str(response.request.url))
                reason = f"HTTP {status}: {message}"
                retry_after = retry_after_seconds(response)
            failures += 1
            delay = backoff_delay(failures, self.backoff, self.backoff_max)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff_max))
            late = deadline is not None and time.monotonic() + delay >= deadline
            if failures > allowed or late:
                raise ServerUnavailable(f"{method} {self.url}{path}: {reason} (tried {failures} times)")
            time.sleep(delay)

    # -- runs ----------------------------------------------------------------------------------------

    def create_run(self, body: RunCreate, *, deadline: float | None = None) -> RunPublic:
        """``POST /api/v1/runs``: a run for the SDK, status ``running``, attempt 1. With a
        ``client_id`` in ``body`` a repeat returns the same run, so retrying is safe."""
        response = self.request("POST", f"{API}/runs", json=body.model_dump(mode="json"), deadline=deadline)
        return RunPublic.model_validate(response.json())

    def resume_run(self, run_id: int, *, deadline: float | None = None) -> RunPublic:
        """``POST /api/v1/runs/{id}/resume``: a new attempt of an SDK run (``crashed`` -> ``running``);
        writes of the older attempts are refused from now on."""
        response = self.request("POST", f"{API}/runs/{run_id}/resume", deadline=deadline)
        return RunPublic.model_validate(response.json())

    def get_run(self, run_id: int) -> RunPublic:
        return RunPublic.model_validate(self.request("GET", f"{API}/runs/{run_id}").json())

    def list_epochs(self, run_id: int) -> list[EpochPublic]:
        response = self.request("GET", f"{API}/runs/{run_id}/epochs")
        return [EpochPublic.model_validate(item) for item in response.json()]

    def claim(self, run_id: int, worker: WorkerInfo | Mapping[str, Any] | None = None) -> ClaimPublic:
        """Take run ``run_id`` for a new attempt; :class:`NotClaimable` if someone else has it or it is
        not queued (the caller should exit quietly)."""
        info = worker if isinstance(worker, WorkerInfo) else WorkerInfo.model_validate(dict(worker or {}))
        body = ClaimIn(worker=info).model_dump(mode="json")
        response = self.request("POST", f"{API}/runs/{run_id}/claim", json=body, conflict=NotClaimable)
        return ClaimPublic.model_validate(response.json())

    def heartbeat(self, run_id: int, attempt: int, *, retries: int | None = None) -> HeartbeatPublic:
        """Extend the lease; :class:`StaleAttempt` when a newer attempt owns the run or it has ended."""
        body = AttemptIn(attempt=attempt).model_dump(mode="json")
        response = self.request(
            "POST", f"{API}/runs/{run_id}/heartbeat", json=body, conflict=StaleAttempt, retries=retries
        )
        return HeartbeatPublic.model_validate(response.json())

    def put_epoch(self, run_id: int, epoch: int, body: EpochIn, *, retries: int | None = None) -> None:
        """Store one epoch record (idempotent: a replay from the same attempt is a no-op)."""
        self._check_epoch(epoch)
        self._fenced("PUT", f"/runs/{run_id}/epochs/{epoch}", body.model_dump(mode="json"), retries)

    def post_metrics(self, run_id: int, body: MetricBatchIn, *, retries: int | None = None) -> None:
        """Store up to 1000 scalar points (upserted by ``(run, key, step)``)."""
        self._fenced("POST", f"/runs/{run_id}/metrics", body.model_dump(mode="json"), retries)

    def post_logs(
        self, run_id: int, attempt: int, lines: Sequence[str], *, retries: int | None = None
    ) -> None:
        """Append log lines to the run's event log."""
        body = {"attempt": attempt, "lines": list(lines)}
        self._fenced("POST", f"/runs/{run_id}/logs", body, retries)

    def finish(
        self,
        run_id: int,
        attempt: int,
        status: FinalStatus,
        error: str | None = None,
        *,
        retries: int | None = None,
    ) -> None:
        """End the attempt with ``status`` (``succeeded``, ``failed`` or ``cancelled``)."""
        body = FinishIn(attempt=attempt, status=status, error=_clip(error)).model_dump(mode="json")
        self._fenced("POST", f"/runs/{run_id}/finish", body, retries)

    def upload_checkpoint(self, run_id: int, attempt: int, epoch: int, data: bytes) -> None:
        """Store the checkpoint of ``epoch`` (raw bytes, e.g. from ``torch.save``) for resuming."""
        self._check_epoch(epoch)
        self.request(
            "PUT",
            f"{API}/runs/{run_id}/checkpoint",
            content=data,
            params={"attempt": attempt, "epoch": epoch},
            headers={"Content-Type": "application/octet-stream"},
            conflict=StaleAttempt,
        )

    def download_checkpoint(self, run_id: int) -> tuple[int, bytes] | None:
        """``(epoch, bytes)`` of the run's newest checkpoint, or None when it has none (HTTP 404)."""
        try:
            response = self.request("GET", f"{API}/runs/{run_id}/checkpoint")
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise
        return int(response.headers["X-Checkpoint-Epoch"]), response.content

    def download_dataset(
        self, dataset_id: int, *, run_id: int, attempt: int, dest: str | os.PathLike[str]
    ) -> str:
        """Write uploaded dataset ``dataset_id`` to the file ``dest``; returns the sha256 (hex) of what was
        written, to compare with the dataset's registered one. Only for the worker token whose ``attempt``
        holds run ``run_id`` (409 :class:`Conflict` otherwise; 404 when the run names another dataset)."""
        params = {"run": int(run_id), "attempt": int(attempt)}
        data = self.request("GET", f"{API}/datasets/{int(dataset_id)}/content", params=params).content
        with open(dest, "wb") as handle:
            handle.write(data)
        return hashlib.sha256(data).hexdigest()

    def _fenced(self, method: str, path: str, body: Any, retries: int | None) -> httpx.Response:
        """A write carrying an attempt number: 409 means the attempt is stale."""
        return self.request(method, API + path, json=body, retries=retries, conflict=StaleAttempt)

    @staticmethod
    def _check_epoch(epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: {epoch!r} must be an integer >= 0")


def _clip(text: str | None, limit: int = 20_000) -> str | None:
    return text if text is None or len(text) <= limit else "…" + text[-(limit - 1) :]
