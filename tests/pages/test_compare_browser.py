"""The compare page in Debian's chromium (Playwright) for a real 2 x 2 sweep, written through the API
against a serve-only `collapsewatch up` (no worker: runs are claimed and their epochs written by the
test, no training): the run page's "Compare sweep" link, legends, groups and the sweep plot; the
smoothing and log-axis toggles in the URL and the plots; a saved report and a share link drawing the
same view. Screenshots go to ``test-artifacts/pages/`` (override with ``CW_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from dashboard_live import LiveServer
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 6


@pytest.fixture(scope="module")
def artifacts() -> Path:
    path = Path(os.environ.get("CW_TEST_ARTIFACTS", REPO / "test-artifacts" / "pages"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from dashboard_live import start_live_server

    server = start_live_server(tmp_path_factory.mktemp("compare"), worker=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sweep(live: LiveServer) -> list[dict[str, Any]]:
    """regularizer = none, svmax x seeds 0, 1: claimed, six epochs each, finished."""
    from dashboard_fakes import fake_stats

    body = {"project": "sweeps", "spec": {"epochs": EPOCHS}, "sweep": {"regularizer": ["none", "svmax"]}}
    runs: list[dict[str, Any]] = live.api("POST", "/api/v1/jobs", json=body | {"seeds": [0, 1]})
    for run in runs:
        attempt = live.api("POST", f"/api/v1/runs/{run['id']}/claim", json={"worker": {"host": "test"}})[
            "attempt"
        ]
        svmax = run["config"]["regularizer"] == "svmax"
        for epoch in range(EPOCHS):
            rho = (0.85 if svmax else 0.3) - 0.04 * epoch + 0.02 * run["config"]["seed"]
            stats = fake_stats(epoch, rho=rho)
            metrics = {
                "train_loss": 2.0 / (epoch + 1) + (0.3 if epoch % 2 else 0.0)
            }  # noisy: smoothing shows
            live.api(
                "PUT",
                f"/api/v1/runs/{run['id']}/epochs/{epoch}",
                json={"attempt": attempt, "metrics": metrics, "stats": stats},
            )
        live.api("POST", f"/api/v1/runs/{run['id']}/finish", json={"attempt": attempt, "status": "succeeded"})
    return runs


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    # Playwright's wait_for_function evaluates with eval, which the app's CSP forbids (checked in
    # tests/security/test_csp_in_browser.py): bypass it here.
    context = browser.new_context(
        base_url=live.url, viewport={"width": 1400, "height": 1000}, bypass_csp=True
    )
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _charts_drawn(page: Page) -> None:
    for chart in ("chart-overlay", "chart-grouped", "chart-sweep"):
        page.wait_for_function(f"document.getElementById('{chart}')._fullLayout !== undefined")


def _texts(page: Page, selector: str) -> list[str]:
    """The text of SVG elements (inner_text is for HTML)."""
    return list(page.locator(selector).evaluate_all("els => els.map(e => e.textContent)"))


def _legend(page: Page, chart: str) -> list[str]:
    return _texts(page, f"#{chart} .legendtext")


def _ticks(page: Page, chart: str) -> list[str]:
    return _texts(page, f"#{chart} .xtick text")


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _ema(values: list[float], weight: float) -> list[float]:
    out, last = [], 0.0
    for k, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight**k))
    return out


def test_follow_the_run_page_compare_sweep_link_to_the_sweep_grouped_by_regularizer(
    page: Page, sweep: list[dict[str, Any]], artifacts: Path
) -> None:
    page.goto(f"/runs/{sweep[0]['id']}")
    page.click("#compare-sweep")
    page.wait_for_url("**/compare?sweep=*")
    _charts_drawn(page)
    page.screenshot(path=artifacts / "compare_sweep.png", full_page=True)
    # legends name the values: one entry per group, colour = group
    assert _legend(page, "chart-overlay") == ["regularizer=none", "regularizer=svmax"]
    assert _legend(page, "chart-grouped") == ["regularizer=none (n=2)", "regularizer=svmax (n=2)"]
    assert page.get_attribute("#chart-grouped", "data-groups") == "2"
    colours = page.evaluate("document.getElementById('chart-overlay').data.map(t => t.line.color)")
    assert len(set(colours)) == 2 and len(colours) == 4
    # mean ± std over the seeds per group: baseline and SVMax apart, not averaged into one band
    means = page.evaluate(
        "document.getElementById('chart-grouped').data.filter(t => t.name).map(t => t.y[0])"
    )
    assert means[0] < means[1]
    # the sweep plot is filled: final mean_sv against the (categorical) regularizer, error bars
    sweep_plot = page.evaluate(
        """(() => { const el = document.getElementById('chart-sweep');
        return { type: el._fullLayout.xaxis.type,
                 traces: el.data.filter(t => t.error_y).map(t => [t.x, t.y.length]) }; })()"""
    )
    assert sweep_plot == {"type": "category", "traces": [[["none", "svmax"], 2]]}
    assert page.locator("#chart-sweep .point").count() >= 2
    assert page.get_attribute("#chart-sweep", "data-lines") == "1"
    # epoch axes tick at whole epochs
    ticks = _ticks(page, "chart-grouped")
    assert ticks and all(t.isdigit() for t in ticks), ticks
    # ... also over two epochs, where Plotly alone ticks at 0.2, 0.4 … (shown by a non-epoch axis)
    probe = page.evaluate(
        """(() => {
        const ticks = (title) => {
          const div = document.createElement('div'); div.id = 'probe-' + title; div.style.width = '600px';
          document.body.appendChild(div);
          cw.plot(div.id, [cw.line('a', [0, 1], [1, 2], '#000')],
                  cw.layout('probe', { xaxis: { title: { text: title } } }));
          return Array.from(div.querySelectorAll('.xtick text')).map(t => t.textContent);
        };
        return { epoch: ticks('epoch'), other: ticks('other') }; })()"""
    )
    assert probe["epoch"] == ["0", "1"], probe
    assert any("." in t for t in probe["other"]), probe
    assert page.locator("#group-keys input[value=regularizer]").is_checked()
    assert not page.locator("#group-keys input[value=seed]").is_checked()


def test_smoothing_and_log_axis_toggles_redraw_and_stay_in_the_url_report_and_share_link(
    page: Page, sweep: list[dict[str, Any]], live: LiveServer, browser: Browser, artifacts: Path
) -> None:
    sweep_id = sweep[0]["sweep_id"]
    page.goto(f"/compare?sweep={sweep_id}&stat=train_loss")
    _charts_drawn(page)
    raw = page.evaluate("document.getElementById('chart-overlay').data[0].y")
    page.eval_on_selector(
        "#smooth", "el => { el.value = '0.6'; el.dispatchEvent(new Event('input', { bubbles: true })); }"
    )
    page.check("#logy")
    page.wait_for_function("document.getElementById('chart-overlay')._fullLayout.yaxis.type === 'log'")
    assert _query(page.url)["smooth"] == ["0.6"] and _query(page.url)["logy"] == ["1"]
    for element, attribute in (("#permalink", "href"), ("#report-query", "value")):
        linked = _query(str(page.eval_on_selector(element, f"el => el.{attribute}")))
        assert linked["smooth"] == ["0.6"] and linked["logy"] == ["1"] and linked["group"] == ["regularizer"]
    overlay = page.evaluate(
        """document.getElementById('chart-overlay').data
        .map(t => ({ name: t.name, y: t.y, opacity: t.opacity }))"""
    )
    faint, smoothed = overlay[0], overlay[1]  # each run: its raw curve, faint, behind the smoothed one
    assert faint["name"].endswith("(raw)") and faint["opacity"] < 0.5 and faint["y"] == raw
    assert smoothed["y"] == pytest.approx(_ema(raw, 0.6))
    assert page.evaluate("document.getElementById('chart-grouped')._fullLayout.yaxis.type") == "log"
    page.screenshot(path=artifacts / "compare_smoothed_log.png", full_page=True)

    page.reload()  # the URL alone reproduces the view
    _charts_drawn(page)
    assert page.input_value("#smooth") == "0.6" and page.is_checked("#logy")
    assert page.evaluate("document.getElementById('chart-overlay')._fullLayout.yaxis.type") == "log"
    page.select_option("#xaxis", "time")  # loads the wall-time curves
    page.wait_for_url("**xaxis=time**")
    _charts_drawn(page)
    query = _query(page.url)
    assert query["xaxis"] == ["time"] and query["smooth"] == ["0.6"] and query["logy"] == ["1"]
    title = page.evaluate("document.getElementById('chart-grouped')._fullLayout.xaxis.title.text")
    assert title.startswith("wall time (")

    page.click("#save-report summary")
    page.fill("#report-form input[name=title]", "Smoothed sweep")
    page.click("#report-form button.primary")
    page.wait_for_url("**/reports/*")
    _charts_drawn(page)
    _assert_saved_view(page)
    page.screenshot(path=artifacts / "compare_report.png", full_page=True)
    page.click("#share-form button.primary")
    page.wait_for_selector("#new-link code")
    link = page.inner_text("#new-link code").strip()
    anonymous = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    try:
        shared = anonymous.new_page()
        shared.goto(link)
        _charts_drawn(shared)
        _assert_saved_view(shared)
    finally:
        anonymous.close()


def _assert_saved_view(page: Page) -> None:
    state = page.evaluate(
        """(() => {
        const o = document.getElementById('chart-overlay'), g = document.getElementById('chart-grouped');
        return { log: [o._fullLayout.yaxis.type, g._fullLayout.yaxis.type],
                 x: g._fullLayout.xaxis.title.text,
                 faint: o.data.filter(t => t.opacity < 0.5).length }; })()"""
    )
    assert state["log"] == ["log", "log"] and state["x"].startswith("wall time (")
    assert state["faint"] == 4  # smoothing kept: each run's raw curve behind its smoothed one
    assert _legend(page, "chart-grouped") == ["regularizer=none (n=2)", "regularizer=svmax (n=2)"]


def test_chart_titles_name_the_layer_of_a_statistic_but_not_of_a_metric(page: Page, live: LiveServer) -> None:
    from dashboard_fakes import fake_stats

    body = {"project": "layers", "spec": {"epochs": 2}, "sweep": {"regularizer": ["none", "svmax"]}}
    runs: list[dict[str, Any]] = live.api("POST", "/api/v1/jobs", json=body | {"seeds": [0]})
    for run in runs:
        claim = live.api("POST", f"/api/v1/runs/{run['id']}/claim", json={"worker": {"host": "test"}})
        for epoch in range(2):
            record = {
                "attempt": claim["attempt"],
                "metrics": {"recall_at_1": 0.4},
                "stats": fake_stats(epoch, rho=0.5),
                "layers": {"fc2": fake_stats(epoch, rho=0.9)},
            }
            live.api("PUT", f"/api/v1/runs/{run['id']}/epochs/{epoch}", json=record)
    ids = ",".join(str(run["id"]) for run in runs)
    titles = """['chart-overlay', 'chart-grouped', 'chart-sweep']
        .map(id => document.getElementById(id)._fullLayout.title.text)"""
    page.goto(f"/compare?runs={ids}&stat=sv_position&metric=sv_position&layer=fc2")
    _charts_drawn(page)
    overlay, grouped, sweep_title = page.evaluate(titles)
    assert overlay.startswith("sv_position (fc2) per run") and grouped.startswith("sv_position (fc2): mean")
    assert sweep_title.startswith("Final sv_position (fc2) vs regularizer")
    assert page.evaluate("document.getElementById('chart-sweep').data[0].y") == [0.9, 0.9]
    page.goto(f"/compare?runs={ids}&stat=sv_position&metric=recall_at_1&layer=fc2")
    _charts_drawn(page)
    assert page.evaluate(titles)[2].startswith("Final recall_at_1 vs regularizer")
