"""The new-job form offers the per-layer keys (stats_layers, reg_layers) and early stopping."""

from __future__ import annotations

from app.runs.job_form import default_values, form_fields, validate_form, values_from_run
from collapsewatch.contract import JobSpec


def test_form_fields_offer_the_layer_keys_and_patience() -> None:
    names = {info.name: info for _, infos in form_fields() for info in infos}
    assert {"stats_layers", "reg_layers", "early_stop_patience"} <= set(names)
    assert "fc1" in names["stats_layers"].help and "'all'" in names["reg_layers"].help


def test_validate_form_with_layers_builds_the_spec_and_names_bad_layers() -> None:
    values = default_values() | {
        "stats_layers": "all",
        "reg_layers": "fc2, embedding",
        "regularizer": "svmax",
    }
    result = validate_form(values | {"early_stop_patience": "5"})
    assert result.errors == {} and result.submit is not None
    (spec,) = result.submit.expand()
    assert (spec.stats_layers, spec.reg_layers, spec.early_stop_patience) == ("all", "fc2,embedding", 5)
    bad = validate_form(values | {"reg_layers": "conv1"})
    assert bad.submit is None and "unknown layer(s) 'conv1'" in bad.errors["reg_layers"]


def test_validate_form_sweeps_reg_layers_last_vs_every_layer() -> None:
    values = default_values() | {"sweep_mode": "1", "sweep_reg_layers": "embedding, all, fc1+fc2"}
    result = validate_form(values | {"regularizer": "svmax"})
    assert result.submit is not None and result.run_count == 3
    assert [s.reg_layers for s in result.submit.expand()] == ["embedding", "all", "fc1,fc2"]


def test_values_from_run_keeps_the_layer_keys() -> None:
    spec = JobSpec(stats_layers="all", reg_layers="fc1", early_stop_patience=3)
    values = values_from_run(spec.model_dump(mode="json"), project="p", tags=[])
    assert (values["stats_layers"], values["reg_layers"], values["early_stop_patience"]) == (
        "all",
        "fc1",
        "3",
    )
    assert validate_form(values).submit is not None
