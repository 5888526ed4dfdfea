"""The runs page's bulk actions in Debian's chromium (Playwright) against a serve-only `collapsewatch
up`: tick runs, archive them (the list hides them), show the archived ones and unarchive them, delete
to the trash and restore from it. A screenshot goes to ``test-artifacts/pages/``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dashboard_live import LiveServer
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from dashboard_live import start_live_server

    server = start_live_server(tmp_path_factory.mktemp("bulk"), worker=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def runs(live: LiveServer) -> list[int]:
    """Three finished runs of project "bulk"."""
    created = live.api("POST", "/api/v1/jobs", json={"project": "bulk", "seeds": [0, 1, 2]})
    ids = []
    for run in created:
        attempt = live.api("POST", f"/api/v1/runs/{run['id']}/claim", json={})["attempt"]
        live.api("POST", f"/api/v1/runs/{run['id']}/finish", json={"attempt": attempt, "status": "succeeded"})
        ids.append(int(run["id"]))
    return ids


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())  # the confirm before delete
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shown(page: Page) -> set[int]:
    return {
        int(v) for v in page.locator("table.runs input.pick").evaluate_all("els => els.map(e => e.value)")
    }


def tick(page: Page, run_ids: list[int]) -> None:
    for run_id in run_ids:
        page.locator(f'input.pick[value="{run_id}"]').check()


def test_select_runs_archive_unarchive_delete_and_restore(
    page: Page, live: LiveServer, runs: list[int]
) -> None:
    first, second, third = runs
    page.goto("/runs?project=bulk")
    assert shown(page) == set(runs)
    assert page.locator("#bulk-archive").is_disabled()  # nothing ticked yet
    tick(page, [first, second])
    page.locator("#bulk-tags").fill("ablation, keep")
    page.locator("#bulk-tag").click()
    page.wait_for_selector(".flash.ok")
    assert "2 runs tagged." in page.locator(".flash.ok").inner_text()
    assert set(live.api("GET", f"/api/v1/runs/{first}")["tags"]) == {"ablation", "keep"}

    tick(page, [first, second])
    page.locator("#bulk-archive").click()
    page.wait_for_selector(".flash.ok")
    assert "2 runs archived." in page.locator(".flash.ok").inner_text()
    assert shown(page) == {third}  # hidden by default, the filters kept

    page.locator("#show-lifecycle").select_option("archived")
    page.wait_for_url("**lifecycle=archived**")
    assert shown(page) == {first, second}
    tick(page, [first])
    page.locator("#bulk-unarchive").click()
    page.wait_for_selector(".flash.ok")
    assert shown(page) == {second}

    page.goto("/runs?project=bulk")
    assert shown(page) == {first, third}
    tick(page, [third])
    page.locator("#bulk-delete").click()  # confirmed by the dialog handler
    page.wait_for_selector(".flash.ok")
    assert "1 run moved to the trash." in page.locator(".flash.ok").inner_text()
    assert shown(page) == {first}

    page.locator("#show-lifecycle").select_option("trash")
    page.wait_for_url("**lifecycle=trash**")
    assert shown(page) == {third} and page.locator("#bulk-purge").count() == 1
    artifacts = Path(os.environ.get("CW_TEST_ARTIFACTS", REPO / "test-artifacts" / "pages"))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "runs-trash.png"), full_page=True)
    tick(page, [third])
    page.locator("#bulk-restore").click()
    page.wait_for_selector(".flash.ok")
    assert shown(page) == set()
    page.goto("/runs?project=bulk")
    assert shown(page) == {first, third}
