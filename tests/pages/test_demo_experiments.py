"""The demo's experiments (app/demo.py): valid sweeps of the seed's two digits experiments."""

from __future__ import annotations

from app.cli.demo import compare_url, experiments
from collapsewatch.contract import JobSubmit


def test_demo_experiments_are_valid_grids_of_baseline_vs_svmax() -> None:
    by_batch, by_lr = experiments(epochs=3, seeds=2)
    batch_specs = JobSubmit.model_validate(by_batch.submit).expand()
    lr_specs = JobSubmit.model_validate(by_lr.submit).expand()
    assert len(batch_specs) == 12 and len(lr_specs) == 16
    assert {s.regularizer for s in batch_specs} == {"none", "svmax"} == {s.regularizer for s in lr_specs}
    assert {s.batch_size for s in batch_specs} == {16, 64, 256}
    assert all(s.dataset == "digits" and s.objective == "contrastive" and s.epochs == 3 for s in lr_specs)
    assert by_batch.view["x"] == "batch_size" and by_lr.view["metric"] == "best_recall_at_1"


def test_demo_compare_url_encodes_the_view() -> None:
    url = compare_url("http://h:1/", "abc", {"group": "regularizer,lr", "x": "lr"})
    assert url == "http://h:1/compare?sweep=abc&group=regularizer%2Clr&x=lr"
