"""Device selection. CUDA is touched only when these functions are called (inside ``train``)."""

from __future__ import annotations

import platform
from typing import Any

import torch


def resolve_device(name: str | None) -> torch.device:
    """``"auto"``/None -> cuda when available, else cpu; ``"cuda"``/``"cuda:N"`` must exist."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return device


def device_info(device: torch.device | str) -> dict[str, Any]:
    """Where a run trains: device, its name and the torch/CUDA versions (``contract.WorkerInfo``)."""
    device = torch.device(device)
    name = platform.processor() or platform.machine() or "cpu"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
