"""``bench.ingest_ab`` runs end to end (no timing asserted): two real servers of one checkout on
SQLite, their epoch PUTs and metric POSTs interleaved, both answered and counted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import ingest_ab


def test_ingest_ab_times_two_servers_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    here = Path(ingest_ab.__file__).resolve().parents[1]
    assert (
        ingest_ab.main(["--baseline", str(here), "--backend", "sqlite", "--epochs", "60", "--batch", "10"])
        == 0
    )
    out = capsys.readouterr().out
    assert len(re.findall(r"epoch PUT [\d.]+ ms \(\d+/s\)", out)) == 2
    assert re.search(r"B / A: epoch wall [\d.]+, web CPU [\d.]+; metrics wall [\d.]+", out)
