"""JSON columns written by ``app.db.json_text`` (pydantic-core) read back as json.dumps text would."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from sqlalchemy import select

from app.db import Database, json_text
from app.models import Project, Run, utcnow

VALUES: list[Any] = [
    {"singular_values": [1.5, 0.1, 1e-7, 1e16, 123456789.123456789, 5e-324, 1.7976931348623157e308]},
    {"tag": 'é ✓ \u2028 <script> "quoted" \\ \x00 \x1f', "nested": {"a": [True, False, None, 0, -1]}},
    [1, 2.0, "3", {"k": []}],
    {"1": 2, "": ""},
    3.25,
    "text",
    None,
]


@pytest.mark.parametrize("value", VALUES)
def test_json_text_parses_to_what_json_dumps_parses_to(value: Any) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))
    assert json_text(value) != "" and isinstance(json_text(value), str)


def test_json_text_keeps_non_finite_floats_as_python_json_does() -> None:
    text = json_text({"x": [math.nan, math.inf, -math.inf]})
    assert text == '{"x":[NaN,Infinity,-Infinity]}'
    back = json.loads(text)["x"]
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf]


def test_json_text_keeps_floats_exact() -> None:
    floats = [0.1 + 0.2, 1 / 3, 2.0**-1074, 1e308, -0.0, 1e-7]
    assert json.loads(json_text(floats)) == floats


def test_json_columns_round_trip_through_the_database(database: Database) -> None:
    config = {"lr": 0.1 + 0.2, "name": "é ✓ \u2028", "tiny": 5e-324, "list": [1, 2.5, None, True]}
    summary = {"mean_sv": 1 / 3, "best_val_acc": 0.97}
    with database.transaction() as session:
        project = Project(name="json")
        session.add(project)
        session.flush()
        run = Run(project_id=project.id, kind="sdk", status="running", config=config, summary=summary)
        run.created_at = run.updated_at = utcnow()
        session.add(run)
        session.flush()
        run_id = run.id
    with database.transaction() as session:
        stored = session.execute(select(Run.config, Run.summary).where(Run.id == run_id)).one()
    assert stored.config == config
    assert stored.summary == summary


def test_json_text_writes_lone_surrogates_escaped_as_json_dumps_did() -> None:
    value = {"a": "\ud800", "\udfff": ["x\ud800y"]}
    assert json_text(value) == json.dumps(value)


def test_a_run_config_with_a_lone_surrogate_is_stored_not_a_500(database: Database) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's json type refuses a lone surrogate's escape (as it did with json.dumps)")
    with database.transaction() as session:
        project = Project(name="surrogates")
        session.add(project)
        session.flush()
        run = Run(project_id=project.id, kind="sdk", status="running", config={"a": "\ud800"}, summary={})
        run.created_at = run.updated_at = utcnow()
        session.add(run)
        session.flush()
        run_id = run.id
    with database.transaction() as session:
        assert session.execute(select(Run.config).where(Run.id == run_id)).scalar_one() == {"a": "\ud800"}
