"""The torch backend of ``collapsewatch.stats_core`` (``collapse_stats(..., backend="torch")``):
float64 on the CPU with torch's own LAPACK and thread pool. Imported only when asked for. By default
``collapse_stats`` only reads a tensor (``.detach().cpu().numpy()``) and computes with numpy on one
BLAS thread, which measured 1.4x faster than torch's MKL on the 2-core AMD EPYC machine."""

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

    def sq_sum(self, matrix: Any, axis: int) -> Any:
        return torch.linalg.vector_norm(matrix, dim=axis).square_()

    def columns(self, matrix: Any, keep: np.ndarray) -> Any:
        return matrix[:, torch.from_numpy(keep)]

    def rows_divided(self, matrix: Any, scale: Any) -> Any:
        return matrix / scale[:, None]

    def row_gram(self, matrix: Any) -> Any:
        return matrix @ matrix.T

    def copy(self, array: Any, name: str, order: str = "C") -> Any:
        return array.clone()


TORCH = TorchBackend()


def from_numpy(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)


def as_float64(tensor: torch.Tensor) -> torch.Tensor:
    """A float64 CPU copy of ``tensor`` (always a copy: the statistics centre it in place)."""
    return tensor.detach().to("cpu", torch.float64, copy=True)
