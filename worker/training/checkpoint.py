"""Checkpoints as bytes: model, optimizer, epoch and every RNG state the run draws from.

Only tensors and primitives are stored, so ``torch.load(..., weights_only=True)`` reads them (no
pickled objects: checkpoints travel over the network).
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import torch

FORMAT_VERSION = 1


class CheckpointIO(Protocol):
    """Where ``train`` puts checkpoints (the queue worker uploads them; the CLI writes a file)."""

    def save(self, epoch: int, data: bytes) -> None: ...


@dataclass
class FileCheckpoint:
    """Writes each checkpoint atomically to ``path`` (the newest one wins)."""

    path: Path

    def save(self, epoch: int, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)


@dataclass
class MemoryCheckpoint:
    """Keeps every checkpoint in memory by epoch (tests, and callers that upload later)."""

    saved: dict[int, bytes]

    def __init__(self) -> None:
        self.saved = {}

    def save(self, epoch: int, data: bytes) -> None:
        self.saved[epoch] = data


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "generator": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    generator.set_state(state["generator"])


def dump(
    *,
    epoch: int,
    spec: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    target: BinaryIO | str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """Serialise the state after ``epoch``; returns the bytes (and writes them to ``target`` if given).
    ``extra``: more loop state (primitives only), e.g. the early-stopping counters."""
    state = {
        "format": FORMAT_VERSION,
        "epoch": epoch,
        "spec": spec,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(generator),
        "extra": extra or {},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    if isinstance(target, str | Path):
        Path(target).write_bytes(data)
    elif target is not None:
        target.write(data)
    return data


def load(source: bytes | BinaryIO | str | Path) -> dict[str, Any]:
    """The stored state, read with ``weights_only=True``."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    state: dict[str, Any] = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ValueError(f"resume: not a collapsewatch checkpoint (format {FORMAT_VERSION} expected)")
    return state
