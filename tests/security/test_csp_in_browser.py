"""The Content-Security-Policy (app/headers.py) still lets Plotly draw: the run page, the compare
page and a shared report, in Debian's chromium, with no CSP violation reported by the browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.queue.harness import Stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WATCH_VIOLATIONS = """() => { window.__csp = [];
  document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); }"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.mark.parametrize("page_kind", ["run", "compare", "shared report"])
def test_plotly_charts_render_under_the_csp(
    browser: Browser, live_stack: tuple[Stack, list[int], str], page_kind: str
) -> None:
    server, runs, share_path = live_stack
    path = {"run": f"/runs/{runs[0]}", "compare": f"/compare?runs={runs[0]},{runs[1]}&stat=mean_sv",
            "shared report": share_path}[page_kind]  # fmt: skip
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    console: list[str] = []
    errors: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(f"({WATCH_VIOLATIONS})()")
    try:
        response = page.goto(path)
        assert response is not None and response.status == 200
        assert "frame-ancestors 'none'" in (response.headers.get("content-security-policy") or "")
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        page.wait_for_timeout(500)
        violations = page.evaluate("window.__csp")
        assert violations == [], f"CSP violations on {path}: {violations}"
        assert not [c for c in console if "Content Security Policy" in c], console
        assert errors == [], errors
    finally:
        context.close()
