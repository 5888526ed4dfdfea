"""Where the API announces new epochs, status changes and log lines (after the commit).

The API calls ``request.app.state.publisher.publish(run_id, event_type, payload)``. The default here
drops everything; the SSE module replaces ``app.state.publisher`` with the in-process or Redis
publisher. Payloads are JSON-ready dicts; persisted events carry ``event_id`` (the ``run_events.id``,
usable as the SSE ``Last-Event-ID``).
"""

from __future__ import annotations

from typing import Any, Protocol


class Publisher(Protocol):
    def publish(self, run_id: int, event_type: str, payload: dict[str, Any]) -> None:
        """Deliver one event to the subscribers of ``run_id``. Must not raise for delivery failures."""


class NullPublisher:
    """Publishes nothing (no subscribers can exist until the SSE module installs its publisher)."""

    def publish(self, run_id: int, event_type: str, payload: dict[str, Any]) -> None:
        return None
