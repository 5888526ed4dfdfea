"""Server-rendered pages through the real app (TestClient, real SQLite, real services)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from app.models import Run

if TYPE_CHECKING:
    from pagekit import Pages


def _run_count(pages: Pages) -> int:
    with pages.db.session(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(Run)) or 0)


def test_runs_list_filters_by_method_and_sorts_by_collapse_summary(pages: Pages) -> None:
    none_id, svmax_id = pages.seed.jobs(sweep={"regularizer": ["none", "svmax"]})
    for run_id, rho in ((none_id, 0.2), (svmax_id, 0.8)):
        pages.seed.claim(run_id)
        pages.seed.epoch(run_id, 0, rho=rho)
    html = pages.client.get("/runs?regularizer=svmax").text
    assert f'href="/runs/{svmax_id}"' in html and f'href="/runs/{none_id}"' not in html
    ascending = pages.client.get("/runs?sort=sv_position").text
    assert ascending.index(f'data-run-id="{none_id}"') < ascending.index(f'data-run-id="{svmax_id}"')
    descending = pages.client.get("/runs?sort=-sv_position").text
    assert descending.index(f'data-run-id="{svmax_id}"') < descending.index(f'data-run-id="{none_id}"')


def test_runs_list_filters_by_tag_status_sweep_and_reports_bad_sort(pages: Pages) -> None:
    tagged = pages.seed.jobs(tags=["keep"])[0]
    sweep = pages.seed.jobs(sweep={"lr": [0.1, 0.2]})
    other = pages.seed.jobs(project="other")[0]
    html = pages.client.get("/runs?tag=keep").text
    assert f'data-run-id="{tagged}"' in html and f'data-run-id="{sweep[0]}"' not in html
    with pages.db.session(write=False) as session:
        sweep_id = session.get(Run, sweep[0]).sweep_id  # type: ignore[union-attr]
    html = pages.client.get(f"/runs?sweep={sweep_id}").text
    assert all(f'data-run-id="{i}"' in html for i in sweep) and f'data-run-id="{tagged}"' not in html
    html = pages.client.get("/runs?project=other&status=queued").text
    assert f'data-run-id="{other}"' in html and f'data-run-id="{tagged}"' not in html
    bad = pages.client.get("/runs?sort=nope")
    assert bad.status_code == 200 and "&#39;nope&#39; is not a column" in bad.text


def test_run_page_shows_collapse_alert_with_epoch_it_began(pages: Pages) -> None:
    run_id = pages.seed.jobs()[0]
    pages.seed.claim(run_id)
    for epoch, rho in enumerate([0.6, 0.5, 0.1, 0.05]):
        pages.seed.epoch(run_id, epoch, rho=rho)
    html = pages.client.get(f"/runs/{run_id}").text
    assert re.search(r'class="alert" data-kind="rho" data-began="2"', html)
    assert "since epoch 2" in html
    alerts = pages.client.get(f"/runs/{run_id}/alerts?rho=0.01").json()
    assert alerts == []
    assert pages.client.get(f"/runs/{run_id}/alerts").json()[0]["began_epoch"] == 2


def test_run_page_without_javascript_lists_epochs_in_a_table(pages: Pages) -> None:
    run_id = pages.seed.jobs()[0]
    pages.seed.claim(run_id)
    pages.seed.epoch(run_id, 0, rho=0.42)
    html = pages.client.get(f"/runs/{run_id}").text
    assert 'id="epoch-table"' in html and '<td class="n">0.42</td>' in html
    assert "testhost" in html  # worker / device


def test_cancel_needs_csrf_and_cancels_a_queued_run(pages: Pages) -> None:
    run_id = pages.seed.jobs()[0]
    refused = pages.client.post(f"/runs/{run_id}/cancel", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    token = pages.csrf()
    done = pages.client.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/runs/{run_id}"
    with pages.db.session(write=False) as session:
        assert session.get(Run, run_id).status == "cancelled"  # type: ignore[union-attr]


def test_rerun_creates_a_queued_copy_and_enqueues_it(pages: Pages) -> None:
    run_id = pages.seed.jobs(spec={"lr": 0.3}, tags=["x"])[0]
    response = pages.client.post(
        f"/runs/{run_id}/rerun", data={"csrf_token": pages.csrf()}, follow_redirects=False
    )
    new_id = int(response.headers["location"].rsplit("/", 1)[1])
    assert new_id != run_id and pages.recorder.enqueued == [new_id]
    with pages.db.session(write=False) as session:
        new = session.get(Run, new_id)
        assert new is not None and new.status == "queued" and new.config["lr"] == 0.3 and new.tags == ["x"]


def test_new_job_form_bad_values_show_field_errors_keep_values_and_create_nothing(pages: Pages) -> None:
    before = _run_count(pages)
    form = {
        "csrf_token": pages.csrf("/jobs/new"),
        "lr": "abc",
        "epochs": "0",
        "seeds": "0,x",
        "batch_size": "64",
    }
    response = pages.client.post("/jobs/new", data=form)
    assert response.status_code == 422
    html = response.text
    assert 'data-error-for="lr"' in html and "&#39;abc&#39; is not a number" in html
    assert 'data-error-for="epochs"' in html and "greater than or equal to 1" in html
    assert 'data-error-for="seeds"' in html
    assert 'id="lr" name="lr" value="abc"' in html and 'id="batch_size" name="batch_size" value="64"' in html
    assert _run_count(pages) == before and pages.recorder.enqueued == []


def test_new_job_form_without_csrf_is_refused(pages: Pages) -> None:
    assert pages.client.post("/jobs/new", data={"lr": "0.1"}).status_code == 403
    assert _run_count(pages) == 0


def test_new_job_form_sweep_creates_the_grid_and_opens_its_compare_page(pages: Pages) -> None:
    form = {
        "csrf_token": pages.csrf("/jobs/new"),
        "sweep_mode": "1",
        "sweep_regularizer": "none, svmax",
        "sweep_batch_size": "16,64",
        "seeds": "0,1",
        "epochs": "3",
        "tags": "a, b",
    }
    response = pages.client.post("/jobs/new", data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/compare?sweep=")
    assert len(pages.recorder.enqueued) == 8
    with pages.db.session(write=False) as session:
        runs = list(session.scalars(select(Run)))
    assert {(r.config["regularizer"], r.config["batch_size"], r.config["seed"]) for r in runs} == {
        (reg, b, s) for reg in ("none", "svmax") for b in (16, 64) for s in (0, 1)
    }
    assert all(r.config["epochs"] == 3 and r.tags == ["a", "b"] for r in runs)


def test_clone_and_edit_prefills_the_form_from_the_run(pages: Pages) -> None:
    run_id = pages.seed.jobs(spec={"lr": 0.25, "regularizer": "svmax", "seed": 7})[0]
    html = pages.client.get(f"/jobs/new?clone={run_id}").text
    assert 'id="lr" name="lr" value="0.25"' in html
    assert re.search(r"<option selected>svmax</option>", html)
    assert 'id="seeds" name="seeds" value="7"' in html


def test_compare_page_groups_runs_and_highlights_config_differences(pages: Pages) -> None:
    ids = pages.seed.jobs(sweep={"regularizer": ["none", "svmax"]}, seeds=[0, 1])
    for run_id in ids:
        pages.seed.claim(run_id)
        for epoch in range(3):
            pages.seed.epoch(run_id, epoch)
    html = pages.client.get(f"/compare?runs={','.join(map(str, ids))}&group=regularizer&x=seed").text
    table = html[html.index('id="group-table"') : html.index("</table>", html.index('id="group-table"'))]
    assert "regularizer=none" in table and "regularizer=svmax" in table
    assert '<tr class="differs"><td>regularizer</td>' in html and '<tr class="differs"><td>seed</td>' in html
    assert '<tr class="same"><td>lr</td>' in html
    assert 'id="chart-grouped" data-groups="2"' in html
    assert f'id="hist-{ids[0]}"' in html


def test_compare_page_reports_bad_query_values_instead_of_failing(pages: Pages) -> None:
    response = pages.client.get("/compare?runs=1,abc&epoch=late")
    assert response.status_code == 422  # the page still renders, naming what it dropped
    assert (
        "&#39;abc&#39; is not a run id" in response.text and "&#39;late&#39; is not an epoch" in response.text
    )


def test_plotly_js_is_served_from_the_installed_package(pages: Pages) -> None:
    from pathlib import Path

    import plotly

    bundled = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    response = pages.client.get("/static/plotly.min.js")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
    assert response.content == bundled.read_bytes()
    assert pages.client.get("/static/../settings.py").status_code == 404
    assert "cdn" not in pages.client.get("/runs").text.lower()


def test_run_page_embeds_scalars_logged_by_the_sdk(pages: Pages) -> None:
    import json

    from app.runs import submit
    from app.series import metrics
    from collapsewatch.contract import RunCreate

    with pages.db.transaction() as session:
        run, _ = submit.create_sdk_run(
            session=session, data=RunCreate(project="sdk"), owner_id=pages.seed.admin_id
        )
        metrics.write_metrics(
            session=session, run_id=run.id, attempt=1, keys=["loss"] * 5, steps=list(range(5)),
            values=[1.0 / (s + 1) for s in range(5)],
        )  # fmt: skip
        run_id = run.id
    html = pages.client.get(f"/runs/{run_id}").text
    start = html.index('<script type="application/json" id="run-data">') + len(
        '<script type="application/json" id="run-data">'
    )
    data = json.loads(html[start : html.index("</script>", start)])
    assert data["scalars"]["loss"] == [[s, 1.0 / (s + 1)] for s in range(5)]
    assert 'id="scalars-card" hidden' not in html


def test_page_errors_when_a_browser_asks_are_html_pages_naming_the_problem(pages: Pages) -> None:
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    missing = pages.client.get("/runs/99999", headers=browser)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "run 99999 does not exist" in missing.text and 'href="/runs"' in missing.text
    bad = pages.client.get("/runs/x<script>", headers=browser)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "run_id" in bad.text and "x<script>" not in bad.text  # escaped, not markup
    nowhere = pages.client.get("/no-such-page", headers=browser)
    assert nowhere.status_code == 404 and "there is no page at /no-such-page" in nowhere.text
    # The API and clients that do not ask for HTML keep the JSON answer.
    assert pages.client.get("/runs/99999").json()["detail"] == "run 99999 does not exist"
    api = pages.client.get("/api/v1/runs/99999", headers=browser)
    assert api.headers["content-type"].startswith("application/json")
