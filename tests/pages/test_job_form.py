"""Parsing and validating the new-job form (app/job_form.py)."""

from __future__ import annotations

from app.runs.job_form import default_values, validate_form, values_from_run
from collapsewatch.contract import JobSpec


def test_validate_form_defaults_make_one_default_job() -> None:
    result = validate_form(default_values())
    assert result.errors == {} and result.submit is not None and result.run_count == 1
    assert result.submit.expand() == [JobSpec()]


def test_validate_form_reports_each_bad_field_by_name() -> None:
    values = default_values() | {"lr": "fast", "epochs": "0", "regularizer": "magic", "device": "tpu"}
    result = validate_form(values)
    assert result.submit is None
    assert set(result.errors) == {"lr", "epochs", "regularizer", "device"}
    assert (
        "not allowed" in result.errors["regularizer"] and "'tpu' is not a device" in result.errors["device"]
    )


def test_validate_form_sweep_values_build_the_grid_and_bad_ones_name_the_value() -> None:
    values = default_values() | {
        "sweep_mode": "1",
        "sweep_lr": "0.1, 0.01",
        "sweep_regularizer": "none,svmax",
    }
    result = validate_form(values | {"seeds": "0,1,2"})
    assert result.submit is not None and result.run_count == 12
    assert result.submit.sweep == {"regularizer": ["none", "svmax"], "lr": [0.1, 0.01]}
    bad = validate_form(values | {"sweep_lr": "0.1, -1"})
    assert bad.submit is None and bad.errors["sweep_lr"].startswith("-1:")


def test_validate_form_ignores_sweep_inputs_unless_sweep_mode_is_on() -> None:
    result = validate_form(default_values() | {"sweep_lr": "0.1,0.2"})
    assert result.submit is not None and result.submit.sweep == {} and result.run_count == 1


def test_validate_form_refuses_grids_over_the_limit_and_bad_seeds() -> None:
    values = default_values() | {
        "sweep_mode": "1",
        "sweep_batch_size": ",".join(str(b) for b in range(2, 102)),
    }
    result = validate_form(values | {"seeds": "0,1,2"})
    assert "300 runs" in result.errors["sweep_mode"]
    assert "not a seed" in validate_form(default_values() | {"seeds": "-1"}).errors["seeds"]


def test_validate_form_npz_needs_a_picked_dataset() -> None:
    result = validate_form(default_values() | {"dataset": "npz"})
    assert result.submit is None and "pick a dataset" in result.errors["dataset_id"]
    picked = validate_form(default_values() | {"dataset": "npz", "dataset_id": "7"})
    assert picked.submit is not None and picked.submit.expand()[0].dataset_id == 7
    assert (
        "not a dataset id"
        in validate_form(default_values() | {"dataset_id": "/etc/passwd"}).errors["dataset_id"]
    )
    assert (
        "only allowed when dataset is 'npz'"
        in validate_form(default_values() | {"dataset_id": "7"}).errors["dataset_id"]
    )


def test_values_from_run_round_trip_through_the_form() -> None:
    spec = JobSpec(lr=0.3, regularizer="svmax", svmax_bounded=False, seed=4)
    values = values_from_run(spec.model_dump(mode="json"), project="p", tags=["a", "b"])
    result = validate_form(values)
    assert result.submit is not None and result.submit.expand() == [spec]
    assert result.submit.project == "p" and result.submit.tags == ["a", "b"]
