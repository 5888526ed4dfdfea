"""The exported report (one HTML file) opened in headless chromium with the network disabled: its
charts render from the inlined plotly.js and data. Screenshot: test-artifacts/reports/export.png
(override the folder with ``CW_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from teamsite import page_csrf, team_site

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]


def _exported_report(tmp_path: Path) -> Path:
    with team_site(tmp_path) as site:
        run_ids = [site.team_run, *site.seed.jobs(project="team", sweep={"lr": [0.01, 0.1]}, seeds=[0, 1])]
        for i, run_id in enumerate(run_ids):
            site.seed.claim(run_id)
            for epoch in range(6):
                site.seed.epoch(run_id, epoch, rho=0.8 - 0.1 * epoch + 0.02 * i)
        editor = site.client("editor@example.org")
        form = {
            "project": "team",
            "title": "Offline rank study",
            "notes": "Collapse shows as **falling** mean singular value.",
            "mode": "pinned",
            "query": f"/compare?runs={','.join(map(str, run_ids))}&stat=mean_sv&group=lr&x=lr",
            "csrf_token": page_csrf(editor),
        }
        saved = editor.post("/reports", data=form, follow_redirects=False)
        assert saved.status_code == 303, saved.text
        export = editor.get(saved.headers["location"] + "/export.html")
        assert export.status_code == 200
    path = tmp_path / "report.html"
    path.write_text(export.text, encoding="utf-8")
    return path


def test_exported_html_renders_its_charts_offline(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    report = _exported_report(tmp_path)
    artifacts = Path(os.environ.get("CW_TEST_ARTIFACTS", REPO / "test-artifacts")) / "reports"
    artifacts.mkdir(parents=True, exist_ok=True)
    attempted: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1100})

        def block(route: object) -> None:
            url = route.request.url  # type: ignore[attr-defined]
            if url.startswith("file://"):
                route.continue_()  # type: ignore[attr-defined]
            else:
                attempted.append(url)
                route.abort()  # type: ignore[attr-defined]

        context.route("**/*", block)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(report.as_uri())
        page.wait_for_function(
            "document.querySelectorAll('#chart-overlay .main-svg').length > 0", timeout=30_000
        )
        overlay = page.evaluate("document.getElementById('chart-overlay').data.length")
        grouped = page.evaluate("document.getElementById('chart-grouped').data.length")
        sweep = page.evaluate("document.getElementById('chart-sweep').data.length")
        lines = page.evaluate("document.querySelectorAll('#chart-overlay .scatterlayer .trace').length")
        hists = page.evaluate("document.querySelectorAll('#hist-multiples .js-plotly-plot').length")
        page.screenshot(path=str(artifacts / "export.png"), full_page=True)
        title = page.title()
        context.close()
        browser.close()
    assert attempted == [] and errors == []
    assert overlay == 5 and lines == 5  # one curve per run, drawn
    assert grouped == 3 * 3  # lr groups (0.05 default, 0.01, 0.1): two band edges + the mean each
    assert sweep >= 1 and hists == 5
    assert re.match(r"Offline rank study", title)
