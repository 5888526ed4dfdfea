"""The run page's layer selector and layer x epoch heatmap in Debian's chromium, against the app under
uvicorn with runs seeded through the real services; a new epoch arrives over SSE."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_fakes import fake_stats

from app.auth.api_tokens import create_token, ensure_admin
from app.db import Database
from app.migrate import upgrade
from app.runs import lifecycle, submit
from app.series import epochs
from collapsewatch.contract import EpochIn, JobSubmit
from tests.collapsewatch.sdk.livekit import LiveServer, server_settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]
RHO = {"fc1": 0.9, "fc2": 0.6, "embedding": 0.3}  # fc1 spreads, the embedding collapses


@dataclass
class Site:
    url: str
    worker_token: str
    run_id: int


def _epoch(epoch: int) -> dict[str, Any]:
    layers = {name: fake_stats(epoch, rho=rho - 0.01 * epoch) for name, rho in RHO.items()}
    return {
        "attempt": 1,
        "metrics": {"train_loss": 1.0 / epoch},
        "stats": layers["embedding"],
        "layers": layers,
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = server_settings(tmp_path, secret_key="layers-secret", local_autologin=True)
    database = Database(settings)
    upgrade(database.engine)
    with database.transaction() as session:
        admin = ensure_admin(session=session, email=settings.admin_email)
        worker = create_token(session=session, user=admin, name="w", kind="worker").token
        data = JobSubmit(spec={"stats_layers": "all", "regularizer": "svmax", "reg_layers": "all"})
        (run,), _ = submit.create_jobs(session=session, data=data, owner_id=admin.id, max_attempts=3)
        assert lifecycle.claim(session=session, run_id=run.id, worker={}, lease_seconds=600).run
        for epoch in (1, 2, 3):
            epochs.put_epoch(
                session=session, run_id=run.id, epoch=epoch, data=EpochIn.model_validate(_epoch(epoch))
            )
        run_id = run.id
    database.dispose()
    server = LiveServer(settings)
    server.start()
    yield Site(server.url, worker, run_id)
    server.stop()


def test_run_page_layer_selector_switches_the_charts_and_heatmap_follows_sse(site: Site) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    artifacts = Path(os.environ.get("CW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "pages"
    artifacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # bypass_csp: Playwright's wait_for_function uses eval, which the app's CSP forbids
        context = browser.new_context(
            base_url=site.url, viewport={"width": 1400, "height": 1000}, bypass_csp=True
        )
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"/runs/{site.run_id}")
        options = page.eval_on_selector_all("#layer-select option", "els => els.map(e => e.value)")
        assert options == ["", "fc1", "fc2", "embedding"]  # the model's order, input to output
        assert page.get_attribute("#chart-layers", "data-layers") == "3"
        heat = page.evaluate("document.getElementById('chart-layers').data[0]")
        assert heat["y"] == ["fc1", "fc2", "embedding"] and heat["x"] == [1, 2, 3]
        assert heat["z"][0][0] == pytest.approx(0.89) and heat["z"][2][0] == pytest.approx(0.29)

        def rho_curve() -> list[float]:
            return list(page.evaluate("document.getElementById('chart-sv').data[3].y"))

        assert rho_curve() == pytest.approx([0.29, 0.28, 0.27])  # the default embedding
        page.select_option("#layer-select", "fc1")
        assert rho_curve() == pytest.approx([0.89, 0.88, 0.87])
        assert "layer fc1" in page.inner_text("#chart-sv")
        assert page.url.endswith("?layer=fc1")
        page.select_option("#layer-stat", "mean_sv")
        assert page.evaluate("document.getElementById('chart-layers').data[0].z[0][0]") == pytest.approx(
            fake_stats(1, rho=0.89)["mean_sv"]
        )
        page.wait_for_function("document.getElementById('live').textContent === 'live'", timeout=15_000)
        response = httpx.put(
            f"{site.url}/api/v1/runs/{site.run_id}/epochs/4",
            json=_epoch(4),
            headers={"Authorization": f"Bearer {site.worker_token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        page.wait_for_function(
            "document.getElementById('chart-layers').data[0].x.length === 4", timeout=15_000
        )
        assert rho_curve() == pytest.approx([0.89, 0.88, 0.87, 0.86])  # still fc1, live
        page.screenshot(path=artifacts / "run-layers.png", full_page=True)
        page.reload()  # the URL keeps the choice
        assert page.eval_on_selector("#layer-select", "el => el.value") == "fc1"
        assert rho_curve() == pytest.approx([0.89, 0.88, 0.87, 0.86])
        context.close()
        browser.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
