"""The new-job form: field descriptions, parsing and server-side validation into a ``JobSubmit``.

Every spec field has a main input; in sweep mode a field's "sweep" input takes comma-separated
values, and the grid is the product of all swept fields times the seeds. Validation never raises:
it returns the errors keyed by form field, so the page re-renders with the messages next to the
inputs and the values the user typed kept.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from collapsewatch.contract import MAX_SWEEP_RUNS, JobSpec, JobSubmit

# Spec fields shown on the form, in order, with a group heading each.
FORM_GROUPS: list[tuple[str, list[str]]] = [
    ("Data and model", ["dataset", "dataset_id", "model", "embedding_dim", "probe_size"]),
    ("Objective", ["objective", "margin", "vicreg_sim_coeff", "vicreg_std_coeff", "vicreg_cov_coeff"]),
    ("Regularizer", ["regularizer", "reg_lambda", "svmax_bounded", "vicreg_gamma", "dead_threshold"]),
    ("Per-layer collapse", ["stats_layers", "reg_layers"]),
    (
        "Optimisation",
        [
            "optimizer",
            "lr",
            "batch_size",
            "epochs",
            "early_stop_patience",
            "weight_decay",
            "checkpoint_every",
        ],
    ),
    ("Placement", ["device"]),
]
DEVICE_CHOICES = ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]
NOT_SWEEPABLE = frozenset({"seed"})
NEEDS_DATASET = "pick a dataset of the project (or upload an .npz below) when dataset is 'npz'"


@dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: str  # "int" | "float" | "bool" | "choice" | "text" | "dataset" (a picker of datasets)
    choices: list[str]
    default: str
    help: str


def _info(name: str) -> FieldInfo:
    spec_field = JobSpec.model_fields[name]
    annotation = spec_field.annotation
    default = spec_field.default
    choices: list[str] = []
    kind = "text"
    if typing.get_origin(annotation) is typing.Literal:
        kind, choices = "choice", [str(a) for a in typing.get_args(annotation)]
    elif annotation is bool:
        kind, choices = "bool", ["true", "false"]
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "float"
    if name == "device":
        choices = DEVICE_CHOICES
    if name == "dataset_id":
        kind = "dataset"
    shown = "" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
    return FieldInfo(name, kind, choices, shown, spec_field.description or "")


def form_fields() -> list[tuple[str, list[FieldInfo]]]:
    return [(title, [_info(n) for n in names]) for title, names in FORM_GROUPS]


def default_values() -> dict[str, str]:
    values = {info.name: info.default for _, infos in form_fields() for info in infos}
    return values | {"project": "default", "name": "", "tags": "", "seeds": "0", "sweep_mode": ""}


@dataclass
class FormResult:
    submit: JobSubmit | None = None
    errors: dict[str, str] = field(default_factory=dict)
    run_count: int = 0


def _parse(info: FieldInfo, raw: str) -> Any:
    text = raw.strip()
    if info.kind == "dataset":
        if not text:
            return None
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"{text!r} is not a dataset id; pick one from the list")
        return int(text)
    if info.kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if info.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return value
    if info.kind == "bool":
        if text.lower() in {"true", "1", "yes", "on"}:
            return True
        if text.lower() in {"false", "0", "no", "off"}:
            return False
        raise ValueError(f"{text!r} is not true or false")
    if info.kind == "choice" and info.name != "device" and text not in info.choices:
        raise ValueError(f"{text!r} is not allowed; choose one of {', '.join(info.choices)}")
    return text or None


def _message(error: Mapping[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def _spec_errors(data: dict[str, Any]) -> dict[str, str]:
    try:
        JobSpec.model_validate(data)
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "dataset_id"  # the dataset/dataset_id rule
            errors.setdefault(key, _message(err))
        return errors
    return {}


def _parse_seeds(raw: str) -> list[int]:
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts:
        raise ValueError("give at least one seed, e.g. 0 or 0,1,2")
    seeds: list[int] = []
    for part in parts:
        if not part.isdigit() or int(part) > 2**31 - 1:
            raise ValueError(f"{part!r} is not a seed; seeds are whole numbers from 0 to 2147483647")
        seeds.append(int(part))
    if len(seeds) > 64:
        raise ValueError("at most 64 seeds")
    return seeds


def validate_form(form: Mapping[str, str]) -> FormResult:
    """Parse and validate the posted form; ``submit`` is set only when there is no error at all."""
    result = FormResult()
    infos = [info for _, group in form_fields() for info in group]
    spec: dict[str, Any] = {}
    for info in infos:
        raw = form.get(info.name, info.default)
        try:
            value = _parse(info, raw)
        except ValueError as exc:
            result.errors[info.name] = str(exc)
            continue
        if value is not None:
            spec[info.name] = value
    for key, message in _spec_errors(spec).items():
        result.errors.setdefault(key, message)
    swept_dataset = bool(form.get("sweep_mode") and form.get("sweep_dataset_id", "").strip())
    if spec.get("dataset") == "npz" and "dataset_id" not in spec and not swept_dataset:
        result.errors.setdefault("dataset_id", NEEDS_DATASET)
    sweep: dict[str, list[Any]] = {}
    if form.get("sweep_mode"):
        for info in infos:
            raw = form.get(f"sweep_{info.name}", "").strip()
            if not raw or info.name in NOT_SWEEPABLE:
                continue
            values: list[Any] = []
            for part in [p for p in raw.split(",") if p.strip()]:
                try:
                    value = _parse(info, part)
                    problem = _spec_errors(spec | {info.name: value}).get(info.name)
                    problem = problem and f"{part.strip()}: {problem}"
                except ValueError as exc:
                    problem = str(exc)
                if problem:
                    result.errors[f"sweep_{info.name}"] = problem
                    break
                values.append(value)
            sweep[info.name] = values
    try:
        seeds = _parse_seeds(form.get("seeds", "0"))
    except ValueError as exc:
        result.errors["seeds"] = str(exc)
        seeds = [0]
    result.run_count = len(seeds) * math.prod(len(v) for v in sweep.values())
    if result.run_count > MAX_SWEEP_RUNS:
        result.errors["sweep_mode"] = (
            f"this grid makes {result.run_count} runs; at most {MAX_SWEEP_RUNS} per submission"
        )
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    try:
        submit = JobSubmit(
            project=form.get("project", "default").strip() or "default",
            name=form.get("name", "").strip() or None,
            tags=tags,
            spec=spec,
            sweep=sweep,
            seeds=seeds,
        )
    except ValidationError as exc:
        for err in exc.errors():
            result.errors.setdefault(str(err["loc"][0]), _message(err))
        return result
    if not result.errors:
        result.submit = submit
    return result


def values_from_run(config: Mapping[str, Any], *, project: str, tags: list[str]) -> dict[str, str]:
    """Form values that reproduce a run's spec (clone-and-edit)."""
    values = default_values()
    for key, value in config.items():
        if key in values and value is not None:
            values[key] = str(value).lower() if isinstance(value, bool) else str(value)
    values["seeds"] = str(config.get("seed", 0))
    values["project"] = project
    values["tags"] = ", ".join(tags)
    return values
