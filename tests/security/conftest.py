"""A live server for the security tests that need real HTTP (browser, access log): uvicorn on a
SQLite file in local mode, two SDK runs with epochs, a saved report and its share link."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.queue.harness import Stack

STATS: dict[str, Any] = {
    "mean_sv": 0.5, "sv_lower": 0.125, "sv_upper": 1.0, "sv_position": 0.43,
    "singular_values": [1.5, 0.25], "effective_rank": 1.7, "dim_std": [0.1, 0.3],
    "std_hist": {"edges": [0.0, 1.0, 2.0], "counts": [2, 0]}, "dead_dims": 0,
    "cov_offdiag": 0.01, "l2_std": 0.2,
}  # fmt: skip


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, list[int], str]]:
    stack = Stack(tmp_path_factory.mktemp("csp"), local_autologin="true", secret_key="csp")
    try:
        stack.start_server()
        runs = []
        for seed in range(2):
            run = stack.http.post("/api/v1/runs", json={"project": "csp", "config": {"seed": seed}}).json()
            for epoch in range(1, 6):
                body = {"attempt": 1, "metrics": {"val_acc": epoch / 10}, "stats": STATS}
                assert (
                    stack.worker_http.put(f"/api/v1/runs/{run['id']}/epochs/{epoch}", json=body).status_code
                    == 200
                )
            runs.append(run["id"])
        query = f"runs={runs[0]},{runs[1]}&stat=mean_sv"
        report = stack.http.post("/api/v1/reports", json={"project": "csp", "title": "csp", "query": query})
        assert report.status_code == 201, report.text
        share = stack.http.post(f"/api/v1/reports/{report.json()['id']}/shares", json={})
        assert share.status_code == 201, share.text
        yield stack, runs, "/s/" + share.json()["url"].rsplit("/s/", 1)[1]
    finally:
        stack.close()
