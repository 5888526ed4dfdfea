"""Domain errors, turned into HTTP responses by ``app/api/errors.py`` (and CLI messages)."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class InvalidInput(DomainError):
    """Bad input found past schema validation; ``loc`` names the field like pydantic does."""

    status_code = 422

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = list(loc)
