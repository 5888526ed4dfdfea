"""Schemathesis over every operation of the app's own OpenAPI schema, in-process (ASGI), with auth,
on SQLite and on PostgreSQL (which refuses what SQLite stores, e.g. NUL characters in text).

Checks: no 5xx, declared status codes, content types, headers and response schemas. Generated run
ids are mostly mapped onto existing runs (queued, running, finished, SDK) so routes go past the 404.
Besides schemathesis' own data, ``fuzzkit.hostile_case`` puts one hostile value into a share of the
cases (issue 15): NaN/Infinity/1e999 anywhere in a JSON body, deep and huge JSON, overlong strings,
Unicode and odd integers in path and query parameters.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fuzzkit import MAX_EXAMPLES, TALLY, FirstChunkOnly, FuzzTarget, hostile_case, make_app, pg_fuzz_url
from hypothesis import HealthCheck, settings
from schemathesis import checks

# Built at import (schemathesis parametrizes at collection); the database is set up by `fuzz_target`.
ROOT = Path(tempfile.mkdtemp(prefix="cw-fuzz-"))
atexit.register(shutil.rmtree, ROOT, True)  # also when the fuzz tests are deselected
APP = make_app(ROOT / "sqlite")
PG_ADMIN_URL, PG_URL = pg_fuzz_url()
PG_APP = make_app(ROOT / "postgres", PG_URL)
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = FirstChunkOnly(APP)  # event streams end after their first chunk
pg_schema = schemathesis.openapi.from_dict(PG_APP.openapi())
pg_schema.app = FirstChunkOnly(PG_APP)
for _schema in (schema, pg_schema):  # non-finite numbers, Unicode digits, deep/huge JSON, long strings
    _schema.hooks.register_hook_with_name(hostile_case, "flatmap_case")
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
TIMEOUT_S = 60.0
# Not checked: schemathesis' positive/negative *input* heuristics. The API validates more than the
# schema can say (histogram edges = counts + 1 and increasing, attempts that exist), and pydantic's
# lax mode deliberately takes `false` as 0 for an int; neither is a defect of the responses.
EXCLUDED = [checks.positive_data_acceptance, checks.negative_data_rejection]


@schema.parametrize()
@HYPOTHESIS
def test_api_conforms_to_schema_when_fuzzed(case: Any, fuzz_target: FuzzTarget) -> None:
    _call_and_check(case, fuzz_target, "sqlite")


@pytest.mark.postgres
@pg_schema.parametrize()
@HYPOTHESIS
def test_api_conforms_to_schema_when_fuzzed_on_postgres(case: Any, pg_fuzz_target: FuzzTarget) -> None:
    _call_and_check(case, pg_fuzz_target, "postgres")


def _call_and_check(case: Any, target: FuzzTarget, db: str) -> None:
    name = f"{case.operation.label} [{db}]"
    if "run_id" in (case.path_parameters or {}):
        case.path_parameters["run_id"] = target.existing(case.path_parameters["run_id"])
    TALLY.cases[name] += 1
    try:
        response = case.call(headers=target.headers, timeout=TIMEOUT_S)
        TALLY.statuses[response.status_code] += 1
        case.validate_response(response, headers=target.headers, excluded_checks=EXCLUDED)
    except BaseException:
        TALLY.failed.add(name)
        raise
