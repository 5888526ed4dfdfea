"""A live server for the security tests that need real HTTP (browser, access log): uvicorn on a
SQLite file in local mode, two SDK runs with epochs, a saved report and its share link."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from seckit import STATS

from tests.queue.harness import Stack


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
