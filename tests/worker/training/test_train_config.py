"""Job configs: YAML + --set overrides, and errors that name the field (before any training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.training.config import SpecError, build_spec, load_spec, parse_overrides
from worker.training.data import DataError, load_splits


def test_load_spec_merges_yaml_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("objective: triplet\nlr: 0.1\nregularizer: svmax\n")
    spec = load_spec(config, ["lr=0.5", "svmax_bounded=false", "epochs=3"])
    assert (spec.objective, spec.lr, spec.svmax_bounded, spec.epochs) == ("triplet", 0.5, False, 3)
    assert spec.regularizer == "svmax"


def test_parse_overrides_reads_yaml_scalars() -> None:
    values = parse_overrides(["lr=1e-2", "seed=3", "svmax_bounded=no", "device=cuda:1"])
    assert values == {"lr": 0.01, "seed": 3, "svmax_bounded": False, "device": "cuda:1"}


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        (["reg_lambda=-1"], "reg_lambda", "greater than or equal to 0"),
        (["batch_size=1"], "batch_size", "greater than or equal to 2"),
        (["embedding_dim=0"], "embedding_dim", "greater than or equal to 1"),
        (["dataset=imagenet"], "dataset", "'digits', 'gaussians' or 'npz'"),
        (["objective=simclr"], "objective", "'cross_entropy', 'contrastive', 'triplet' or 'vicreg'"),
        (["device=gpu"], "device", "'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (["lr=.nan"], "lr", "less than or equal to 10 (got nan)"),
        (["embeding_dim=8"], "embeding_dim", "allowed keys: dataset"),
        (["dataset=npz", "data_path=/etc/passwd"], "data_path", "refused: upload the .npz as a dataset"),
        (["dataset_id=3"], "dataset_id", "only allowed when dataset is 'npz'"),
    ],
)
def test_load_spec_rejects_bad_value_naming_field(overrides: list[str], field: str, allowed: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(None, overrides)
    assert f"{field}" in str(err.value)
    assert allowed in str(err.value)


def test_load_spec_rejects_malformed_override() -> None:
    with pytest.raises(SpecError, match="expected key=value"):
        load_spec(None, ["lr"])


def test_load_spec_rejects_non_mapping_yaml(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("- lr\n- 0.5\n")
    with pytest.raises(SpecError, match="must hold a mapping"):
        load_spec(config)


def test_load_splits_rejects_missing_npz_naming_its_source(tmp_path: Path) -> None:
    spec = build_spec({"dataset": "npz"})
    with pytest.raises(DataError, match=r"^--data: .*nope\.npz.* does not exist"):
        load_splits(spec, tmp_path / "nope.npz")


def test_load_splits_rejects_npz_without_y_naming_its_source(tmp_path: Path) -> None:
    path = tmp_path / "only_x.npz"
    np.savez(path, x=np.zeros((20, 4)), labels=np.zeros(20))
    spec = build_spec({"dataset": "npz", "dataset_id": 5})
    with pytest.raises(DataError, match=r"^dataset_id 5: lacks array\(s\) \['y'\]"):
        load_splits(spec, path)


def test_load_splits_rejects_cnn_on_flat_rows_naming_model() -> None:
    with pytest.raises(DataError, match=r"^model: 'cnn' needs images"):
        load_splits(build_spec({"dataset": "gaussians", "model": "cnn"}))
