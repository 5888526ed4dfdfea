"""The runs page's "Reproduce the paper" button in Debian's chromium: it queues the demo, the progress
card follows the runs, and once they finish the page has the reports written and links them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dashboard_fakes import Recorder, fake_stats
from fastapi import FastAPI
from sqlalchemy import select

from app.auth.api_tokens import ensure_admin
from app.auth.models import Report
from app.db import Database
from app.demo.experiments import experiments, run_count
from app.migrate import upgrade
from app.models import Run
from app.runs import lifecycle
from app.series import epochs
from collapsewatch.contract import EpochIn, FinishIn
from tests.collapsewatch.sdk.livekit import LiveServer, server_settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Site:
    url: str
    db: Database
    recorder: Recorder


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = server_settings(tmp_path, secret_key="demo-secret", local_autologin=True)
    recorder = Recorder()

    def no_worker(app: FastAPI) -> None:
        app.state.enqueue = recorder  # no worker here: the test finishes the runs itself

    database = Database(settings)
    upgrade(database.engine)
    with database.transaction() as session:
        ensure_admin(session=session, email=settings.admin_email)
    server = LiveServer(settings, configure=no_worker)
    server.start()
    yield Site(server.url, database, recorder)
    server.stop()
    database.dispose()


def _finish_runs(db: Database) -> None:
    with db.transaction() as session:
        ids = list(session.scalars(select(Run.id).order_by(Run.id)))
    for run_id in ids:
        with db.transaction() as session:
            assert lifecycle.claim(session=session, run_id=run_id, worker={}, lease_seconds=600).run
            run = session.get(Run, run_id)
            assert run is not None
            rho = 0.8 if run.config.get("regularizer") == "svmax" else 0.2
            layers = {"fc1": fake_stats(1, rho=0.5), "projector": fake_stats(1, rho=0.5)}
            record = {
                "attempt": 1,
                "metrics": {"recall_at_1": 0.9},
                "stats": fake_stats(1, rho=rho),
                "layers": layers,
            }
            epochs.put_epoch(session=session, run_id=run_id, epoch=1, data=EpochIn.model_validate(record))
            lifecycle.finish(session=session, run_id=run_id, data=FinishIn(attempt=1, status="succeeded"))


def test_reproduce_button_shows_progress_and_links_the_reports_it_wrote(site: Site) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    artifacts = Path(os.environ.get("CW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "pages"
    artifacts.mkdir(parents=True, exist_ok=True)
    total = run_count(experiments(quick=True))
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            base_url=site.url, viewport={"width": 1400, "height": 1000}, bypass_csp=True
        )
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/runs")
        assert page.is_visible("#demo-form-empty button")  # the empty state offers it
        page.check("#demo-form-empty input[name=quick]")
        page.click("#demo-form-empty button")
        page.wait_for_url("**/runs?demo=*")
        assert len(site.recorder.enqueued) == total
        card = page.locator(".demo-progress")
        assert f"0/{total} runs finished" in card.inner_text()
        assert page.is_visible("#demo-form button")  # and the page's menu, once runs exist
        _finish_runs(site.db)  # what the worker would do; the card polls and then writes the reports
        page.wait_for_function(
            "document.querySelectorAll('.demo-progress .demo-reports a').length === 4", timeout=30_000
        )
        assert f"{total}/{total} runs finished" in card.inner_text()
        links = page.eval_on_selector_all(".demo-reports a", "els => els.map(e => e.getAttribute('href'))")
        page.screenshot(path=artifacts / "demo-progress.png", full_page=True)
        page.goto(links[1])
        assert "Claim (b)" in page.inner_text("body") and "Verdict" in page.inner_text("body")
        context.close()
        browser.close()
    with site.db.transaction() as session:
        assert len(list(session.scalars(select(Report)))) == 4  # written once
    assert errors == [], f"JavaScript errors on the page: {errors}"
