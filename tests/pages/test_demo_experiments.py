"""The demo (app/demo/): its sweeps, the numbers and verdicts of its findings, and the "Reproduce
the paper" button's flow (submit, progress, reports once the runs finished) through the real services."""

from __future__ import annotations

from typing import Any

import pytest
from dashboard_fakes import fake_stats
from pagekit import Pages
from sqlalchemy import select

from app.auth.models import Report
from app.demo.experiments import compare_url, experiments, run_count
from app.demo.findings import FINDINGS, RunResult, claim_a, claim_b, claim_c, layer_study
from app.models import Run
from app.runs import lifecycle
from app.series import epochs
from collapsewatch.contract import EpochIn, FinishIn, JobSubmit


def test_demo_full_experiments_are_valid_sweeps_for_each_claim() -> None:
    items = {item.key: item for item in experiments(batch="0123abcd")}
    assert list(items) == ["claim-a", "claim-b", "claim-c", "layers"]
    specs = {key: JobSubmit.model_validate(item.submit).expand() for key, item in items.items()}
    assert {(s.regularizer, s.batch_size) for s in specs["claim-a"]} >= {("none", 32), ("svmax", 512)}
    lrs = sorted({s.lr for s in specs["claim-b"]})
    assert lrs[-1] / lrs[0] >= 100 and len({s.seed for s in specs["claim-b"]}) >= 3
    assert all(s.early_stop_patience > 0 and s.objective == "contrastive" for s in specs["claim-b"])
    assert {s.vicreg_std_coeff for s in specs["claim-c"]} == {0.0, 25.0}
    assert all(s.objective == "vicreg" and s.stats_layers == "projector" for s in specs["claim-c"])
    assert {s.reg_layers for s in specs["layers"]} == {"embedding", "all"}
    assert all(s.regularizer == "svmax" and s.stats_layers == "all" for s in specs["layers"])
    for key, item in items.items():
        assert item.submit["tags"] == ["demo", "demo:0123abcd", key]
    assert run_count(list(items.values())) == sum(len(v) for v in specs.values()) == 50


def test_demo_quick_variant_is_smaller_but_covers_every_claim() -> None:
    quick = experiments(quick=True)
    assert [i.key for i in quick] == ["claim-a", "claim-b", "claim-c", "layers"]
    assert run_count(quick) < run_count(experiments()) / 2
    for item in quick:
        JobSubmit.model_validate(item.submit).expand()


def test_demo_compare_url_encodes_the_view() -> None:
    url = compare_url("http://h:1/", "abc", {"group": "regularizer,lr", "x": "lr"})
    assert url == "http://h:1/compare?sweep=abc&group=regularizer%2Clr&x=lr"


def _run(i: int, config: dict[str, Any], *, stats: dict[str, Any] | None = None, **rest: Any) -> RunResult:
    return RunResult(
        id=i,
        status="succeeded",
        config={"seed": i % 3, "embedding_dim": 32} | config,
        summary=rest.pop("summary", {}),
        last_epoch=rest.pop("last_epoch", 10),
        stats=stats,
        layers=rest.pop("layers", {}),
    )


def test_claim_a_holds_only_when_svmax_is_higher_at_every_batch_size() -> None:
    runs = [
        _run(i, {"regularizer": reg, "batch_size": bs}, stats=fake_stats(1, rho=rho))
        for i, (reg, bs, rho) in enumerate(
            [("none", 32, 0.2), ("svmax", 32, 0.8), ("none", 128, 0.1), ("svmax", 128, 0.7)]
        )
    ]
    found = claim_a(runs)
    assert found.holds is True and "| 128 |" in found.notes and "0.700" in found.notes
    assert found.numbers["32"]["svmax_rho"] == pytest.approx(0.8)
    flipped = [
        r if r.config["batch_size"] == 32 else _run(9, r.config, stats=fake_stats(1, rho=0.5)) for r in runs
    ]
    assert claim_a(flipped).holds is False


def _lr_runs(recalls: dict[tuple[str, float], list[float]]) -> list[RunResult]:
    runs = []
    for (reg, lr), values in recalls.items():
        for seed, value in enumerate(values):
            runs.append(
                _run(
                    len(runs),
                    {"regularizer": reg, "lr": lr, "seed": seed},
                    summary={"best_recall_at_1": value},
                )
            )
    return runs


def test_claim_b_verdict_follows_the_gaps_and_their_spread() -> None:
    growing = _lr_runs({
        ("none", 0.01): [0.95, 0.95, 0.95], ("svmax", 0.01): [0.95, 0.96, 0.95],
        ("none", 0.1): [0.90, 0.91, 0.90], ("svmax", 0.1): [0.95, 0.95, 0.96],
        ("none", 1.0): [0.70, 0.72, 0.71], ("svmax", 1.0): [0.95, 0.94, 0.95],
    })  # fmt: skip
    found = claim_b(growing)
    assert found.holds is True and found.verdict.startswith("These numbers show")
    assert found.numbers["1.0"]["gap"] == pytest.approx(0.95 - 0.71, abs=0.01)
    assert "| 1 |" in found.notes and "±" in found.notes
    bumpy = _lr_runs({
        ("none", 0.01): [0.90, 0.90, 0.90], ("svmax", 0.01): [0.95, 0.95, 0.95],
        ("none", 0.1): [0.95, 0.95, 0.95], ("svmax", 0.1): [0.95, 0.95, 0.95],
        ("none", 1.0): [0.80, 0.85, 0.90], ("svmax", 1.0): [0.95, 0.95, 0.96],
    })  # fmt: skip
    assert claim_b(bumpy).holds is False and claim_b(bumpy).verdict.startswith("Partly")
    capped = [
        r
        if r.config["lr"] != 1.0
        else RunResult(r.id, r.status, r.config | {"epochs": 10}, r.summary, 10, None)
        for r in growing
    ]
    assert "reached the epoch cap" in claim_b(capped).verdict
    shrinking = _lr_runs({("none", 0.01): [0.8, 0.8], ("svmax", 0.01): [0.9, 0.9],
                          ("none", 1.0): [0.9, 0.9], ("svmax", 1.0): [0.9, 0.9]})  # fmt: skip
    assert claim_b(shrinking).verdict.startswith("These numbers do not show")


def test_claim_c_reads_collapse_from_rank_and_projector_std() -> None:
    def vic(i: int, mu: float, rank: float, proj_std: float) -> RunResult:
        stats = fake_stats(1) | {"effective_rank": rank}
        projector = fake_stats(1) | {"dim_std": [proj_std] * 8}
        return _run(i, {"vicreg_std_coeff": mu}, stats=stats, layers={"projector": projector})

    found = claim_c([vic(0, 0.0, 4.0, 0.01), vic(1, 25.0, 17.0, 0.8)])
    assert found.holds is True and "0.0100" in found.verdict and "17.00" in found.verdict
    assert claim_c([vic(0, 0.0, 16.0, 0.7), vic(1, 25.0, 17.0, 0.8)]).holds is False


def test_layer_study_tabulates_each_layers_rho_per_arm() -> None:
    def arm(i: int, reg_layers: str, rhos: dict[str, float]) -> RunResult:
        layers = {name: fake_stats(1, rho=rho) for name, rho in rhos.items()}
        return _run(i, {"reg_layers": reg_layers}, layers=layers, summary={"best_recall_at_1": 0.9})

    found = layer_study(
        [arm(0, "embedding", {"fc1": 0.5, "embedding": 0.8}), arm(1, "all", {"fc1": 0.7, "embedding": 0.8})]
    )
    assert "| fc1 | 0.500 | 0.700 |" in found.notes and "fc1 0.50 → 0.70" in found.verdict
    assert found.numbers == {
        "embedding": {"fc1": 0.5, "embedding": pytest.approx(0.8)},
        "all": {"fc1": 0.7, "embedding": pytest.approx(0.8)},
    }


def _finish_all(pages: Pages, batch: str) -> list[int]:
    with pages.db.transaction() as session:
        runs = list(session.scalars(select(Run).order_by(Run.id)))
        ids = [r.id for r in runs if f"demo:{batch}" in r.tags]
    for run_id in ids:
        pages.seed.claim(run_id)
        with pages.db.transaction() as session:
            run = session.get(Run, run_id)
            assert run is not None
            rho = 0.8 if run.config.get("regularizer") == "svmax" else 0.2
            layers = {
                "fc1": fake_stats(2, rho=0.5),
                "fc2": fake_stats(2, rho=0.35),
                "projector": fake_stats(2, rho=0.5),
            }
            stats = fake_stats(2, rho=rho)
            metrics = {"recall_at_1": 0.5 + rho / 2}
            data = EpochIn.model_validate(
                {"attempt": 1, "metrics": metrics, "stats": stats, "layers": layers}
            )
            epochs.put_epoch(session=session, run_id=run_id, epoch=1, data=data)
            lifecycle.finish(session=session, run_id=run_id, data=FinishIn(attempt=1, status="succeeded"))
    return ids


def test_reproduce_button_queues_the_demo_and_writes_reports_when_runs_finish(pages: Pages) -> None:
    empty = pages.client.get("/runs").text
    assert 'id="demo-form-empty"' in empty and 'id="demo-form"' in empty and "Reproduce the paper" in empty
    response = pages.client.post(
        "/demo", data={"csrf_token": pages.csrf(), "quick": "1"}, follow_redirects=False
    )
    assert response.status_code == 303
    batch = response.headers["location"].split("demo=")[1]
    quick_runs = run_count(experiments(quick=True))
    assert len(pages.recorder.enqueued) == quick_runs  # enqueued after commit, one message per run
    progress = pages.client.get(f"/demo/{batch}").json()
    assert progress["total"] == quick_runs and progress["finished"] == 0 and not progress["done"]
    page = pages.client.get(f"/runs?demo={batch}").text
    assert f'data-batch="{batch}"' in page and f"0/{quick_runs} runs finished" in page
    early = pages.client.post(
        f"/demo/{batch}/reports", data={"csrf_token": pages.csrf()}, headers={"Accept": "application/json"}
    )
    assert early.status_code == 200 and early.json()["reports"] == []  # nothing written while runs go on

    _finish_all(pages, batch)
    written = pages.client.post(
        f"/demo/{batch}/reports", data={"csrf_token": pages.csrf()}, headers={"Accept": "application/json"}
    )
    assert written.status_code == 200, written.text
    titles = [r["title"] for r in written.json()["reports"]]
    assert len(titles) == 4 and all(t.startswith(f"Demo {batch}: ") for t in titles)
    again = pages.client.post(
        f"/demo/{batch}/reports", data={"csrf_token": pages.csrf()}, headers={"Accept": "application/json"}
    )
    assert [r["title"] for r in again.json()["reports"]] == titles  # idempotent
    with pages.db.transaction() as session:
        reports = list(session.scalars(select(Report).order_by(Report.id)))
    assert len(reports) == 4
    claim_a_notes = reports[0].notes
    assert "**Verdict:** SVMax raises s\u0304 and \u03c1 over the baseline at every batch" in claim_a_notes
    assert "0.800" in claim_a_notes and "0.200" in claim_a_notes  # the measured rho of each arm
    assert reports[0].snapshot is not None and reports[0].snapshot["runs"]  # pinned with its charts
    assert "layer=fc2" in reports[3].query and "| fc1 |" in reports[3].notes
    # the per-layer report shows fc2's rho (0.35, not the embedding's) in curves, sweep plot and table
    layer_page = pages.client.get(f"/reports/{reports[3].id}").text
    shown = reports[3].snapshot["page_data"]
    assert shown["stat_layer"] == shown["metric_layer"] == "fc2"
    assert {y for points in shown["curves"].values() for _, y in points} == {0.35}
    assert {m for line in shown["sweep"] for m in line["mean"]} == {0.35}
    assert {g["final"]["mean"] for g in shown["groups"]} == {0.35}
    assert "Groups: final sv_position (fc2)" in layer_page and "Sweep: final sv_position (fc2)" in layer_page
    report_page = pages.client.get(f"/reports/{reports[1].id}").text
    assert "recall@1" in report_page and "Verdict" in report_page
    page = pages.client.get(f"/runs?demo={batch}").text
    assert f"{quick_runs}/{quick_runs} runs finished" in page and f"/reports/{reports[0].id}" in page


def test_reproduce_without_csrf_or_with_bad_batch_is_refused(pages: Pages) -> None:
    assert pages.client.post("/demo", data={}, follow_redirects=False).status_code == 403
    assert pages.client.get("/demo/not-a-batch").status_code == 404
    assert pages.client.get("/demo/0123abcd").status_code == 404
    assert not pages.recorder.enqueued


def test_findings_cover_every_experiment() -> None:
    assert set(FINDINGS) == {item.key for item in experiments()}
    assert claim_b([]).holds is None and claim_b([]).verdict.startswith("Not enough finished runs")
