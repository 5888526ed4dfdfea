"""Text that UTF-8 cannot store (a lone surrogate escape, ``"\\ud800"``) is a 422 naming where it is,
on every JSON route and both databases, and nothing is written; a paired escape (an emoji) is text."""

from __future__ import annotations

import pytest
from apikit import Api
from sqlalchemy import func, select

from app.models import Epoch, Run

JSON = {"content-type": "application/json"}


def _runs(api: Api) -> int:
    with api.db.session(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"project": "p", "config": {"a": "\\ud800"}}', "body.config.a"),
        (b'{"project": "p", "config": {"\\udfff": 1}}', "body.config"),
        (b'{"project": "p", "config": {"list": ["ok", "x\\uDBFFy"]}}', "body.config.list.1"),
        (b'{"project": "p", "name": "\\ud800"}', "body.name"),
    ],
)
def test_a_lone_surrogate_in_a_run_is_a_422_and_nothing_is_stored(api: Api, body: bytes, where: str) -> None:
    before = _runs(api)
    response = api.client.post("/api/v1/runs", content=body, headers=api.user | JSON)
    assert response.status_code == 422, response.text
    assert where in response.json()["message"] and "Unicode" in response.json()["message"]
    assert _runs(api) == before


def test_a_lone_surrogate_in_an_epoch_is_a_422_and_nothing_is_stored(api: Api) -> None:
    run = api.sdk_run()
    body = b'{"attempt": 1, "metrics": {"loss": 1.0}, "layers": {"\\ud800": null}}'
    response = api.client.put(f"/api/v1/runs/{run['id']}/epochs/0", content=body, headers=api.worker | JSON)
    assert response.status_code == 422, response.text
    with api.db.session(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Epoch)) == 0


def test_a_paired_surrogate_escape_is_text_and_is_stored(api: Api) -> None:
    body = b'{"project": "p", "config": {"smile": "\\ud83d\\ude00"}}'
    response = api.client.post("/api/v1/runs", content=body, headers=api.user | JSON)
    assert response.status_code == 201, response.text
    assert response.json()["config"] == {"smile": "\U0001f600"}


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "utf-32"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_non_finite_number_in_a_utf16_or_utf32_body_is_a_422_and_nothing_is_stored(
    api: Api, encoding: str, value: str
) -> None:
    before = _runs(api)
    body = ('{"project": "p", "config": {"x": ' + value + "}}").encode(encoding)
    response = api.client.post("/api/v1/runs", content=body, headers=api.user | JSON)
    assert response.status_code == 422, response.text
    assert "body.config.x" in response.json()["message"] and "finite" in response.json()["message"]
    assert _runs(api) == before
