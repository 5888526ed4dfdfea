"""Checking an upload before it is accepted (app/datasets/validate.py): numpy, allow_pickle=False."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasetkit import npz_bytes, pickled_npz, plain_pickle, zip_with

from app.datasets.validate import InvalidDataset, inspect_npz

LIMIT = 10 * 1024 * 1024


def _inspect(tmp_path: Path, data: bytes, limit: int = LIMIT) -> dict[str, object]:
    path = tmp_path / "upload.npz"
    path.write_bytes(data)
    return inspect_npz(path, max_array_bytes=limit)


def test_inspect_npz_accepts_float_rows_and_int_labels_and_summarises(tmp_path: Path) -> None:
    summary = _inspect(tmp_path, npz_bytes(rows=40, features=6))
    assert summary == {"rows": 40, "x_shape": [6], "x_dtype": "float32", "classes": 4}


def test_inspect_npz_accepts_images_for_the_cnn(tmp_path: Path) -> None:
    images = np.zeros((12, 3, 5, 5), dtype=np.float64)
    assert _inspect(tmp_path, npz_bytes(rows=12, x=images))["x_shape"] == [3, 5, 5]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (b"x,y\n1,2\n", "file", "not an .npz archive"),
        (plain_pickle(), "file", "not an .npz archive"),
        (np.zeros(3).tobytes(), "file", "not an .npz archive"),
        (pickled_npz(), "y", "Python objects (a pickle)"),
        (zip_with({"x.npy": b"not an array", "y.npy": b""}), "x", "not a readable .npy array"),
        (zip_with({"../etc/passwd": b"root", "x.npy": b""}), "file", "not an .npy array"),
        (npz_bytes(y=None), "y", "missing"),
        (npz_bytes(x=np.zeros((40, 6), dtype=np.int64)), "x", "must be a float array"),
        (npz_bytes(x=np.zeros(40, dtype=np.float32)), "x", "must be a float array"),
        (npz_bytes(x=np.zeros((40, 0), dtype=np.float32)), "x", "must be a float array"),
        (npz_bytes(y=np.zeros((40, 2), dtype=np.int64)), "y", "1-D integer array"),
        (npz_bytes(y=np.zeros(40, dtype=np.float64)), "y", "1-D integer array"),
        (npz_bytes(y=np.array(["cat"] * 40)), "y", "1-D integer array"),
        (npz_bytes(y=np.zeros(39, dtype=np.int64)), "y", "39 labels for the 40 rows"),
        (npz_bytes(rows=5), "x", "at least 8"),
        (npz_bytes(x=np.full((40, 6), np.nan, dtype=np.float32)), "x", "NaN or infinite"),
    ],
    ids=[
        "csv", "pickle-file", "raw-bytes", "pickle-inside", "bad-member", "path-member", "no-y", "int-x",
        "1d-x", "empty-features", "2d-y", "float-y", "string-y", "short-y", "few-rows", "nan-x",
    ],
)  # fmt: skip
def test_inspect_npz_refuses_bad_upload_naming_the_field(
    tmp_path: Path, data: bytes, field: str, words: str
) -> None:
    with pytest.raises(InvalidDataset) as refused:
        _inspect(tmp_path, data)
    assert refused.value.field == field and words in refused.value.message
    assert refused.value.status_code == 422


def test_inspect_npz_refuses_arrays_larger_than_the_limit_uncompressed(tmp_path: Path) -> None:
    buffer = tmp_path / "big.npz"
    np.savez_compressed(buffer, x=np.zeros((4000, 64), dtype=np.float64), y=np.zeros(4000, dtype=np.int64))
    assert buffer.stat().st_size < 100_000  # small on the wire, 2 MB unpacked
    with pytest.raises(InvalidDataset) as refused:
        inspect_npz(buffer, max_array_bytes=1024 * 1024)
    assert refused.value.field == "file" and refused.value.status_code == 413
    assert "MAX_DATASET_BYTES" in refused.value.message
