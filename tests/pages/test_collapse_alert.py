"""Collapse detection on the run page (app/collapse_alert.py)."""

from __future__ import annotations

from app.runs.alert import CollapseAlert, EpochPoint, detect_collapse


def _points(rhos: list[float | None], deads: list[int | None]) -> list[EpochPoint]:
    return [EpochPoint(i, r, d) for i, (r, d) in enumerate(zip(rhos, deads, strict=True))]


def test_detect_collapse_healthy_run_raises_nothing() -> None:
    assert detect_collapse(_points([0.5, 0.6, 0.7], [0, 0, 0])) == []


def test_detect_collapse_rho_below_threshold_reports_start_of_current_streak() -> None:
    # Dips at epoch 1, recovers, then falls for good from epoch 3.
    alerts = detect_collapse(_points([0.5, 0.1, 0.4, 0.12, 0.05], [0] * 5), rho_threshold=0.15)
    assert alerts == [CollapseAlert("rho", 3, 0.05, 0.15)]
    assert "epoch 3" in alerts[0].message


def test_detect_collapse_recovered_rho_raises_nothing() -> None:
    assert detect_collapse(_points([0.5, 0.05, 0.5], [0, 0, 0]), rho_threshold=0.15) == []


def test_detect_collapse_dead_dims_rising_reports_epoch_it_began() -> None:
    alerts = detect_collapse(_points([0.5, 0.5, 0.5, 0.5], [2, 2, 5, 9]))
    assert alerts == [CollapseAlert("dead_dims", 2, 9.0, 2.0)]
    assert "rose to 9" in alerts[0].message and "epoch 2" in alerts[0].message


def test_detect_collapse_both_signals_unsorted_input_and_gaps() -> None:
    points = _points([0.5, None, 0.1, 0.05], [0, 1, None, 3])
    alerts = detect_collapse(list(reversed(points)), rho_threshold=0.2)
    assert [(a.kind, a.began_epoch) for a in alerts] == [("rho", 2), ("dead_dims", 1)]


def test_detect_collapse_no_statistics_raises_nothing() -> None:
    assert detect_collapse(_points([None, None], [None, None])) == []
    assert detect_collapse([]) == []
