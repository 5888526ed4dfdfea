"""Building .npz files for the dataset tests (imported as ``datasetkit``)."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from typing import Any

import numpy as np


def npz_bytes(rows: int = 40, features: int = 6, *, seed: int = 0, **arrays: Any) -> bytes:
    """A valid dataset (x float32 rows x features, y int labels 0..3), arrays overridable."""
    rng = np.random.default_rng(seed)
    values: dict[str, Any] = {
        "x": rng.normal(size=(rows, features)).astype(np.float32),
        "y": (np.arange(rows) % 4).astype(np.int64),
    } | arrays
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in values.items() if v is not None})
    return buffer.getvalue()


def pickled_npz() -> bytes:
    """An .npz whose ``y`` member is an object array: loading it would unpickle."""
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((10, 3), dtype=np.float32), y=np.array([{"a": 1}] * 10, dtype=object))
    return buffer.getvalue()


def zip_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def plain_pickle() -> bytes:
    return pickle.dumps({"x": [1, 2, 3]})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
