"""Fixtures and the end-of-run tally for the API fuzzing (see ``fuzzkit``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fuzzkit import TALLY, FuzzTarget, seed


@pytest.fixture(scope="session")
def fuzz_target() -> Iterator[FuzzTarget]:
    from schemathesis.python import asgi
    from test_api_fuzz import APP

    yield seed(APP)
    asgi.shutdown_lifespans()


@pytest.fixture(scope="session")
def pg_fuzz_target() -> Iterator[FuzzTarget]:
    from schemathesis.python import asgi
    from test_api_fuzz import PG_ADMIN_URL, PG_APP, PG_URL

    from bench.pgscratch import scratch_database

    with scratch_database(PG_ADMIN_URL, name=PG_URL.rsplit("/", 1)[1]):
        try:
            yield seed(PG_APP)
            asgi.shutdown_lifespans()
        finally:
            PG_APP.state.db.dispose()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY.cases:
        return
    total = sum(TALLY.cases.values())
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(TALLY.statuses.items()))
    terminalreporter.write_sep("=", "API fuzzing (schemathesis)")
    operations = {name.rsplit(" [", 1)[0] for name in TALLY.cases}
    databases = sorted({name.rsplit(" [", 1)[1].rstrip("]") for name in TALLY.cases})
    terminalreporter.write_line(
        f"fuzz: {len(operations)} operations x {len(databases)} databases ({', '.join(databases)}): "
        f"{total} cases (max {max(TALLY.cases.values())} per operation), {len(TALLY.failed)} failures"
    )
    terminalreporter.write_line(f"fuzz: responses by status: {statuses}")
    terminalreporter.write_line(f"fuzz: {TALLY.hostile} cases carried a hostile value (fuzzkit.hostile_case)")
    for name in sorted(TALLY.failed):
        terminalreporter.write_line(f"fuzz: FAILED {name}")
