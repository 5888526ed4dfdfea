"""A dataset uploaded from the job form in Debian's chromium, against a real `collapsewatch up` (its
embedded Celery worker trains the job): the upload fields live in the job form's card but belong to
their own form (HTML ``form=`` attribute), which only a browser exercises."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from dashboard_live import LiveServer
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from dashboard_live import start_live_server

    workdir = tmp_path_factory.mktemp("datasets-live")
    with pytest.MonkeyPatch.context() as env:  # the embedded worker caches datasets here, not in ~
        env.setenv("COLLAPSEWATCH_DATASET_CACHE_DIR", str(workdir / "worker-cache"))
        server = start_live_server(workdir)
    try:
        server.api("POST", "/api/v1/runs", json={"project": "default"})  # datasets go into projects
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser, live: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _npz(**arrays: np.ndarray) -> bytes:
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(90, 5)).astype(np.float32), "y": np.arange(90) % 3} | arrays
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    return buffer.getvalue()


def _choose(page: Page, name: str, data: bytes) -> None:
    page.set_input_files(
        "#dataset_file", files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}]
    )


def test_upload_in_the_form_then_submit_trains_on_it(page: Page, live: LiveServer) -> None:
    page.goto("/jobs/new")
    _choose(page, "blobs.npz", _npz())
    page.click("#upload-dataset")
    page.wait_for_url("**/jobs/new?dataset=*")
    dataset_id = page.url.rsplit("=", 1)[1]
    assert page.input_value("#dataset_id") == dataset_id and page.input_value("#dataset") == "npz"
    assert "blobs.npz" in page.inner_text(".flash")
    for field, value in {"epochs": "2", "probe_size": "16", "batch_size": "32", "embedding_dim": "8"}.items():
        page.fill(f"#{field}", value)
    page.click("#submit-job")
    page.wait_for_url("**/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    deadline = time.monotonic() + 180
    run = live.api("GET", f"/api/v1/runs/{run_id}")
    while run["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.5)
        run = live.api("GET", f"/api/v1/runs/{run_id}")
    assert run["status"] == "succeeded", run.get("error")
    assert run["config"]["dataset_id"] == int(dataset_id) and run["last_epoch"] == 2


def test_bad_upload_in_the_form_shows_the_field_error_and_picks_nothing(page: Page) -> None:
    page.goto("/jobs/new")
    _choose(page, "labels.npz", _npz(y=np.full(90, 0.5)))
    page.click("#upload-dataset")
    page.wait_for_selector('[data-error-for="dataset_file"]')
    assert "y: must be a 1-D integer array" in page.inner_text('[data-error-for="dataset_file"]')
    assert page.input_value("#dataset_id") == ""
