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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY.cases:
        return
    total = sum(TALLY.cases.values())
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(TALLY.statuses.items()))
    terminalreporter.write_sep("=", "API fuzzing (schemathesis)")
    terminalreporter.write_line(
        f"fuzz: {len(TALLY.cases)} operations x {total} cases "
        f"(max {max(TALLY.cases.values())} per operation), {len(TALLY.failed)} failures"
    )
    terminalreporter.write_line(f"fuzz: responses by status: {statuses}")
    for name in sorted(TALLY.failed):
        terminalreporter.write_line(f"fuzz: FAILED {name}")
