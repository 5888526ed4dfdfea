"""docker-compose.yml read the way Docker Compose reads it, for tests that cannot run Docker: the
YAML as written (``yaml.safe_load``: anchors and merge keys, nothing substituted), then Compose's
variable interpolation applied to every string value, from an environment such as ``.env``.

Interpolation rules (the Compose specification): ``$$`` is a literal ``$``; ``$VAR`` and ``${VAR}``
the value (empty when unset); ``${VAR:-default}`` the default when VAR is unset or empty,
``${VAR-default}`` only when unset; ``${VAR:?error}`` fails when unset or empty, ``${VAR?error}`` only
when unset; ``${VAR:+other}`` is ``other`` when VAR is set and not empty, ``${VAR+other}`` when set.
Defaults, errors and alternatives may themselves hold ``${...}`` (evaluated only when used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class MissingVariable(Exception):
    """A ``${VAR:?error}`` (or ``?``) whose variable is missing: Compose refuses to start."""


@dataclass(frozen=True)
class Reference:
    name: str
    operator: str | None


def interpolate(text: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing(text, i + 1)
            out.append(_braced(text[i + 2 : end], env))
            i = end + 1
        elif (match := _NAME.match(text, i + 1)) is not None:
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise ValueError(f"invalid interpolation at {i} in {text!r}")
    return "".join(out)


def _closing(text: str, open_at: int) -> int:
    """The index of the ``}`` that closes the ``{`` at ``open_at`` (nested ``${...}`` skipped)."""
    depth, i = 0, open_at
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _split(body: str) -> tuple[str, str | None, str]:
    match = _NAME.match(body)
    if match is None:
        raise ValueError(f"invalid variable name in ${{{body}}}")
    rest = body[match.end() :]
    if not rest:
        return match.group(), None, ""
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise ValueError(f"invalid interpolation ${{{body}}}")
    return match.group(), operator, rest[len(operator) :]


def _braced(body: str, env: dict[str, str]) -> str:
    name, operator, argument = _split(body)
    value = env.get(name)
    empty = not value
    if operator is None:
        return value or ""
    if operator == ":-":
        return interpolate(argument, env) if empty else str(value)
    if operator == "-":
        return interpolate(argument, env) if value is None else value
    if (operator == ":?" and empty) or (operator == "?" and value is None):
        raise MissingVariable(f"{name}: {interpolate(argument, env) or 'required'}")
    if operator == ":+":
        return "" if empty else interpolate(argument, env)
    if operator == "+":
        return "" if value is None else interpolate(argument, env)
    return str(value)


def references(text: str) -> list[Reference]:
    """Every variable ``text`` reads, with its operator (nested ones too)."""
    found: list[Reference] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            end = _closing(text, i + 1)
            name, operator, argument = _split(text[i + 2 : end])
            found.append(Reference(name, operator))
            found.extend(references(argument))
            i = end + 1
        elif text[i] == "$" and (match := _NAME.match(text, i + 1)) is not None:
            found.append(Reference(match.group(), None))
            i = match.end()
        else:
            i += 1
    return found


def strings(node: Any) -> list[str]:
    """Every string value in a parsed YAML tree."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def resolve(node: Any, env: dict[str, str]) -> Any:
    """The tree with Compose's interpolation applied to every string value."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


def raw() -> dict[str, Any]:
    """docker-compose.yml as written: plain YAML, nothing substituted."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(required, optional) variables of .env.example, by its ``--- required ---`` and
    ``--- optional`` sections."""
    required: dict[str, str] = {}
    optional: dict[str, str] = {}
    section: dict[str, str] | None = None
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# ---"):
            section = required if "required" in stripped else optional
            continue
        if not stripped or stripped.startswith("#"):
            continue
        assert section is not None, f".env.example: {line!r} comes before the required/optional sections"
        key, _, value = stripped.partition("=")
        section[key.strip()] = value.strip()
    return required, optional


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(volume, path in the container, read-only) of a service's short-syntax volumes."""
    out = []
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        out.append((source, target, bool(mode) and "ro" in mode[0].split(",")))
    return out


def volume_of(service: dict[str, Any], path: str) -> str | None:
    """The named volume holding ``path`` in ``service``'s container, if any."""
    for source, target, _ in mounts(service):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source
    return None
