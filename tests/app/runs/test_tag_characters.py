"""Tags cannot carry NUL or control characters (review-attack finding).

``runs.tags`` is a JSON column: PostgreSQL's ``json`` keeps ``\\u0000`` escapes that ``jsonb`` refuses,
and every tag filter casts the tags to ``jsonb`` (``app.runs.store``, ``app.runs.table``). One editor
tagging one run with a NUL (bulk action or job submit) made every tag-filtered list that reached the
row answer 422 ("a number ... out of range") for every caller who can see it — the admin's, the
project's members' and the runs page, whose demo cards filter by the ``demo`` tag."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from teamkit import PASSWORD, Team
from test_bulk_runs import bulk, finished


@pytest.mark.parametrize("tag", ["a\u0000b", "line\nbreak", "tab\there", "\u007f"])
def test_tag_with_a_control_character_is_refused_and_lists_keep_working(team: Team, tag: str) -> None:
    run = finished(team)
    tagged = bulk(team, "editor", "tag", [run], tags=[tag])
    assert tagged.status_code == 422 and "tags" in tagged.json()["message"], tagged.text
    submitted = team.call("editor", "POST", "/api/v1/jobs", json={"project": "team", "tags": [tag]})
    assert submitted.status_code == 422 and "tags" in submitted.json()["message"], submitted.text
    for caller in ("admin", "owner", "viewer"):
        assert team.call(caller, "GET", "/api/v1/runs?tag=paper").status_code == 200
    browser = TestClient(team.client.app)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert csrf
    form = {"email": "viewer@example.org", "password": PASSWORD, "csrf_token": csrf.group(1)}
    assert browser.post("/login", data=form, follow_redirects=False).status_code == 303
    assert browser.get("/runs").status_code == 200
