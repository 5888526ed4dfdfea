"""Keep secrets in URLs out of the logs: share links (``/s/<token>``) and invitations
(``/invite/<token>``) are logged as ``/s/[redacted]``.

uvicorn's access log writes the request path (``uvicorn.access``, path in ``record.args``), and
error logs may quote it; :func:`install` puts :class:`RedactSecretPaths` on those loggers, on the
app's own loggers and on the root logger's handlers. Idempotent.
"""

from __future__ import annotations

import logging
import re
from typing import Any

SECRET_PATH = re.compile(r"(/(?:s|invite)/)[A-Za-z0-9_\-]{8,}")
REDACTED = r"\1[redacted]"
LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "app", "fastapi", "starlette")


def redact(text: str) -> str:
    return SECRET_PATH.sub(REDACTED, text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecretPaths(logging.Filter):
    """Rewrites the message and string arguments of every record it sees (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        return True


def _has_filter(filterer: logging.Filterer) -> bool:
    return any(isinstance(f, RedactSecretPaths) for f in filterer.filters)


def install() -> None:
    """Attach the filter to the loggers that see request paths and to the root handlers."""
    redactor = RedactSecretPaths()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not _has_filter(logger):
            logger.addFilter(redactor)
        for handler in logger.handlers:
            if not _has_filter(handler):
                handler.addFilter(redactor)
    for handler in logging.getLogger().handlers:
        if not _has_filter(handler):
            handler.addFilter(redactor)
