"""Loading a :class:`collapsewatch.contract.JobSpec` from YAML and ``key=value`` overrides, with errors that
name the field and what is allowed."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from collapsewatch.contract import JobSpec

# YAML 1.1 reads "1e-2" as a string; numbers in that form are read as floats here.
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class SpecError(ValueError):
    """A bad job config; the message names the field and what is allowed."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field: what is wrong (got value)``."""
    lines: list[str] = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key; allowed keys: {', '.join(JobSpec.model_fields)}"
        if field:
            lines.append(f"{field}: {message} (got {err.get('input')!r})")
        else:  # a cross-field rule; its message names the fields itself
            lines.append(message)
    return "\n".join(lines)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.5", "regularizer=svmax"]`` -> ``{"lr": 0.5, "regularizer": "svmax"}`` (YAML scalars)."""
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected key=value, e.g. --set lr=0.5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise SpecError(f"{key}: cannot parse {raw!r} as a YAML value ({exc})") from exc
        values[key] = float(value) if isinstance(value, str) and _FLOAT.match(value) else value
    return values


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file (flat JobSpec keys)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"config: cannot read {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"config: {str(path)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SpecError(f"config: {str(path)!r} must hold a mapping of job keys (e.g. `lr: 0.5`)")
    return {str(k): v for k, v in data.items()}


def build_spec(values: Mapping[str, Any]) -> JobSpec:
    """Validate a mapping into a JobSpec, raising :class:`SpecError` naming the bad fields."""
    try:
        return JobSpec.model_validate(dict(values))
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc)) from exc


def load_spec(path: str | Path | None = None, overrides: Sequence[str] = ()) -> JobSpec:
    """The JobSpec of ``collapsewatch train [CONFIG.yaml] [--set key=value ...]``."""
    values = read_config(path) if path is not None else {}
    values.update(parse_overrides(overrides))
    return build_spec(values)
