"""The networks: an encoder whose output (width ``d = embedding_dim``, after a ReLU) is the
embedding, i.e. the penultimate layer of the classifier (like a ResNet's pooled features), plus a
classifier head (cross-entropy) and a VICReg projector. The ReLU lets dimensions die (std 0 on every
input), the dimensional collapse that ``dead_dims`` counts.

- MLP encoder: F -> 256 -> ReLU -> 256 -> ReLU -> d -> ReLU.
- CNN encoder (images C x H x W): conv3x3(C->32) -> ReLU -> conv3x3(32->64) -> ReLU ->
  adaptive average pool to 4x4 -> flatten (1024) -> d -> ReLU.
- Head: Linear(d -> n_classes) on the embedding.
- Projector (VICReg, as the official code's Linear-BN-ReLU-Linear): d -> p -> BN -> ReLU -> p, with
  p = min(4d, 2048).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from collapsewatch.contract import JobSpec

HIDDEN = 256
PROJECTOR_MAX = 2048


def mlp_encoder(n_features: int, d: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_features, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, d),
        nn.ReLU(),
    )


def cnn_encoder(channels: int, d: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(64 * 16, d),
        nn.ReLU(),
    )


def projector(d: int) -> nn.Sequential:
    width = min(4 * d, PROJECTOR_MAX)
    return nn.Sequential(
        nn.Linear(d, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, width, bias=False),
    )


class Network(nn.Module):
    """``embed(x)`` is the embedding E (b x d); ``head`` and ``projector`` exist only when used."""

    def __init__(self, encoder: nn.Module, d: int, n_classes: int, *, with_head: bool, with_projector: bool):
        super().__init__()
        self.encoder = encoder
        self.head: nn.Module | None = nn.Linear(d, n_classes) if with_head else None
        self.projector: nn.Module | None = projector(d) if with_projector else None

    def embed(self, x: Tensor) -> Tensor:
        out: Tensor = self.encoder(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)


def build_model(spec: JobSpec, input_shape: tuple[int, ...], n_classes: int) -> Network:
    """The network for ``spec`` (initialised from torch's global RNG, seeded by the caller)."""
    d = spec.embedding_dim
    if spec.model == "cnn":
        encoder = cnn_encoder(input_shape[0], d)
    else:
        encoder = mlp_encoder(math.prod(input_shape), d)
    return Network(
        encoder,
        d,
        n_classes,
        with_head=spec.objective == "cross_entropy",
        with_projector=spec.objective == "vicreg",
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embed_all(model: Network, x: Tensor, chunk: int = 4096) -> Tensor:
    """Embeddings of many rows in eval mode without gradients (chunked), in the model's dtype."""
    model.eval()
    with torch.no_grad():
        parts = [model.embed(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return torch.cat(parts) if parts else x.new_zeros((0,))
