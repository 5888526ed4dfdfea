"""Datasets and their seeded splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.training.config import build_spec
from worker.training.data import GAUSSIAN_CLASSES, GAUSSIAN_DIM, DataError, load_splits, read_npz


def test_load_splits_same_seed_gives_same_probe_rows() -> None:
    a = load_splits(build_spec({"seed": 4}))
    b = load_splits(build_spec({"seed": 4, "objective": "vicreg", "lr": 0.01}))
    c = load_splits(build_spec({"seed": 5}))
    np.testing.assert_array_equal(a.x_probe, b.x_probe)
    np.testing.assert_array_equal(a.y_probe, b.y_probe)
    assert not np.array_equal(a.x_probe, c.x_probe)


def test_load_splits_keeps_probe_inside_held_out_rows() -> None:
    splits = load_splits(build_spec({"probe_size": 100}))
    assert len(splits.x_train) + len(splits.x_val) == 1797
    assert splits.x_probe.shape == (100, 64)
    np.testing.assert_array_equal(splits.x_probe, splits.x_val[:100])
    assert splits.notes == []


def test_load_splits_caps_probe_size_and_says_so() -> None:
    splits = load_splits(build_spec({"probe_size": 5000}))
    assert len(splits.x_probe) == len(splits.x_val) < 5000
    assert any("probe_size 5000 capped" in note for note in splits.notes)


def test_load_splits_standardises_with_train_statistics() -> None:
    splits = load_splits(build_spec({"dataset": "gaussians"}))
    assert splits.x_train.shape[1] == GAUSSIAN_DIM
    assert splits.n_classes == GAUSSIAN_CLASSES
    np.testing.assert_allclose(splits.x_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(splits.x_train.std(0), 1.0, atol=1e-4)


def test_load_splits_reads_digits_as_images_for_cnn() -> None:
    splits = load_splits(build_spec({"model": "cnn"}))
    assert splits.input_shape == (1, 8, 8)
    assert splits.x_train.shape[1:] == (1, 8, 8)


def test_load_splits_reads_npz_images_and_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(40, 3, 6, 6)), y=np.array(["cat", "dog"] * 20))
    splits = load_splits(build_spec({"dataset": "npz", "model": "cnn"}), path)
    assert splits.input_shape == (3, 6, 6)
    assert splits.n_classes == 2
    assert set(np.unique(splits.y_train)) <= {0, 1}
    with path.open("rb") as handle:  # the worker hands over the file it opened and hashed
        flat = load_splits(build_spec({"dataset": "npz", "dataset_id": 7}), handle)
    assert flat.input_shape == (108,)


def test_load_splits_npz_without_its_file_names_dataset_id() -> None:
    with pytest.raises(DataError, match=r"^dataset_id: .*--data FILE"):
        load_splits(build_spec({"dataset": "npz"}))


def test_read_npz_refuses_a_bare_npy_file_naming_where_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((10, 2)))
    with pytest.raises(DataError, match=r"^dataset_id 3: not an .npz archive"):
        read_npz(path, "dataset_id 3")
