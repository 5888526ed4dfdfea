"""Datasets and their seeded train / validation / probe splits.

- ``digits``: scikit-learn's 8x8 handwritten digits (1797 rows, 64 features, 10 classes; ships with
  the package, nothing is downloaded). The CNN reads each row as a 1x8x8 image.
- ``gaussians``: a synthetic mixture of :data:`GAUSSIAN_CLASSES` isotropic Gaussians in
  :data:`GAUSSIAN_DIM` dimensions, :data:`GAUSSIAN_ROWS` rows; the class means are drawn from a fixed
  generator (the same data for every run), the rows from ``spec.seed``. MLP only.
- ``npz``: a file with arrays ``x`` (n, F) or images (n, H, W) / (n, C, H, W) and ``y`` (n,)
  labels (any integer or string values; mapped to 0..C-1). The spec never names the file: a queue
  worker opens the dataset named by ``dataset_id`` (``worker.datasets``: downloaded by content hash,
  or under a data root) and ``collapsewatch train`` the one given with ``--data FILE``; either hands it
  to :func:`load_splits` as ``data``.

Splits (seeded by ``spec.seed``): a permutation puts :data:`HELD_OUT_FRACTION` of the rows in the
validation set and the rest in the training set; the **probe set** (collapse statistics) is the first
``probe_size`` rows of the validation set, capped by its size (the cap is reported in ``notes``).
Features are standardised with the training rows' mean and std.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from collapsewatch.contract import JobSpec

GAUSSIAN_CLASSES = 10
GAUSSIAN_DIM = 32
GAUSSIAN_ROWS = 3000
GAUSSIAN_MEAN_SEED = 12345
HELD_OUT_FRACTION = 0.3


class DataError(ValueError):
    """Bad or missing data; the message names the field (``dataset_id``, ``--data``, ``model``, ...)."""


DataSource = str | os.PathLike[str] | BinaryIO
"""An .npz to read: a local path, or a binary file already opened (and checked) by the worker."""


@dataclass(frozen=True)
class Splits:
    """Standardised float32 features (flat rows or images) and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_probe: np.ndarray
    y_probe: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]  # per-sample shape: (F,) or (C, H, W)
    notes: list[str] = field(default_factory=list)


def read_npz(source: DataSource, label: str = "--data") -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` and ``y`` arrays of an .npz, checked (``allow_pickle=False``); raises
    :class:`DataError` starting with ``label`` (``--data``, ``dataset_id 7``: where the file came from)."""
    if isinstance(source, str | os.PathLike) and not Path(source).is_file():
        raise DataError(
            f"{label}: {str(source)!r} does not exist or is not a file; give an .npz with x and y"
        )
    try:
        loaded = np.load(source, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"{label}: not an .npz archive; save it with numpy.savez(FILE, x=x, y=y)")
        with loaded as archive:
            missing = [name for name in ("x", "y") if name not in archive.files]
            if missing:
                raise DataError(
                    f"{label}: lacks array(s) {missing}; it holds {archive.files}, "
                    "needs x (n, features) or (n, [C,] H, W) and y (n,)"
                )
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{label}: not a readable .npz without pickles ({exc})") from exc
    if x.ndim not in (2, 3, 4) or not np.issubdtype(x.dtype, np.number):
        raise DataError(
            f"{label}: x must be numeric with shape (n, F), (n, H, W) or (n, C, H, W); got {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{label}: y must have shape ({len(x)},) to match x; got {y.shape}")
    if len(x) < 8:
        raise DataError(f"{label}: needs at least 8 rows; it has {len(x)}")
    if not np.isfinite(x.astype(np.float64)).all():
        raise DataError(f"{label}: x holds NaN or infinite values")
    return x, y


def check_data(spec: JobSpec, data: DataSource | None = None) -> None:
    """Fail before training on data problems (cheap for digits/gaussians; reads the .npz)."""
    load_splits(spec, data)


def _raw(spec: JobSpec, data: DataSource | None) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]:
    """Features (n, F) or (n, ...) , labels, and the image shape when the rows are images."""
    if spec.dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.data.astype(np.float32), digits.target.astype(np.int64), (1, 8, 8)
    if spec.dataset == "gaussians":
        means = np.random.default_rng(GAUSSIAN_MEAN_SEED).normal(0.0, 1.0, (GAUSSIAN_CLASSES, GAUSSIAN_DIM))
        rng = np.random.default_rng(spec.seed)
        y = rng.integers(0, GAUSSIAN_CLASSES, GAUSSIAN_ROWS)
        x = means[y] + rng.normal(0.0, 1.0, (GAUSSIAN_ROWS, GAUSSIAN_DIM))
        return x.astype(np.float32), y.astype(np.int64), None
    if data is None:
        raise DataError(
            "dataset_id: dataset 'npz' trains on a dataset of the job's project; a worker fetches it by "
            "dataset_id, `collapsewatch train` reads a local file given with --data FILE"
        )
    label = f"dataset_id {spec.dataset_id}" if spec.dataset_id is not None else "--data"
    x, y = read_npz(data, label)
    _, labels = np.unique(y, return_inverse=True)
    image: tuple[int, ...] | None = None
    if x.ndim == 3:
        image = (1, x.shape[1], x.shape[2])
    elif x.ndim == 4:
        image = (x.shape[1], x.shape[2], x.shape[3])
    return x.reshape(len(x), -1).astype(np.float32), labels.astype(np.int64), image


def load_splits(spec: JobSpec, data: DataSource | None = None) -> Splits:
    """The seeded, standardised splits of ``spec.dataset`` (see the module docstring); ``data`` is the
    .npz of ``dataset="npz"``."""
    x, y, image = _raw(spec, data)
    if spec.model == "cnn" and image is None:
        raise DataError(
            f"model: 'cnn' needs images; dataset {spec.dataset!r} has flat rows "
            "(use model 'mlp', digits, or an .npz whose x is (n, H, W) or (n, C, H, W))"
        )
    n = len(x)
    order = np.random.default_rng(spec.seed).permutation(n)
    n_val = max(2, round(n * HELD_OUT_FRACTION))
    val_idx, train_idx = order[:n_val], order[n_val:]
    notes: list[str] = []
    n_probe = min(spec.probe_size, n_val)
    if n_probe < spec.probe_size:
        notes.append(f"probe_size {spec.probe_size} capped at {n_probe} (the validation rows available)")
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    x = (x - mean) / np.where(std > 1e-8, std, 1.0)
    shape: tuple[int, ...] = image if spec.model == "cnn" and image is not None else (x.shape[1],)
    x = x.reshape(n, *shape).astype(np.float32)
    return Splits(
        x_train=x[train_idx],
        y_train=y[train_idx],
        x_val=x[val_idx],
        y_val=y[val_idx],
        x_probe=x[val_idx[:n_probe]],
        y_probe=y[val_idx[:n_probe]],
        n_classes=int(y.max()) + 1,
        input_shape=shape,
        notes=notes,
    )
