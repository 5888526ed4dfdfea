"""Environment settings shared by the server (``app/settings.py``) and the worker (``worker/settings.py``).

Every field ``name`` is read, highest priority first, from:

1. keyword arguments (tests, ``collapsewatch worker --broker …``);
2. the environment variable ``COLLAPSEWATCH_<NAME>`` (e.g. ``COLLAPSEWATCH_DATABASE_URL``);
3. the same key in an env file, read only when one is named: ``collapsewatch --env-file PATH …``
   (which sets ``COLLAPSEWATCH_ENV_FILE``) or ``COLLAPSEWATCH_ENV_FILE=PATH``. A ``.env`` in the working
   directory is never read by itself, and keys of an env file that are not ours are ignored;
4. the unprefixed name of earlier versions (``DATABASE_URL``), in the environment or the env file, with
   a :class:`SettingDeprecationWarning` naming the new one;
5. the field's default.

Needs pydantic-settings (installed by the ``[server]`` and ``[worker]`` extras); the SDK never imports
this module.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PREFIX = "COLLAPSEWATCH_"
ENV_FILE_VAR = "COLLAPSEWATCH_ENV_FILE"


class SettingDeprecationWarning(DeprecationWarning):
    """An unprefixed setting name (``DATABASE_URL``) was read; the message names the new one."""


# Shown once per name, even outside ``__main__`` (Python hides DeprecationWarning there by default):
# the people who set environment variables are the ones who need to read it.
warnings.filterwarnings("default", category=SettingDeprecationWarning)
_SHOWN: dict[Any, Any] = {}  # warnings' registry of the messages already shown


class SettingsError(ValueError):
    """A setting is invalid or its env file is missing; the message names the variable to fix."""

    exit_code = 2  # collapsewatch/cli.py: a usage error, like a bad flag


def env_name(field: str) -> str:
    """The environment variable of a settings field: ``database_url`` -> ``COLLAPSEWATCH_DATABASE_URL``."""
    return PREFIX + field.upper()


def named_env_file() -> Path | None:
    """The env file named by ``COLLAPSEWATCH_ENV_FILE`` (``--env-file`` sets it), which must exist."""
    value = os.environ.get(ENV_FILE_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise SettingsError(f"{ENV_FILE_VAR}: no such env file {str(path)!r}")
    return path


class _LegacyNames(PydanticBaseSettingsSource):
    """The unprefixed names of earlier versions, used only for fields no newer source has set."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        source: EnvSettingsSource,
        above: Iterable[PydanticBaseSettingsSource],
        where: str,
    ) -> None:
        super().__init__(settings_cls)
        self.source, self.above, self.where = source, tuple(above), where

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False  # unused: __call__ reads the whole source at once

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        found = {key: value for key, value in self.source().items() if key in fields}
        if not found:
            return {}
        taken: set[str] = set()
        for source in self.above:
            taken.update(source())
        used = {key: value for key, value in found.items() if key not in taken}
        for key in sorted(used):
            message = f"{key.upper()} is deprecated; set {env_name(key)} instead (read from {self.where})"
            # Attributed to "collapsewatch" rather than a line of pydantic-settings; once per message.
            warnings.warn_explicit(message, SettingDeprecationWarning, "collapsewatch", 0, registry=_SHOWN)
        return used


class PrefixedSettings(BaseSettings):
    """Base class: ``COLLAPSEWATCH_``-prefixed names, a named env file, legacy names with a warning."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=None, extra="ignore")

    def __init__(self, **values: Any) -> None:
        if "_env_file" not in values:  # tests pass _env_file=None to mean "no env file, whatever is set"
            values["_env_file"] = named_env_file()
        super().__init__(**values)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        above = (init_settings, env_settings, dotenv_settings)
        sources: list[PydanticBaseSettingsSource] = [*above]
        legacy_env = EnvSettingsSource(settings_cls, env_prefix="")
        sources.append(_LegacyNames(settings_cls, legacy_env, above, "the environment"))
        env_file = getattr(dotenv_settings, "env_file", None)
        if env_file:
            legacy_file = DotEnvSettingsSource(settings_cls, env_file=env_file, env_prefix="")
            sources.append(_LegacyNames(settings_cls, legacy_file, above, f"env file {env_file}"))
        return tuple(sources)


def describe(exc: ValidationError) -> str:
    """One line per bad setting, naming its environment variable and what is allowed."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        name = env_name(field) if field else "settings"
        lines.append(f"{name}: {message} (got {error.get('input')!r})")
    return "; ".join(lines)


T = TypeVar("T", bound=PrefixedSettings)


def load(factory: Callable[..., T], **overrides: Any) -> T:
    """``factory(**overrides)``, its validation errors turned into one :class:`SettingsError` line."""
    try:
        return factory(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
