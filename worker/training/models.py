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

Named layers (``collapsewatch.contract.MODEL_LAYERS``, for per-layer statistics and regularizers):
each is a ReLU's output, captured with a forward hook. MLP: ``fc1`` (256), ``fc2`` (256),
``embedding`` (d); CNN: ``conv1`` (32 channels), ``conv2`` (64 channels), ``embedding`` (d), the
conv feature maps averaged over space (global average pooling, b x C); VICReg adds ``projector``
(the projector's output, p wide).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from collapsewatch.contract import JobSpec
from collapsewatch.layers import PROJECTOR_LAYER

HIDDEN = 256
PROJECTOR_MAX = 2048
# Index of each named layer's module (a ReLU) in the encoder Sequential.
ENCODER_LAYERS: dict[str, dict[str, int]] = {
    "mlp": {"fc1": 1, "fc2": 3, "embedding": 5},
    "cnn": {"conv1": 1, "conv2": 3, "embedding": 7},
}


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

    def __init__(
        self,
        encoder: nn.Sequential,
        d: int,
        n_classes: int,
        *,
        with_head: bool,
        with_projector: bool,
        layers: dict[str, int] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.head: nn.Module | None = nn.Linear(d, n_classes) if with_head else None
        self.projector: nn.Module | None = projector(d) if with_projector else None
        self.layer_index = dict(layers or {"embedding": len(encoder) - 1})

    def named_layers(self) -> dict[str, nn.Module]:
        """Layer name -> the module whose output is that layer (contract.layer_names order)."""
        found: dict[str, nn.Module] = {name: self.encoder[i] for name, i in self.layer_index.items()}
        if self.projector is not None:
            found[PROJECTOR_LAYER] = self.projector
        return found

    @contextmanager
    def capture(self, names: Sequence[str]) -> Iterator[dict[str, list[Tensor]]]:
        """Record the outputs of the named layers during the forward passes inside the block:
        ``{name: [one (b x width) tensor per forward]}``, conv maps pooled over space, gradients kept."""
        modules = self.named_layers()
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise ValueError(f"layers {unknown} do not exist; this network has {list(modules)}")
        captured: dict[str, list[Tensor]] = {name: [] for name in names}
        handles = []
        for name in names:

            def hook(_module: nn.Module, _inputs: Any, output: Tensor, name: str = name) -> None:
                captured[name].append(layer_features(output))

            handles.append(modules[name].register_forward_hook(hook))
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def embed(self, x: Tensor) -> Tensor:
        out: Tensor = self.encoder(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)


def layer_features(output: Tensor) -> Tensor:
    """A layer's output as a (batch x features) matrix: conv maps (b, C, H, W) are averaged over space."""
    if output.dim() == 4:
        return output.mean(dim=(2, 3))
    return output.flatten(1)


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
        layers=ENCODER_LAYERS[spec.model],
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embed_all(model: Network, x: Tensor, chunk: int = 4096) -> Tensor:
    """Embeddings of many rows in eval mode without gradients (chunked), in the model's dtype."""
    model.eval()
    with torch.no_grad():
        parts = [model.embed(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return torch.cat(parts) if parts else x.new_zeros((0,))


def embed_layers(
    model: Network, x: Tensor, names: Sequence[str], chunk: int = 4096
) -> tuple[Tensor, dict[str, Tensor]]:
    """The embeddings of ``x`` and the outputs of the named layers (eval mode, no gradients, chunked);
    ``projector`` runs the projector on the embeddings."""
    model.eval()
    hooked = [n for n in names if n not in ("embedding", PROJECTOR_LAYER)]
    with torch.no_grad(), model.capture(hooked) as captured:
        embedding = embed_all(model, x, chunk)
        layers = {name: torch.cat(parts) for name, parts in captured.items()}
        if PROJECTOR_LAYER in names:
            if model.projector is None:
                raise ValueError("layer 'projector' exists only for objective 'vicreg'")
            layers[PROJECTOR_LAYER] = torch.cat(
                [model.projector(embedding[i : i + chunk]) for i in range(0, len(embedding), chunk)]
            )
    if "embedding" in names:
        layers["embedding"] = embedding
    return embedding, {name: layers[name] for name in names}
