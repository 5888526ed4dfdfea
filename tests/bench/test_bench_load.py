"""``bench.load`` runs end to end (no timing asserted): a real server on SQLite, workers pushing
epochs, browsers loading pages and following the live stream, every request answered."""

from __future__ import annotations

import re

import pytest

from bench import load


def test_load_bench_drives_a_real_server(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--db",
        "sqlite",
        "--seconds",
        "3",
        "--warmup",
        "0.5",
        "--workers",
        "2",
        "--browsers",
        "2",
        "--lockstep",
    ]
    assert load.main([*argv, "--epoch-interval", "0.25"]) == 0  # non-zero: some request failed
    out = capsys.readouterr().out
    puts = re.search(r"^epoch PUT\s+(\d+)\s", out, re.MULTILINE)
    assert puts is not None and int(puts.group(1)) >= 4, out
    assert re.search(r"SSE events received: [1-9]\d*; errors: 0", out), out
    assert re.search(r"web process peak RSS \(VmHWM\): \d+ MB", out), out
