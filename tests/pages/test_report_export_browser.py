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


def _hostile_export(tmp_path: Path) -> tuple[Path, str]:
    """An exported report whose notes carry remote images and whose run is named like a formula."""
    from sqlalchemy import update

    from app.models import Run

    with team_site(tmp_path) as site:
        run_ids = [site.team_run, *site.seed.jobs(project="team", seeds=[1])]
        with site.db.transaction() as session:
            session.execute(update(Run).where(Run.id == run_ids[0]).values(name='=HYPERLINK("http://x","c")'))
        for run_id in run_ids:
            site.seed.claim(run_id)
            for epoch in range(3):
                site.seed.epoch(run_id, epoch, rho=0.5 - 0.1 * epoch)
        editor = site.client("editor@example.org")
        notes = (
            "Tracking pixel: ![pixel](https://tracker.example/p.png) and "
            '<img src="http://tracker.example/raw.gif" alt="raw"> and <img src="//tracker.example/x.gif">'
        )
        form = {
            "project": "team",
            "title": "Inert export",
            "notes": notes,
            "mode": "pinned",
            "query": f"/compare?runs={','.join(map(str, run_ids))}&stat=mean_sv",
            "csrf_token": page_csrf(editor),
        }
        saved = editor.post("/reports", data=form, follow_redirects=False)
        assert saved.status_code == 303, saved.text
        export = editor.get(saved.headers["location"] + "/export.html")
        assert export.status_code == 200
        csv_text = editor.get(saved.headers["location"] + "/export.csv").text
    path = tmp_path / "inert.html"
    path.write_text(export.text, encoding="utf-8")
    return path, csv_text


def test_exported_html_makes_zero_network_requests_when_opened(tmp_path: Path) -> None:
    """Issue 15, finding 6: the file carries a CSP that forbids fetches and its notes' images are
    links; opened in chromium with every request logged (the network is on), it asks for nothing
    but itself, and the charts still draw under that policy."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    report, csv_text = _hostile_export(tmp_path)
    html = report.read_text(encoding="utf-8")
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in html
    assert "<img" not in html.split('id="report-notes"', 1)[1].split("</div>", 1)[0]
    assert "'=HYPERLINK" in csv_text and "\n=HYPERLINK" not in csv_text and ",=HYPERLINK" not in csv_text
    requests: list[str] = []
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: console.append(message.text))
        page.goto(report.as_uri())
        page.wait_for_function(
            "document.querySelectorAll('#chart-overlay .main-svg').length > 0", timeout=30_000
        )
        page.wait_for_timeout(500)  # let any late image or font load be attempted
        links = page.evaluate(
            "Array.from(document.querySelectorAll('#report-notes a')).map(a => a.getAttribute('href'))"
        )
        drawn = page.evaluate("document.getElementById('chart-overlay').data.length")
        context.close()
        browser.close()
    assert [url for url in requests if url != report.as_uri()] == []
    assert not [text for text in console if "Content Security Policy" in text], console
    assert "https://tracker.example/p.png" in links and "http://tracker.example/raw.gif" in links
    assert drawn == 2
