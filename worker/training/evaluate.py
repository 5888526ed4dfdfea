"""Per-epoch evaluation: validation accuracy, kNN accuracy, recall@1 and the collapse statistics.

- ``val_acc``: the classifier head's accuracy for cross-entropy; otherwise a linear probe, closed-form
  ridge regression (alpha :data:`RIDGE_ALPHA`) from standardised train embeddings (plus a bias) to
  one-hot labels, in float64 (primal d x d or dual n x n system, whichever is smaller).
- ``knn_acc``: k = :data:`KNN_K` nearest train embeddings by cosine similarity vote for each
  validation row (ties go to the smaller label).
- ``recall_at_1``: the fraction of validation rows whose nearest other validation row (cosine, i.e.
  Euclidean on L2-normalised embeddings) has the same label.
- ``stats``: :func:`collapsewatch.stats.collapse_stats` of the probe embeddings (float64 inside it).
  The probe set is the first rows of the validation set (``worker.training.data``): when the probe
  rows equal the validation set's first rows and no layer is named, their embeddings are taken from
  the validation pass instead of a second forward pass.
- ``layers``: the same statistics for each layer of ``stats_layers`` on the same probe rows, from
  forward hooks during the probe pass (conv maps pooled over space); a layer whose outputs are not
  finite is left out.
Any metric over non-finite embeddings is None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from collapsewatch.stats import collapse_stats
from worker.training.models import Network, embed_all, embed_layers

KNN_K = 5
RIDGE_ALPHA = 1e-2
_CHUNK = 2048


@dataclass(frozen=True)
class Evaluation:
    val_acc: float | None
    knn_acc: float | None
    recall_at_1: float | None
    stats: dict[str, Any] | None
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def ridge_probe_accuracy(
    e_train: Tensor, y_train: Tensor, e_val: Tensor, y_val: Tensor, n_classes: int
) -> float:
    """Accuracy of a closed-form ridge classifier fitted on the train embeddings."""
    a, b = e_train.double(), e_val.double()
    mean, std = a.mean(0), a.std(0).clamp_min(1e-8)
    a, b = (a - mean) / std, (b - mean) / std
    a = torch.cat([a, a.new_ones(len(a), 1)], dim=1)
    b = torch.cat([b, b.new_ones(len(b), 1)], dim=1)
    targets = F.one_hot(y_train, n_classes).double()
    n, p = a.shape
    if p <= n:
        w = torch.linalg.solve(
            a.T @ a + RIDGE_ALPHA * n * torch.eye(p, dtype=a.dtype, device=a.device), a.T @ targets
        )
    else:
        gram = a @ a.T + RIDGE_ALPHA * n * torch.eye(n, dtype=a.dtype, device=a.device)
        w = a.T @ torch.linalg.solve(gram, targets)
    return float(((b @ w).argmax(1) == y_val).double().mean())


def knn_accuracy(
    e_train: Tensor, y_train: Tensor, e_val: Tensor, y_val: Tensor, n_classes: int, k: int = KNN_K
) -> float:
    a, b = F.normalize(e_train.float(), dim=1), F.normalize(e_val.float(), dim=1)
    k = min(k, len(a))
    correct = 0
    for i in range(0, len(b), _CHUNK):
        idx = (b[i : i + _CHUNK] @ a.T).topk(k, dim=1).indices
        votes = F.one_hot(y_train[idx], n_classes).sum(1)
        correct += int((votes.argmax(1) == y_val[i : i + _CHUNK]).sum())
    return correct / len(b)


def recall_at_1(e: Tensor, y: Tensor) -> float:
    z = F.normalize(e.float(), dim=1)
    hits = 0
    for i in range(0, len(z), _CHUNK):
        sim = z[i : i + _CHUNK] @ z.T
        rows = torch.arange(i, min(i + _CHUNK, len(z)), device=z.device)
        sim[rows - i, rows] = float("-inf")
        hits += int((y[sim.argmax(1)] == y[i : i + _CHUNK]).sum())
    return hits / len(z)


def _probe_stats(e_probe: Tensor, dead_threshold: float) -> dict[str, Any] | None:
    if not _finite(e_probe):
        return None
    try:
        return collapse_stats(e_probe, dead_threshold=dead_threshold)
    except ValueError:  # e.g. magnitudes whose squares overflow float64: a diverging run
        return None


def probe_embeddings(model: Network, x_probe: Tensor, x_val: Tensor, e_val: Tensor) -> Tensor:
    """The probe rows' embeddings: a slice of ``e_val`` when the probe rows are the validation set's
    first rows (the engine's split), else a forward pass of their own."""
    n = len(x_probe)
    if n <= len(x_val) and x_probe.shape[1:] == x_val.shape[1:] and torch.equal(x_probe, x_val[:n]):
        return e_val[:n]
    return embed_all(model, x_probe)


def evaluate(
    model: Network,
    data: dict[str, Tensor],
    n_classes: int,
    *,
    dead_threshold: float,
    with_stats: bool = True,
    stats_layers: Sequence[str] = (),
) -> Evaluation:
    """Evaluate ``model`` on the tensors ``data`` (x_train, y_train, x_val, y_val, x_probe);
    ``with_stats=False`` skips the probe set and its collapse statistics (``stats`` is None, no
    ``layers``)."""
    e_train = embed_all(model, data["x_train"])
    e_val = embed_all(model, data["x_val"])
    stats = None
    layers: dict[str, dict[str, Any]] = {}
    if with_stats:
        if stats_layers:
            e_probe, outputs = embed_layers(model, data["x_probe"], stats_layers)
        else:
            e_probe, outputs = probe_embeddings(model, data["x_probe"], data["x_val"], e_val), {}
        stats = _probe_stats(e_probe, dead_threshold)
        for name, output in outputs.items():
            found = stats if name == "embedding" else _probe_stats(output, dead_threshold)
            if found is not None:
                layers[name] = found
    y_train, y_val = data["y_train"], data["y_val"]
    if not (_finite(e_train) and _finite(e_val)):
        return Evaluation(None, None, None, stats, layers)
    with torch.no_grad():
        if model.head is not None:
            val_acc: float | None = float((model.head(e_val).argmax(1) == y_val).double().mean())
        else:
            try:
                val_acc = ridge_probe_accuracy(e_train, y_train, e_val, y_val, n_classes)
            except RuntimeError:  # torch.linalg.LinAlgError: a numerically singular system
                val_acc = None
    knn = knn_accuracy(e_train, y_train, e_val, y_val, n_classes)
    return Evaluation(val_acc, knn, recall_at_1(e_val, y_val), stats, layers)
