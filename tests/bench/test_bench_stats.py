"""bench.stats' overhead table measures the collapse_stats call the engine's evaluation makes (no
timing assertions: the figures are the bench's to print)."""

from __future__ import annotations

import pytest

from bench import stats as bench_stats

pytestmark = pytest.mark.slow


def test_overhead_table_times_the_engines_own_statistics_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_stats.main(["--quick", "--only", "overhead", "--dims", "8,128"]) == 0
    out = capsys.readouterr().out
    assert "threads=1" in out and "probe = the engine's default 512 rows" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:2][-1:] == ["512"]}
    assert set(rows) == {"8", "128"}
    assert rows["8"][-1] == "-"  # no target at d = 8
    assert rows["128"][-1] in ("PASS/PASS", "PASS/MISS", "MISS/PASS", "MISS/MISS")
    assert float(rows["128"][4]) > 0  # the statistics were timed inside the epochs


def test_stats_meter_puts_the_original_back() -> None:
    import collapsewatch.stats
    import worker.training.evaluate

    with bench_stats._StatsMeter() as meter:
        assert meter.modules and worker.training.evaluate.collapse_stats is meter
    assert worker.training.evaluate.collapse_stats is collapsewatch.stats.collapse_stats
