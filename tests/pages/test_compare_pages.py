"""The compare page opened for a sweep, and its view settings carried by links, reports and share
links (app/pages/compare.py, templates/compare.html, templates/_report_body.html)."""

from __future__ import annotations

import html as htmllib
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pagekit import Pages

from app.models import Run


def chart_data(text: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', text, re.S)
    assert match, "the page embeds its chart data"
    return dict(json.loads(match.group(1)))


def href(text: str, element_id: str) -> str:
    match = re.search(rf'<a [^>]*href="([^"]+)"[^>]*id="{element_id}"', text) or re.search(
        rf'<a [^>]*id="{element_id}"[^>]*href="([^"]+)"', text
    )
    assert match, f"no link #{element_id}"
    return htmllib.unescape(match.group(1))


def params(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def config_of(pages: Pages, run_id: int) -> dict[str, Any]:
    with pages.db.session(write=False) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return dict(run.config)


def seed_sweep(pages: Pages) -> list[int]:
    """regularizer = none, svmax x seeds 0, 1, three epochs each (SVMax spreads, baseline collapses)."""
    ids = pages.seed.jobs(sweep={"regularizer": ["none", "svmax"]}, seeds=[0, 1])
    for run_id in ids:
        pages.seed.claim(run_id)
        svmax = config_of(pages, run_id)["regularizer"] == "svmax"
        for epoch in range(3):
            pages.seed.epoch(run_id, epoch, rho=(0.8 if svmax else 0.2) - 0.05 * epoch)
    return ids


def test_run_page_compare_sweep_link_groups_by_the_swept_key(pages: Pages) -> None:
    ids = seed_sweep(pages)
    link = href(pages.client.get(f"/runs/{ids[0]}").text, "compare-sweep")
    assert "group" not in params(link)  # the link names the sweep; the page works out the rest
    page = pages.client.get(link).text
    data = chart_data(page)
    assert [g["label"] for g in data["groups"]] == ["regularizer=none", "regularizer=svmax"]
    assert [len(g["runs"]) for g in data["groups"]] == [2, 2]
    assert data["group"] == ["regularizer"] and 'data-groups="2"' in page
    none, svmax = data["groups"]
    assert none["mean"][0] < svmax["mean"][0]  # the difference is not averaged away
    (line,) = data["sweep"]  # one categorical sweep line, error bars over the two seeds
    assert data["x"] == "regularizer" and data["x_kind"] == "categorical"
    assert line["x"] == ["none", "svmax"] and line["n"] == [2, 2]
    # the grouping choices are the keys that differ, the automatic one ticked
    assert re.search(r'name="group" value="regularizer" id="group-\d+" checked', page)
    assert re.search(r'name="group" value="seed" id="group-\d+" >', page)
    canonical = params(href(page, "permalink"))
    assert canonical["group"] == ["regularizer"] and canonical["xaxis"] == ["epoch"]


def test_runs_list_compare_link_opens_the_same_grouping(pages: Pages) -> None:
    ids = seed_sweep(pages)
    sweep_page = pages.client.get(f"/runs/{ids[0]}").text
    sweep_id = params(href(sweep_page, "compare-sweep"))["sweep"][0]
    listing = pages.client.get(f"/runs?sweep={sweep_id}").text
    link = re.search(r'<a class="button" href="(/compare\?sweep=[^"]+)">Compare this sweep</a>', listing)
    assert link
    data = chart_data(pages.client.get(htmllib.unescape(link.group(1))).text)
    assert [g["label"] for g in data["groups"]] == ["regularizer=none", "regularizer=svmax"]


def test_compare_page_carries_smoothing_log_and_x_axis_into_its_links(pages: Pages) -> None:
    ids = seed_sweep(pages)
    runs = ",".join(map(str, ids))
    page = pages.client.get(f"/compare?runs={runs}&group=seed&smooth=0.6&logy=1&xaxis=time").text
    data = chart_data(page)
    assert (data["smooth"], data["logy"], data["xaxis"], data["group"]) == (0.6, True, "time", ["seed"])
    assert [g["label"] for g in data["groups"]] == ["seed=0", "seed=1"]
    linked = params(href(page, "permalink"))
    assert linked["smooth"] == ["0.6"] and linked["logy"] == ["1"] and linked["xaxis"] == ["time"]
    assert linked["group"] == ["seed"]
    saved = re.search(r'name="query" value="([^"]+)"', page)
    assert saved and params(htmllib.unescape(saved.group(1)))["smooth"] == ["0.6"]
    assert 'id="smooth" min="0" max="0.99" step="0.01" value="0.6"' in page
    assert 'id="logy" value="1" checked' in page and '<option value="time" selected>' in page


def test_compare_page_reports_bad_view_values_instead_of_failing(pages: Pages) -> None:
    seed_sweep(pages)
    response = pages.client.get("/compare?runs=1,2&smooth=2&logy=maybe&xaxis=iteration&group=nope")
    assert response.status_code == 200
    text = htmllib.unescape(response.text)
    assert "smooth: '2' is not a smoothing weight" in text
    assert "logy: 'maybe' is not a switch" in text
    assert "xaxis: 'iteration' is not an x axis; use one of epoch, step, time" in text
    assert "group: no run has config key(s) nope" in text


def save_report(pages: Pages, query: str, *, mode: str) -> int:
    page = pages.client.get(query).text
    saved = re.search(r'name="query" value="([^"]+)"', page)
    assert saved
    form = {
        "project": "default",
        "title": f"{mode} view",
        "notes": "",
        "mode": mode,
        "query": htmllib.unescape(saved.group(1)),
        "csrf_token": pages.csrf(),
    }
    response = pages.client.post("/reports", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


def test_saved_report_and_share_link_reproduce_grouping_smoothing_log_and_x_axis(pages: Pages) -> None:
    ids = seed_sweep(pages)
    sweep_id = params(href(pages.client.get(f"/runs/{ids[0]}").text, "compare-sweep"))["sweep"][0]
    view = f"/compare?sweep={sweep_id}&smooth=0.8&logy=1&xaxis=time"
    expected = {"group": ["regularizer"], "smooth": 0.8, "logy": True, "xaxis": "time", "x": "regularizer"}
    for mode in ("pinned", "live"):
        report_id = save_report(pages, view, mode=mode)
        page = pages.client.get(f"/reports/{report_id}").text
        data = chart_data(page)
        assert {k: data[k] for k in expected} == expected, mode
        assert [g["label"] for g in data["groups"]] == ["regularizer=none", "regularizer=svmax"]
        assert data["sweep"] and data["sweep"][0]["x"] == ["none", "svmax"]
        meta = re.sub(r"\s+", " ", page.split('id="report-view">')[1].split("</p>")[0])
        assert "Grouped by regularizer" in meta and "wall time" in meta
        assert "EMA 0.8" in meta and "y axis: log" in meta
        reopened = params(href(page, "open-comparison"))
        assert reopened["smooth"] == ["0.8"] and reopened["group"] == ["regularizer"]
        form = {"label": "", "expires_days": "", "csrf_token": pages.csrf()}
        shared = pages.client.post(f"/reports/{report_id}/shares", data=form).text
        token = re.search(r"/s/([A-Za-z0-9_\-]+)", shared)
        assert token
        anonymous = pages.client.get(f"/s/{token.group(1)}").text
        assert {k: chart_data(anonymous)[k] for k in expected} == expected, mode
        assert 'id="sweep-table"' in anonymous


def test_compare_page_layer_menu_draws_the_chosen_layer_and_keeps_it_in_the_url(pages: Pages) -> None:
    from dashboard_fakes import fake_stats

    from app.series import epochs
    from collapsewatch.contract import EpochIn

    ids = pages.seed.jobs(sweep={"regularizer": ["none", "svmax"]}, seeds=[0])
    for run_id in ids:
        pages.seed.claim(run_id)
        for epoch in range(2):
            data = EpochIn.model_validate(
                {
                    "attempt": 1,
                    "stats": fake_stats(epoch, rho=0.5),
                    "layers": {"fc1": fake_stats(epoch, rho=0.9)},
                }
            )
            with pages.db.transaction() as session:
                epochs.put_epoch(session=session, run_id=run_id, epoch=epoch, data=data)
    runs = ",".join(map(str, ids))
    default = pages.client.get(f"/compare?runs={runs}&stat=sv_position").text
    layered = pages.client.get(f"/compare?runs={runs}&stat=sv_position&layer=fc1").text
    assert re.search(r'<select name="layer" id="layer">.*<option >fc1</option>', default, re.S)
    assert re.search(r"<option selected>fc1</option>", layered)
    assert chart_data(default)["layer"] == "" and chart_data(layered)["layer"] == "fc1"
    curves = [y for points in chart_data(layered)["curves"].values() for _, y in points]
    assert curves and all(abs(y - 0.9) < 1e-9 for y in curves)  # fc1's rho, not the embedding's 0.5
    assert all(abs(y - 0.5) < 1e-9 for points in chart_data(default)["curves"].values() for _, y in points)
    assert params(href(layered, "permalink"))["layer"] == ["fc1"]


def _seed_layers(pages: Pages, *, epochs_of: dict[int, int] | None = None) -> list[int]:
    """regularizer = none, svmax x seeds 0, 1: the embedding's rho 0.5, fc2's 0.9 (+ 0.01 per seed),
    epochs 0..2 unless ``epochs_of`` stops a run (by its index) earlier."""
    from dashboard_fakes import fake_stats

    from app.series import epochs
    from collapsewatch.contract import EpochIn

    ids = pages.seed.jobs(sweep={"regularizer": ["none", "svmax"]}, seeds=[0, 1])
    for i, run_id in enumerate(ids):
        pages.seed.claim(run_id)
        seed = config_of(pages, run_id)["seed"]
        for epoch in range((epochs_of or {}).get(i, 2) + 1):
            record = {
                "attempt": 1,
                "metrics": {"recall_at_1": 0.25},
                "stats": fake_stats(epoch, rho=0.5),
                "layers": {"fc2": fake_stats(epoch, rho=0.9 + 0.01 * seed)},
            }
            with pages.db.transaction() as session:
                epochs.put_epoch(
                    session=session, run_id=run_id, epoch=epoch, data=EpochIn.model_validate(record)
                )
    return ids


def _cells(page: str, table: str) -> list[list[str]]:
    body = page.split(f'id="{table}"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1], re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows
    ]


def test_sweep_plot_and_group_table_follow_the_layer_for_statistics_not_metrics(pages: Pages) -> None:
    ids = _seed_layers(pages)
    runs = ",".join(map(str, ids))
    page = pages.client.get(f"/compare?runs={runs}&stat=sv_position&metric=sv_position&layer=fc2").text
    data = chart_data(page)
    assert data["stat_layer"] == "fc2" and data["metric_layer"] == "fc2"
    (line,) = data["sweep"]
    assert line["mean"] == [0.905, 0.905] and line["n"] == [2, 2]  # fc2's rho, not the embedding's 0.5
    assert [g["final"]["mean"] for g in data["groups"]] == [0.905, 0.905]
    assert [row[3] for row in _cells(page, "group-table")] == ["0.905", "0.905"]
    assert [row[2] for row in _cells(page, "sweep-table")] == ["0.905", "0.905"]
    text = re.sub(r"\s+", " ", page)
    assert (
        "Groups: final sv_position (fc2)" in text and "Sweep: final sv_position (fc2) vs regularizer" in text
    )
    assert "Std histograms of fc2 at the last common epoch (2;" in text
    # a metric is per run: the sweep of recall_at_1 names no layer
    metric = chart_data(
        pages.client.get(f"/compare?runs={runs}&stat=sv_position&metric=recall_at_1&layer=fc2").text
    )
    assert metric["metric_layer"] == "" and metric["sweep"][0]["mean"] == [0.25, 0.25]
    # the same view saved as a report draws and tabulates fc2 too
    view = f"/compare?runs={runs}&stat=sv_position&metric=sv_position&layer=fc2"
    report = pages.client.get(f"/reports/{save_report(pages, view, mode='pinned')}").text
    assert chart_data(report)["sweep"][0]["mean"] == [0.905, 0.905]
    assert [row[3] for row in _cells(report, "group-table")] == ["0.905", "0.905"]
    assert "Sweep: final sv_position (fc2)" in report and "of fc2 at the last common epoch (2;" in report


def test_group_table_counts_runs_with_a_final_value_and_shows_no_std_for_one(pages: Pages) -> None:
    ids = _seed_layers(pages, epochs_of={0: 0})  # run 0 stopped after epoch 0
    first = config_of(pages, ids[0])["regularizer"]
    extra = pages.seed.jobs(spec={"regularizer": first}, seeds=[7])  # queued, never ran: no value
    runs = ",".join(map(str, [*ids, *extra]))
    page = pages.client.get(f"/compare?runs={runs}&stat=sv_position&group=regularizer").text
    rows = {row[0]: row for row in _cells(page, "group-table")}
    assert rows[f"regularizer={first}"][1:3] == ["2 of 3", "0\u20132"]  # each run's own last epoch
    assert rows[f"regularizer={first}"][3] == "0.5" and rows[f"regularizer={first}"][4] == "0"
    text = re.sub(r"\s+", " ", page)
    assert "each run's value at its own last epoch" in text
    assert "Std histograms at the last common epoch (0;" in text
    one = pages.client.get(f"/compare?runs={ids[0]},{extra[0]}&stat=sv_position&group=regularizer").text
    (row,) = _cells(one, "group-table")
    assert row[1] == "1 of 2" and row[4] == "—"  # one run: no std, not a std of 0
    asked = re.sub(r"\s+", " ", pages.client.get(f"/compare?runs={runs}&epoch=1").text)
    assert "Std histograms at epoch 1</h2>" in asked


def test_report_pinned_before_per_run_finals_keeps_its_table_and_says_what_it_holds(pages: Pages) -> None:
    from sqlalchemy import select

    from app.auth.models import Report

    ids = _seed_layers(pages, epochs_of={0: 0})
    report_id = save_report(pages, f"/compare?runs={ids[0]},{ids[2]}&stat=sv_position&group=-", mode="pinned")
    with pages.db.transaction() as session:
        report = session.scalars(select(Report).where(Report.id == report_id)).one()
        assert report.snapshot is not None
        old = dict(report.snapshot)
        shown = dict(old["page_data"])
        shown["groups"] = [{k: v for k, v in g.items() if k != "final"} for g in shown["groups"]]
        for key in ("stat_layer", "metric_layer", "hist_epoch_auto"):
            shown.pop(key)
        report.snapshot = old | {"page_data": shown}  # as saved before this release
    page = pages.client.get(f"/reports/{report_id}").text
    assert "saved before per-run final values" in page
    (row,) = _cells(page, "group-table")
    assert row[1:] == ["2", "2", "0.5", "\u2014"]  # the band's last epoch, one run there: no std
    assert "Std histograms at epoch 0</h2>" in re.sub(r"\s+", " ", page)
