"""The training engine end to end on digits (CPU, small models, a few epochs)."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from collapsewatch.contract import EpochIn
from worker.training.checkpoint import MemoryCheckpoint
from worker.training.config import build_spec
from worker.training.data import DataError
from worker.training.device import device_info
from worker.training.engine import TrainingDiverged, train
from worker.training.records import EpochRecord

TIMING_KEYS = {"seconds", "eval_seconds"}

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(**values: Any) -> list[EpochRecord]:
    records: list[EpochRecord] = []
    train(build_spec(values), on_epoch=records.append, device="cpu")
    return records


def _comparable(record: EpochRecord) -> tuple[int, dict[str, Any], Any]:
    metrics = {k: v for k, v in record.metrics.items() if k not in TIMING_KEYS}
    return record.epoch, metrics, record.stats


def test_train_svmax_keeps_mean_sv_above_unregularized_at_large_lr() -> None:
    common = {"objective": "contrastive", "lr": 1.0, "epochs": 3, "seed": 0}
    plain = _run(**common, regularizer="none")
    svmax = _run(**common, regularizer="svmax", reg_lambda=1.0)
    for a, b in zip(plain, svmax, strict=True):
        assert a.stats is not None and b.stats is not None
        assert b.stats["mean_sv"] > a.stats["mean_sv"] + 1.0
        assert b.stats["sv_position"] > a.stats["sv_position"]
    assert svmax[-1].metrics["recall_at_1"] > plain[-1].metrics["recall_at_1"]  # type: ignore[operator]


def test_train_vicreg_variance_keeps_fewer_dead_dims_than_variance_off() -> None:
    common = {"objective": "vicreg", "lr": 0.05, "embedding_dim": 64, "epochs": 4, "seed": 0}
    off = _run(**common, vicreg_std_coeff=0.0, regularizer="none")
    on = _run(**common, vicreg_std_coeff=25.0, regularizer="vicreg_variance", reg_lambda=25.0)
    for a, b in zip(off, on, strict=True):
        assert a.stats is not None and b.stats is not None
        assert b.stats["dead_dims"] < a.stats["dead_dims"]
    assert on[-1].stats is not None and off[-1].stats is not None
    assert on[-1].stats["dead_dims"] * 2 < off[-1].stats["dead_dims"]


@pytest.mark.parametrize(
    "values",
    [
        {"objective": "vicreg", "regularizer": "svmax", "embedding_dim": 16},
        {"objective": "triplet", "optimizer": "adam", "lr": 0.01, "regularizer": "vicreg_variance"},
    ],
)
def test_train_resumed_run_matches_uninterrupted_run(values: dict[str, Any]) -> None:
    spec = build_spec({**values, "epochs": 4, "seed": 3, "probe_size": 64})
    full: list[EpochRecord] = []
    train(spec, on_epoch=full.append, device="cpu")

    first: list[EpochRecord] = []
    saved = MemoryCheckpoint()
    result = train(spec, on_epoch=first.append, checkpoint=saved, should_stop=lambda: len(first) == 2)
    assert result.stopped and result.last_epoch == 2 and set(saved.saved) == {1, 2}
    # a restarted process starts with other global RNG states
    torch.manual_seed(999)
    np.random.seed(999)
    random.seed(999)
    rest: list[EpochRecord] = []
    resumed = train(spec, on_epoch=rest.append, resume=saved.saved[2], device="cpu")
    assert resumed.start_epoch == 3 and resumed.last_epoch == 4
    assert [r.epoch for r in rest] == [3, 4]
    assert [_comparable(r) for r in first + rest] == [_comparable(r) for r in full]


def test_train_refuses_checkpoint_of_other_settings() -> None:
    saved = MemoryCheckpoint()
    train(build_spec({"epochs": 1, "probe_size": 32}), on_epoch=lambda r: None, checkpoint=saved)
    other = build_spec({"epochs": 2, "probe_size": 32, "lr": 0.1})
    with pytest.raises(ValueError, match=r"resume: .*\['lr'\]"):
        train(other, on_epoch=lambda r: None, resume=saved.saved[1])


def test_train_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    saved = MemoryCheckpoint()
    train(
        build_spec({"epochs": 2, "checkpoint_every": 5, "probe_size": 32}),
        on_epoch=lambda r: None,
        checkpoint=saved,
    )
    assert set(saved.saved) == {2}  # the last epoch is always saved
    state = torch.load(io.BytesIO(saved.saved[2]), weights_only=True)
    assert state["epoch"] == 2
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python", "generator"}
    assert "encoder.0.weight" in state["model"]


def test_train_should_stop_ends_between_epochs_and_saves_last_epoch() -> None:
    saved = MemoryCheckpoint()
    records: list[EpochRecord] = []
    result = train(
        build_spec({"epochs": 10, "checkpoint_every": 4, "probe_size": 32}),
        on_epoch=records.append,
        should_stop=lambda: len(records) >= 1,
        checkpoint=saved,
    )
    assert result.stopped and result.last_epoch == 1 and len(records) == 1
    assert set(saved.saved) == {1}


def test_train_records_match_wire_contract() -> None:
    records = _run(objective="vicreg", epochs=1, regularizer="svmax", probe_size=40)
    body = records[0].to_json(attempt=2)
    parsed = EpochIn.model_validate(body)
    assert parsed.stats is not None and parsed.attempt == 2
    assert set(body["metrics"]) >= {
        "train_loss",
        "val_acc",
        "knn_acc",
        "recall_at_1",
        "lr",
        "seconds",
        "reg_loss",
    }
    assert body["metrics"]["reg_loss"] is not None and "vicreg_invariance" in body["metrics"]


def test_train_reports_divergence_after_handing_out_the_epoch() -> None:
    records: list[EpochRecord] = []
    with pytest.raises(TrainingDiverged, match="diverged in epoch 1"):
        train(build_spec({"objective": "vicreg", "lr": 5.0, "epochs": 3}), on_epoch=records.append)
    assert len(records) == 1
    assert records[0].to_json()["metrics"]["train_loss"] is None
    EpochIn.model_validate(records[0].to_json())


def test_train_fails_on_missing_npz_before_any_epoch(tmp_path: Path) -> None:
    records: list[EpochRecord] = []
    spec = build_spec({"dataset": "npz"})
    with pytest.raises(DataError, match=r"^--data: .*missing\.npz"):
        train(spec, on_epoch=records.append, data_file=tmp_path / "missing.npz")
    assert records == []


def test_train_cnn_on_digits_images() -> None:
    records = _run(model="cnn", epochs=1, embedding_dim=16, probe_size=64)
    assert records[0].stats is not None and len(records[0].stats["dim_std"]) == 16
    assert records[0].metrics["val_acc"] is not None


def test_device_info_names_cpu_and_versions() -> None:
    info = device_info("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__
    assert isinstance(info["device_name"], str) and info["device_name"]
