"""The run page's std heatmap in chromium, against a real `collapsewatch up`: today's log-spaced bins
separate a collapsing embedding from a spread one by eye, and runs stored with the old even [0, 2]
bins still render. Screenshots go to ``test-artifacts/pages/`` (``CW_TEST_ARTIFACTS`` moves them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from collapsewatch.stats import DEFAULT_HIST_EDGES, LINEAR_HIST_EDGES, collapse_stats

if TYPE_CHECKING:
    from dashboard_live import LiveServer
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
HEATMAP = "document.getElementById('chart-hist')"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from dashboard_live import start_live_server

    server = start_live_server(tmp_path_factory.mktemp("live-hist"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(
        base_url=live.url, viewport={"width": 1400, "height": 1000}, bypass_csp=True
    )
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def embeddings(stds: np.ndarray, seed: int, b: int = 256) -> np.ndarray:
    e = np.random.default_rng(seed).standard_normal((b, len(stds)))
    return (e - e.mean(0)) / e.std(0, ddof=1) * stds


def sdk_run(live: LiveServer, name: str, epochs: list[dict[str, Any]]) -> int:
    run_id = int(live.api("POST", "/api/v1/runs", json={"project": "hist", "name": name})["id"])
    for epoch, stats in enumerate(epochs):
        live.api("PUT", f"/api/v1/runs/{run_id}/epochs/{epoch}", json={"attempt": 1, "stats": stats})
    return run_id


def heatmap(page: Page, run_id: int) -> dict[str, Any]:
    page.goto(f"/runs/{run_id}")
    page.wait_for_function(f"{HEATMAP}.data && {HEATMAP}.data.length === 1 && {HEATMAP}.data[0].z")
    return dict(
        page.evaluate(
            f"""(() => {{ const el = {HEATMAP}; return {{ bins: el.dataset.bins, z: el.data[0].z,
            ticks: el.layout.yaxis.ticktext, text: el.data[0].text.map((row) => row[0]) }}; }})()"""
        )
    )


def occupied(z: list[list[int | None]], column: int) -> list[int]:
    return [row for row, counts in enumerate(z) if counts[column]]


def artifacts() -> Path:
    path = Path(os.environ.get("CW_TEST_ARTIFACTS", REPO / "test-artifacts" / "pages"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_run_page_heatmap_separates_collapsing_and_spread_unit_scale_embeddings(
    page: Page, live: LiveServer
) -> None:
    # collapsing: 8 dead dimensions, 8 dying (std 1e-3..1e-2), 16 alive; spread: 32 dims at 1/sqrt(d)
    collapsing = np.concatenate([np.zeros(8), np.geomspace(1e-3, 1e-2, 8), np.geomspace(0.1, 0.5, 16)])
    spread = np.geomspace(0.12, 0.24, 32)
    runs = {
        "collapsing": sdk_run(
            live, "collapsing", [collapse_stats(embeddings(collapsing, s)) for s in range(3)]
        ),
        "spread": sdk_run(live, "spread", [collapse_stats(embeddings(spread, s)) for s in range(3)]),
    }
    seen = {}
    for name, run_id in runs.items():
        seen[name] = heatmap(page, run_id)
        page.locator("#chart-hist").screenshot(path=artifacts() / f"std-heatmap-{name}.png")
    for view in seen.values():
        assert view["bins"] == "64" and len(view["z"]) == 64
        assert view["ticks"][0] == "0" and {"1e-3", "0.01", "0.1", "1"} <= set(view["ticks"])
        assert view["text"][0] == "[0, 1e-4)" and view["text"][-1].endswith(", 4)")
    low = {row for row in range(64) if DEFAULT_HIST_EDGES[row + 1] <= 0.01}  # the rows below std 0.01
    collapsing_rows, spread_rows = occupied(seen["collapsing"]["z"], -1), occupied(seen["spread"]["z"], -1)
    assert seen["collapsing"]["z"][0][-1] == 8 and seen["spread"]["z"][0][-1] == 0  # the dead bin
    assert len(low.intersection(collapsing_rows)) >= 6 and not low.intersection(spread_rows)
    assert len(collapsing_rows) >= 12  # dead, dying and alive dimensions light many rows
    assert 3 <= len(spread_rows) <= 6  # one tight band around 0.17


def test_run_page_heatmap_renders_runs_stored_with_the_old_linear_edges(page: Page, live: LiveServer) -> None:
    stats = [
        collapse_stats(embeddings(np.linspace(0.1, 1.9, 16), s), hist_edges=LINEAR_HIST_EDGES)
        for s in range(2)
    ]
    view = heatmap(page, sdk_run(live, "old edges", stats))
    assert view["bins"] == "64" and len(view["z"]) == 64
    assert {"0", "0.5", "1", "2"} <= set(view["ticks"])
    assert view["text"][0] == "[0, 0.0313)" and sum(row[-1] or 0 for row in view["z"]) == 16
