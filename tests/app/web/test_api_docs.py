"""/docs: the API reference page is built from the app's own OpenAPI document, with no CDN."""

from __future__ import annotations

from app.main import create_app
from app.pages.apidocs import operations, schemas, type_name


def test_type_name_reads_refs_unions_lists_enums_and_maps() -> None:
    assert type_name({"$ref": "#/components/schemas/RunPublic"}) == "RunPublic"
    assert type_name({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "integer | null"
    assert type_name({"type": "array", "items": {"$ref": "#/x/Epoch"}}) == "list[Epoch]"
    assert type_name({"enum": ["svmax", "vicreg"]}) == "'svmax' | 'vicreg'"
    assert type_name({"type": "object", "additionalProperties": {"type": "number"}}) == "dict[str, number]"


def test_reference_lists_every_api_route_with_parameters_body_and_schemas() -> None:
    document = create_app().openapi()
    found = operations(document)
    listed = {(op.method, op.path) for op in found}
    expected = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert listed == expected and len(listed) > 20
    put_epoch = next(op for op in found if op.method == "PUT" and op.path.endswith("/epochs/{epoch}"))
    assert {p.name for p in put_epoch.parameters} >= {"run_id", "epoch"}
    assert "application/json" in put_epoch.body
    assert any(code == "422" for code, _ in put_epoch.responses)
    names = {schema.name for schema in schemas(document)}
    assert "ErrorPublic" in names and len(names) == len(document["components"]["schemas"])


def test_reference_reads_docstring_literals_as_plain_text() -> None:
    document = create_app().openapi()
    described = [op.description for op in operations(document)] + [s.description for s in schemas(document)]
    assert any("X-Total-Count" in text for text in described)
    assert not any("``" in text for text in described)
