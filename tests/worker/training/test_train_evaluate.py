"""Evaluation metrics on embeddings whose answers are known."""

from __future__ import annotations

import pytest
import torch

from collapsewatch.contract import JobSpec
from collapsewatch.stats import collapse_stats
from worker.training.evaluate import (
    evaluate,
    knn_accuracy,
    probe_embeddings,
    recall_at_1,
    ridge_probe_accuracy,
)
from worker.training.models import Network, build_model, embed_all


def _clusters(seed: int, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.eye(3, 8) * 10
    return centres[y] + torch.randn(n, 8, generator=gen) * 0.1, y


def test_metrics_are_perfect_on_separated_clusters() -> None:
    (e_train, y_train), (e_val, y_val) = _clusters(0), _clusters(1)
    assert ridge_probe_accuracy(e_train, y_train, e_val, y_val, 3) == 1.0
    assert knn_accuracy(e_train, y_train, e_val, y_val, 3) == 1.0
    assert recall_at_1(e_val, y_val) == 1.0


def test_metrics_drop_to_chance_when_labels_ignore_embedding() -> None:
    (e_train, _), (e_val, _) = _clusters(0, 300), _clusters(1, 300)
    # labels that cycle within each cluster carry no information about the cluster
    y_train = (torch.arange(300) // 3) % 3
    y_val = (torch.arange(300) // 3) % 3
    assert knn_accuracy(e_train, y_train, e_val, y_val, 3) < 0.6
    assert recall_at_1(e_val, y_val) < 0.6
    assert ridge_probe_accuracy(e_train, y_train, e_val, y_val, 3) < 0.6


def test_ridge_probe_uses_dual_form_when_dims_exceed_rows() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(20) % 2
    e = torch.randn(20, 100, generator=gen) + y[:, None] * 3.0
    assert ridge_probe_accuracy(e, y, e, y, 2) == 1.0


def test_recall_at_1_excludes_the_row_itself() -> None:
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert recall_at_1(e, torch.tensor([0, 1])) == 0.0


def _network_and_data(seed: int = 0) -> tuple[Network, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    spec = JobSpec(embedding_dim=16)
    model = build_model(spec, (8,), 3)
    gen = torch.Generator().manual_seed(seed)
    x_val = torch.randn(40, 8, generator=gen)
    data = {
        "x_train": torch.randn(60, 8, generator=gen),
        "y_train": torch.arange(60) % 3,
        "x_val": x_val,
        "y_val": torch.arange(40) % 3,
        "x_probe": x_val[:25].clone(),  # the engine's probe: the first validation rows
    }
    return model, data


def test_probe_embeddings_reuse_the_validation_pass_when_probe_rows_are_its_first_rows() -> None:
    model, data = _network_and_data()
    e_val = embed_all(model, data["x_val"])
    probe = probe_embeddings(model, data["x_probe"], data["x_val"], e_val)
    assert probe.data_ptr() == e_val.data_ptr() and probe.shape == (25, 16)  # a view: no second pass
    torch.testing.assert_close(probe, embed_all(model, data["x_probe"]), rtol=1e-5, atol=1e-6)


def test_probe_embeddings_run_their_own_pass_when_probe_rows_differ() -> None:
    model, data = _network_and_data()
    e_val = embed_all(model, data["x_val"])
    for other in (data["x_val"][5:30].clone(), torch.randn(50, 8)):
        probe = probe_embeddings(model, other, data["x_val"], e_val)
        assert probe.data_ptr() != e_val.data_ptr()
        torch.testing.assert_close(probe, embed_all(model, other))


def test_evaluate_computes_probe_stats_unless_told_not_to() -> None:
    model, data = _network_and_data()
    full = evaluate(model, data, 3, dead_threshold=1e-3)
    bare = evaluate(model, data, 3, dead_threshold=1e-3, with_stats=False)
    assert bare.stats is None and full.stats is not None
    assert (bare.val_acc, bare.knn_acc, bare.recall_at_1) == (full.val_acc, full.knn_acc, full.recall_at_1)
    want = collapse_stats(embed_all(model, data["x_probe"]))
    assert full.stats["mean_sv"] == pytest.approx(want["mean_sv"], rel=1e-5)
    assert full.stats["dead_dims"] == want["dead_dims"]
    assert len(full.stats["dim_std"]) == 16
