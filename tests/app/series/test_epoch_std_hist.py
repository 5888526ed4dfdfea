"""Epoch records carry std histograms on today's log-spaced edges and on the old even ones alike."""

from __future__ import annotations

import numpy as np
from apikit import Api

from app.series.run_view import epoch_rows
from collapsewatch.stats import DEFAULT_HIST_EDGES, LINEAR_HIST_EDGES, collapse_stats


def _stats(edges: tuple[float, ...]) -> dict:
    e = np.random.default_rng(0).standard_normal((64, 24)) * np.geomspace(1e-3, 2.0, 24)
    e[:, :3] = 0.0  # three dead dimensions land in the first bin
    return collapse_stats(e, hist_edges=edges)


def test_put_epoch_stores_log_spaced_and_linear_histograms_exactly(api: Api) -> None:
    run = api.sdk_run()
    sent = {0: _stats(DEFAULT_HIST_EDGES), 1: _stats(LINEAR_HIST_EDGES)}
    for epoch, stats in sent.items():
        response = api.put_epoch(run["id"], epoch, stats=stats)
        assert response.status_code == 200, response.text
    got = api.client.get(f"/api/v1/runs/{run['id']}/epochs", headers=api.user).json()
    for record in got:
        assert record["stats"]["std_hist"] == sent[record["epoch"]]["std_hist"]
    assert got[0]["stats"]["std_hist"]["edges"] == list(DEFAULT_HIST_EDGES)
    assert got[0]["stats"]["std_hist"]["counts"][0] == 3 and sum(got[0]["stats"]["std_hist"]["counts"]) == 24
    with api.db.transaction() as session:
        rows = epoch_rows(session=session, run_id=run["id"])
    assert [r["std_hist"] for r in rows] == [sent[0]["std_hist"], sent[1]["std_hist"]]


def test_put_epoch_refuses_histogram_whose_edges_do_not_match_counts(api: Api) -> None:
    run = api.sdk_run()
    stats = _stats(DEFAULT_HIST_EDGES)
    stats["std_hist"] = {"edges": [*DEFAULT_HIST_EDGES, 5.0], "counts": stats["std_hist"]["counts"]}
    response = api.put_epoch(run["id"], 0, stats=stats)
    assert response.status_code == 422 and "std_hist" in response.text and "one more entry" in response.text
