"""The SDK's errors, and how an HTTP error answer becomes one (see :mod:`collapsewatch.sdk.client`)."""

from __future__ import annotations

import httpx

# Besides connection errors, timeouts and 5xx, these statuses are worth retrying.
RETRY_STATUSES = frozenset({408, 429})
# 5xx answers that repeating the same request cannot fix (507: the server's storage is full/read-only).
FINAL_STATUSES = frozenset({507})


class CollapsewatchError(Exception):
    """Base class of the SDK's errors."""


class ApiError(CollapsewatchError):
    """The server refused a request (4xx other than 408/429); retrying the same request cannot help.

    ``status_code`` is the HTTP status and ``message`` the server's explanation (which field, what value,
    what is allowed)."""

    def __init__(self, status_code: int, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(f"{method} {url} -> HTTP {status_code}: {message}".strip())
        self.status_code = status_code
        self.message = message


class Conflict(ApiError):
    """HTTP 409: the request conflicts with the run's current state."""


class NotClaimable(Conflict):
    """``claim`` got 409: another worker holds the run, or it is not queued (finished, cancelled)."""


class StaleAttempt(Conflict):
    """A write was refused with 409: its attempt is no longer the run's current one (a newer attempt
    owns the run) or the run has already ended. Either way this attempt must stop writing."""


class ServerUnavailable(CollapsewatchError):
    """The server could not be reached (connection error, timeout, 5xx, 408 or 429) after all retries."""


def is_fatal(entry: dict[str, object], exc: Exception) -> bool:
    """Whether a refused write means the run must stop logging: this attempt was fenced out (a 409 on
    anything but the final status), the run is gone (404) or the token is not accepted (401/403)."""
    if isinstance(exc, StaleAttempt) and entry.get("kind") != "finish":
        return True
    return isinstance(exc, ApiError) and exc.status_code in (401, 403, 404)


def error_message(response: httpx.Response) -> str:
    """The server's explanation: its ``message``, else ``detail`` (FastAPI's field paths joined)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:500]
    if isinstance(body.get("message"), str):
        return str(body["message"])
    detail = body.get("detail", body)
    if isinstance(detail, list):  # FastAPI validation errors: name the field and the problem
        parts = []
        for item in detail:
            loc = [str(p) for p in item.get("loc", []) if p != "body"] if isinstance(item, dict) else []
            msg = item.get("msg", item) if isinstance(item, dict) else item
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else str(msg))
        return "; ".join(parts)
    return str(detail)


def retry_after_seconds(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
