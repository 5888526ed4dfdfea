"""Per-layer collapse: the engine models' named layers and the job spec's layer keys.

``stats_layers`` and ``reg_layers`` (flat :class:`collapsewatch.contract.JobSpec` keys) name layers as a
comma- (or ``+``-) separated list, or ``all``; empty means the embedding only (the default). The epoch
record's optional ``layers`` maps a layer name to its collapse statistics.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints, ValidationInfo

MAX_LAYERS = 64
MODEL_LAYERS: dict[str, tuple[str, ...]] = {
    "mlp": ("fc1", "fc2", "embedding"),
    "cnn": ("conv1", "conv2", "embedding"),
}
"""The named layers of each engine model, input to output (``embedding`` is the encoder's output).
Conv layers are globally average-pooled to (batch x channels) before statistics or regularizers."""
PROJECTOR_LAYER = "projector"
"""The VICReg projector's output: a named layer too when ``objective`` is ``vicreg``."""
ALL_LAYERS = "all"
LayerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}$")]
"""A key of the epoch record's ``layers`` (the metric-key pattern)."""

HELP = {
    "stats_layers": "layers whose collapse statistics each epoch records besides the embedding: "
    "comma-separated names (mlp: fc1, fc2, embedding; cnn: conv1, conv2, embedding; vicreg adds "
    "projector) or 'all'; empty = the embedding only",
    "reg_layers": "layers the regularizer applies to, each with reg_lambda (names as stats_layers, or "
    "'all'); empty = the embedding only",
    "early_stop_patience": "stop when validation recall@1 has not improved for this many epochs (0 = off)",
}


def layer_names(model: str, objective: str) -> tuple[str, ...]:
    """The layers a job of this model and objective may name in ``stats_layers`` / ``reg_layers``."""
    names = MODEL_LAYERS.get(model, ("embedding",))
    return (*names, PROJECTOR_LAYER) if objective == "vicreg" else names


def parse_layers(value: str, allowed: tuple[str, ...]) -> list[str]:
    """``"fc1,embedding"`` (or ``"fc1+embedding"``: the form's sweep inputs split on commas) -> the
    names in network order; ``"all"`` -> every allowed name; ``""`` -> none. ``ValueError`` naming
    the unknown names and the allowed ones."""
    parts = [p.strip() for p in re.split(r"[,+\s]+", value or "") if p.strip()]
    if ALL_LAYERS in parts:
        if len(parts) > 1:
            raise ValueError(f"'all' stands alone; got {value!r}")
        return list(allowed)
    unknown = [p for p in parts if p not in allowed]
    if unknown:
        raise ValueError(
            f"unknown layer(s) {', '.join(map(repr, unknown))}; this model's layers are "
            f"{', '.join(allowed)} (or 'all'), comma- or '+'-separated"
        )
    return [name for name in allowed if name in parts]


def check_layers(value: str, info: ValidationInfo) -> str:
    """JobSpec's validator of ``stats_layers`` / ``reg_layers``: known names for the spec's model and
    objective, in a canonical form (network order, or 'all') so equal choices compare and group equal."""
    allowed = layer_names(info.data.get("model", "mlp"), info.data.get("objective", "cross_entropy"))
    chosen = parse_layers(value, allowed)
    return ALL_LAYERS if value.strip() == ALL_LAYERS else ",".join(chosen)


LayerList = Annotated[str, Field(max_length=500), AfterValidator(check_layers)]
"""The type of ``stats_layers`` and ``reg_layers``: validated against the spec's model and objective."""


def spec_layers(spec: Any) -> tuple[list[str], list[str]]:
    """(stats layers, regularized layers) of a JobSpec as names in network order; the regularized
    list is ``["embedding"]`` when ``reg_layers`` is empty (the default behaviour)."""
    allowed = layer_names(spec.model, spec.objective)
    return parse_layers(spec.stats_layers, allowed), parse_layers(spec.reg_layers, allowed) or ["embedding"]
