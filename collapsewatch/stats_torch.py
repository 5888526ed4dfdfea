"""The torch backend of ``collapsewatch.stats_core`` (imported only when a tensor is passed in).

Tensors are computed on the CPU in float64 with torch's own LAPACK and thread pool, so a training
process does not start a second BLAS thread pool (numpy's) next to torch's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class TorchBackend:
    name = "torch"

    def eigvalsh(self, gram: Any) -> np.ndarray:
        return torch.linalg.eigvalsh(gram).numpy()

    def svdvals(self, matrix: Any) -> np.ndarray:
        return torch.linalg.svdvals(matrix).numpy()

    def numpy(self, array: Any) -> np.ndarray:
        return array.numpy().astype(np.float64, copy=False)

    def offdiag_sq_sum(self, square: Any) -> float:
        sq = square * square
        sq.fill_diagonal_(0.0)
        return float(sq.sum())


TORCH = TorchBackend()


def as_float64(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` detached, on the CPU, in float64 (no copy when it already is)."""
    return tensor.detach().to("cpu", torch.float64)
