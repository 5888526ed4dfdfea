"""The OpenAPI document tells the whole truth: every error a route can answer, and CSV downloads.

Routes declare their success model; the error answers are shared by all of them (``app.api.errors``
writes ``{"detail", "message"}``), so they are added here once instead of on every route. The API
fuzzing (tests/fuzz) checks each response against this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

API_PREFIX = "/api/"
ERROR_SCHEMA = "ErrorPublic"
CSV_PATHS = ("/epochs.csv", "/epochs")  # `/epochs?format=csv` answers CSV too
ERRORS: dict[str, str] = {
    "400": "The body could not be read (not UTF-8)",
    "401": "Missing, invalid or revoked credentials",
    "403": "The credentials may not do this (e.g. a worker token on a user route)",
    "404": "The run (or its checkpoint) does not exist, or is not visible to the caller",
    "409": "Conflict: a stale attempt, a finished run, or a run someone else holds",
    "413": "The request body is larger than the server accepts",
    "429": "Too many requests: wait for Retry-After seconds",
    "503": "The database is unavailable: retry after Retry-After seconds",
    "507": "The server could not store an upload (its artifact directory is full or read-only)",
}


class ErrorPublic(BaseModel):
    """Every error answer: ``detail`` (a string, or the list of invalid fields) and ``message``."""

    detail: Any
    message: str


def _document(schema: dict[str, Any]) -> dict[str, Any]:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR_SCHEMA] = ErrorPublic.model_json_schema()
    ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code, description in ERRORS.items():
                responses.setdefault(
                    code, {"description": description, "content": {"application/json": {"schema": ref}}}
                )
            if method == "get" and path.endswith("/runs/{run_id}/events"):
                responses.setdefault("204", {"description": "Resumed after the end of a finished run"})
            ok = responses.get("200")
            if method == "get" and path.endswith(CSV_PATHS) and ok is not None:
                content = ok.setdefault("content", {})
                content["text/csv"] = {"schema": {"type": "string"}}
                listed = content.get("application/json", {}).get("schema")
                if path.endswith("/epochs") and listed is not None:  # ?format=json: {run, epochs}
                    content["application/json"]["schema"] = {"anyOf": [listed, {"type": "object"}]}
    return schema


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with a cached version that documents the shared error answers."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
