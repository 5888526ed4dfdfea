"""Evaluation metrics on embeddings whose answers are known."""

from __future__ import annotations

import torch

from worker.training.evaluate import knn_accuracy, recall_at_1, ridge_probe_accuracy


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
