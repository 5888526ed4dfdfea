"""Metric-learning losses against hand-worked values, and seeded augmentations."""

from __future__ import annotations

import math

import pytest
import torch

from worker.training.config import build_spec
from worker.training.models import build_model
from worker.training.objectives import (
    augment,
    contrastive_loss,
    objective_loss,
    regularizer_loss,
    triplet_loss,
)

SQRT2 = math.sqrt(2.0)


def _points() -> tuple[torch.Tensor, torch.Tensor]:
    # Unit vectors: a and b (label 0) coincide, c (label 1) is orthogonal to both (distance sqrt 2).
    e = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    return e, torch.tensor([0, 0, 1])


def test_contrastive_loss_matches_hand_value() -> None:
    e, y = _points()
    # positives: one pair at distance 0; negatives: two pairs at sqrt 2, margin 2 -> (2 - sqrt 2)^2.
    expected = 0.5 * (0.0 + (2.0 - SQRT2) ** 2)
    assert contrastive_loss(e, y, margin=2.0).item() == pytest.approx(expected, abs=1e-5)
    assert contrastive_loss(e, y, margin=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_triplet_loss_uses_hardest_pairs() -> None:
    e, y = _points()
    # anchors a and b: hardest positive 0, hardest negative sqrt 2; anchor c has no positive.
    assert triplet_loss(e, y, margin=2.0).item() == pytest.approx(2.0 - SQRT2, abs=1e-5)
    # a=(1,0) and b=(0,1) share a label (distance sqrt 2); the negative c points almost along a.
    e2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    c = e2[2] / e2[2].norm()
    per_anchor = [max(0.0, SQRT2 - float(torch.dist(e2[i], c)) + 0.5) for i in (0, 1)]
    loss = triplet_loss(e2, torch.tensor([0, 0, 1]), margin=0.5).item()
    assert loss == pytest.approx(sum(per_anchor) / 2, abs=1e-5)


def test_losses_are_zero_without_pairs() -> None:
    e = torch.randn(4, 3, requires_grad=True)
    y = torch.arange(4)
    assert triplet_loss(e, y, 0.5).item() == 0.0
    contrastive_loss(e, torch.zeros(4, dtype=torch.long), 0.5).backward()
    assert e.grad is not None


def test_augment_replays_with_same_generator_state() -> None:
    x = torch.randn(6, 10)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    images = torch.randn(5, 1, 8, 8)
    assert augment(images, torch.Generator().manual_seed(1)).shape == images.shape


@pytest.mark.parametrize("regularizer", ["svmax", "vicreg_variance"])
def test_objective_loss_vicreg_regularizes_both_views(regularizer: str) -> None:
    spec = build_spec({"objective": "vicreg", "regularizer": regularizer, "embedding_dim": 8})
    model = build_model(spec, (64,), 10)
    loss, embedding, parts = objective_loss(
        spec, model, torch.randn(16, 64), torch.zeros(16, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    assert embedding.shape == (32, 8)
    assert set(parts) == {"vicreg_invariance", "vicreg_variance", "vicreg_covariance"}
    reg = regularizer_loss(spec, embedding)
    assert reg is not None and torch.isfinite(loss + reg)
