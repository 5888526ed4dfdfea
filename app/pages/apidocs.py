"""``GET /docs``: the API reference as a server-rendered page, read from ``/openapi.json``.

FastAPI's own /docs and /redoc load Swagger UI / ReDoc from a CDN, which is blank on the offline
machines this runs on; this page needs nothing but the server. Public, as ``/openapi.json`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.web.templating import templates

router = APIRouter(include_in_schema=False)
METHOD_ORDER = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Field:
    name: str
    where: str
    kind: str
    required: bool
    description: str = ""


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    description: str
    tag: str
    parameters: list[Field]
    body: str
    responses: list[tuple[str, str]]


@dataclass
class Schema:
    name: str
    description: str
    fields: list[Field] = field(default_factory=list)


def plain(text: str) -> str:
    """Docstrings are reStructuredText: ````X-Total-Count```` reads as ``X-Total-Count`` on the page."""
    return text.replace("``", "")


def type_name(schema: dict[str, Any]) -> str:
    """A short readable type: ``int``, ``list[RunPublic]``, ``str | null``, ``"a" | "b"``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(repr(value) for value in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(type_name(part) for part in schema[union])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{type_name(schema.get('items', {}))}]"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        return f"dict[str, {type_name(extra) if isinstance(extra, dict) else 'any'}]"
    return str(kind)


def operations(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in document.get("paths", {}).items():
        for method in METHOD_ORDER:
            operation = item.get(method)
            if operation is None:
                continue
            parameters = [
                Field(
                    name=p["name"],
                    where=p.get("in", ""),
                    kind=type_name(p.get("schema", {})),
                    required=bool(p.get("required")),
                    description=plain(p.get("description", "")),
                )
                for p in operation.get("parameters", [])
            ]
            content = operation.get("requestBody", {}).get("content", {})
            body = " or ".join(
                f"{media}: {type_name(part.get('schema', {}))}" for media, part in content.items()
            )
            answers = operation.get("responses", {})
            responses = [(code, answer.get("description", "")) for code, answer in answers.items()]
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=operation.get("summary", ""),
                    description=plain(operation.get("description", "")),
                    tag=(operation.get("tags") or ["other"])[0],
                    parameters=parameters,
                    body=body,
                    responses=responses,
                )
            )
    return found


def schemas(document: dict[str, Any]) -> list[Schema]:
    found = []
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", []))
        fields = [
            Field(
                name=prop,
                where="",
                kind=type_name(spec),
                required=prop in required,
                description=plain(spec.get("description", "")),
            )
            for prop, spec in schema.get("properties", {}).items()
        ]
        found.append(Schema(name=name, description=plain(schema.get("description", "")), fields=fields))
    return found


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    document = request.app.openapi()
    context = {
        "info": document.get("info", {}),
        "operations": operations(document),
        "schemas": schemas(document),
    }
    return templates.TemplateResponse(request, "api_docs.html", context)
