"""Training objectives and the embedding regularizer, each returning a scalar loss plus named parts.

- ``cross_entropy``: the classifier head on the embedding.
- ``contrastive`` (Hadsell et al. 2006, as in the SVMax paper): on L2-normalised embeddings, over all
  in-batch pairs i < j; positives pull ``dist^2``, negatives push ``relu(margin - dist)^2``; the
  positive and negative means are averaged with equal weight (a batch without positives or negatives
  uses the other term alone).
- ``triplet``: batch-hard (Hermans et al. 2017) on L2-normalised embeddings: every anchor with a
  positive and a negative in the batch takes its farthest positive and nearest negative,
  ``relu(d_ap - d_an + margin)``, averaged over those anchors.
- ``vicreg``: two augmented views through encoder and projector, ``collapsewatch.regularizers.vicreg_loss``
  with ``spec.vicreg_{sim,std,cov}_coeff`` and ``spec.vicreg_gamma``. Views: flat rows get Gaussian
  noise (std :data:`NOISE_STD`, in standardised units) and random feature masking (each feature zeroed
  with probability :data:`MASK_PROB`); images get a random shift of up to :data:`MAX_SHIFT` pixels
  (zero padded) plus the same noise.
- Regularizer on the embedding E (for ``vicreg``: both views' embeddings stacked), added to any
  objective: ``svmax`` ->
  ``svmax_loss(E, spec.reg_lambda, spec.svmax_bounded)``; ``vicreg_variance`` ->
  ``spec.reg_lambda * vicreg_variance(E, spec.vicreg_gamma)``.
- Per-layer regularization (``spec.reg_layers``): the same term, with the same ``reg_lambda``, on each
  listed layer's output (captured by forward hooks, conv maps pooled over space; for ``vicreg`` both
  views stacked), summed; empty = the embedding only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from collapsewatch.contract import JobSpec
from collapsewatch.regularizers import svmax_loss, vicreg_loss, vicreg_variance
from worker.training.models import Network

NOISE_STD = 0.3
MASK_PROB = 0.2
MAX_SHIFT = 1
VICREG_EPS = 1e-4
_DIST_EPS = 1e-12


def pairwise_distances(z: Tensor) -> Tensor:
    """Euclidean distances between rows (safe gradient at 0)."""
    sq = (z.unsqueeze(1) - z.unsqueeze(0)).pow(2).sum(-1)
    return sq.clamp_min(_DIST_EPS).sqrt()


def contrastive_loss(e: Tensor, y: Tensor, margin: float) -> Tensor:
    z = F.normalize(e, dim=1)
    dist = pairwise_distances(z)
    upper = torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)
    same = y.unsqueeze(0) == y.unsqueeze(1)
    pos, neg = dist[upper & same], dist[upper & ~same]
    terms = []
    if pos.numel():
        terms.append(pos.pow(2).mean())
    if neg.numel():
        terms.append(F.relu(margin - neg).pow(2).mean())
    return torch.stack(terms).mean() if terms else e.sum() * 0.0


def triplet_loss(e: Tensor, y: Tensor, margin: float) -> Tensor:
    z = F.normalize(e, dim=1)
    dist = pairwise_distances(z)
    same = y.unsqueeze(0) == y.unsqueeze(1)
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not valid.any():
        return e.sum() * 0.0
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """One random view (randomness drawn on the CPU from ``generator``, so runs replay exactly)."""
    noise = torch.randn(x.shape, generator=generator).to(x.device) * NOISE_STD
    if x.dim() == 2:
        keep = (torch.rand(x.shape, generator=generator) >= MASK_PROB).to(x.device)
        return (x + noise) * keep
    b, _, h, w = x.shape
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (b, 2), generator=generator)
    padded = F.pad(x, (MAX_SHIFT,) * 4)
    views = [
        padded[i, :, MAX_SHIFT + dy : MAX_SHIFT + dy + h, MAX_SHIFT + dx : MAX_SHIFT + dx + w]
        for i, (dy, dx) in enumerate(shifts.tolist())
    ]
    return torch.stack(views) + noise


def objective_loss(
    spec: JobSpec, model: Network, x: Tensor, y: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(objective loss, the embedding E of this batch to regularize, named parts for the record)."""
    if spec.objective == "vicreg":
        assert model.projector is not None
        e_a = model.embed(augment(x, generator))
        e_b = model.embed(augment(x, generator))
        result = vicreg_loss(
            model.projector(e_a),
            model.projector(e_b),
            sim_coeff=spec.vicreg_sim_coeff,
            std_coeff=spec.vicreg_std_coeff,
            cov_coeff=spec.vicreg_cov_coeff,
            gamma=spec.vicreg_gamma,
            eps=VICREG_EPS,
        )
        parts = {
            "vicreg_invariance": result.invariance,
            "vicreg_variance": result.variance,
            "vicreg_covariance": result.covariance,
        }
        return result.total, torch.cat([e_a, e_b]), parts
    e = model.embed(x)
    if spec.objective == "cross_entropy":
        assert model.head is not None
        return F.cross_entropy(model.head(e), y), e, {}
    if spec.objective == "contrastive":
        return contrastive_loss(e, y, spec.margin), e, {}
    return triplet_loss(e, y, spec.margin), e, {}


def layers_regularizer(spec: JobSpec, outputs: dict[str, Tensor]) -> tuple[Tensor | None, dict[str, Tensor]]:
    """The regularizer summed over the layers in ``outputs`` (name -> b x width), and each layer's term."""
    terms: dict[str, Tensor] = {}
    for name, e in outputs.items():
        term = regularizer_loss(spec, e)
        if term is not None:
            terms[name] = term
    if not terms:
        return None, {}
    return torch.stack(list(terms.values())).sum(), terms


def regularizer_loss(spec: JobSpec, e: Tensor) -> Tensor | None:
    """The regularizer's (already weighted) term on the embedding, or None for ``none``."""
    if spec.regularizer == "svmax":
        return svmax_loss(e, lam=spec.reg_lambda, bounded=spec.svmax_bounded)
    if spec.regularizer == "vicreg_variance":
        return spec.reg_lambda * vicreg_variance(e, gamma=spec.vicreg_gamma, eps=VICREG_EPS)
    return None
