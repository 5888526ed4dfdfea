"""The ``collapsewatch`` command line: parse the command, then hand it to the side that owns it.

Server commands live in :mod:`app.cli.commands`, worker commands in :mod:`worker.cli`, ``sync`` in
:mod:`collapsewatch.sdk.sync`; each is imported by module name only when its command runs (this is the
one module that names every side), so that ``collapsewatch up`` never imports torch, ``collapsewatch
train`` never imports SQLAlchemy, and a light install (``pip install collapsewatch``) says which extra
a missing side needs. Module-level imports: stdlib only.

Errors end in one line on stderr and a non-zero exit (2: bad usage or settings, 1: anything else, such
as an unreachable database, broker or server); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from collapsewatch._version import __version__

ENV_FILE_VAR = "COLLAPSEWATCH_ENV_FILE"  # read by the settings (collapsewatch/envsettings.py)


class Side:
    """Where a group of commands lives and what it needs installed."""

    def __init__(self, module: str, extra: str | None, needs: tuple[str, ...] = ()) -> None:
        self.module, self.extra, self.needs = module, extra, needs


SIDES: dict[str, Side] = {
    "server": Side("app.cli.commands", "server", ("fastapi", "sqlalchemy", "alembic", "uvicorn", "jinja2")),
    "worker": Side("worker.cli", "worker", ("torch", "celery", "yaml", "sklearn")),
    "sdk": Side("collapsewatch.sdk.sync", None),  # the light library's own commands: no extra
}
# command -> (side, help); the side's module has ``<command>_args(parser)`` and ``<command>(args) -> int``
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("server", "start the server and an embedded worker (SQLite, no other services)"),
    "serve": ("server", "start only the web server"),
    "beat": ("server", "run the reaper and sweeper loop without serving"),
    "db": ("server", "database maintenance: `db upgrade`"),
    "token": ("server", "API tokens: `token create` prints a new token for the local admin"),
    "user": ("server", "accounts: `user create`"),
    "demo": ("server", "submit the seed's experiments on digits to a running server and follow them"),
    "worker": ("worker", "run a Celery worker that trains submitted jobs"),
    "train": ("worker", "train one job locally, writing per-epoch JSON lines"),
    "sync": ("sdk", "upload runs logged offline (mode='offline') to a server"),
}


class MissingExtra(Exception):
    """The side that owns a command is not installed."""


class CommandError(Exception):
    """A failure the user can fix; its message is the whole story (no traceback)."""

    exit_code = 1


class UsageError(CommandError):
    """A bad argument on the command line: exit status 2, as argparse's own usage errors."""

    exit_code = 2


def install_root() -> Path:
    """The folder holding ``collapsewatch/``, ``app/`` and ``worker/``: site-packages, or a checkout."""
    return Path(__file__).resolve().parent.parent


def own_packages_first() -> None:
    """Import ``app`` and ``worker`` from beside this package, whatever comes first on ``sys.path``.

    The wheel installs them as top-level packages; a user's project with its own ``app/`` or
    ``worker/`` (its working directory or ``PYTHONPATH``) must not shadow them in the server or worker
    processes. Only those two names are pinned (``sys.modules``); nothing else changes on ``sys.path``.
    Child processes call this too (``app/jobs/embedded.py``, ``worker/launch.py``).
    """
    root = install_root()
    for name in ("app", "worker"):
        init = root / name / "__init__.py"
        loaded = sys.modules.get(name)
        if not init.is_file() or (loaded is not None and _same_file(getattr(loaded, "__file__", None), init)):
            continue
        if loaded is not None:
            raise CommandError(
                f"a package {name!r} from {loaded.__file__} is imported already; not ours ({init})"
            )
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(init.parent)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _same_file(path: str | None, init: Path) -> bool:
    return path is not None and Path(path).resolve() == init.resolve()


def _missing(command: str, side: Side, what: str) -> MissingExtra:
    if side.extra is None:
        return MissingExtra(
            f"collapsewatch {command}: not available in this installation ({what} is missing)"
        )
    return MissingExtra(
        f"collapsewatch {command}: needs the {side.extra} side ({what} is not installed); "
        f"install it with: pip install 'collapsewatch[{side.extra}]'"
    )


def side_module(command: str) -> ModuleType:
    """The module that owns ``command``, imported now (after checking its extra is installed)."""
    side = SIDES[COMMANDS[command][0]]
    for name in side.needs:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise _missing(command, side, name)
    if side.extra is not None:
        own_packages_first()
    try:
        return importlib.import_module(side.module)
    except ModuleNotFoundError as exc:
        raise _missing(command, side, exc.name or side.module) from exc


class Parser(argparse.ArgumentParser):
    """Bad usage: one line naming the problem and where the help is (argparse prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS  # a sub-command's copy must not reset the top one
    parser.add_argument(
        "--env-file",
        default=default,
        metavar="PATH",
        help=f"read settings from this env file (COLLAPSEWATCH_* keys; also ${ENV_FILE_VAR})",
    )
    parser.add_argument(
        "--debug", action="store_true", default=False if top else argparse.SUPPRESS, help="show tracebacks"
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s own arguments are loaded, so other sides stay unimported."""
    parser = Parser(
        prog="collapsewatch",
        description="Track representation collapse: a server with a dashboard, training workers, and an SDK.",
        epilog="Settings: COLLAPSEWATCH_* environment variables, or --env-file PATH. "
        "`collapsewatch COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"collapsewatch {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        _common(sub_parser, top=False)
        if name == command:
            add_args: Callable[[argparse.ArgumentParser], None] = getattr(side_module(name), f"{name}_args")
            add_args(sub_parser)
    return parser


def _use_env_file(path: str | None) -> None:
    """``--env-file PATH``: checked now, then named to the settings of this process and its children."""
    if not path:
        return
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"--env-file: no such file {path!r}")
    os.environ[ENV_FILE_VAR] = str(file.resolve())


def redact_url(url: str) -> str:
    """``scheme://user:password@host/…`` without its credentials (for messages and banners)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception (of its cause's, for SQLAlchemy's wrappers)."""
    original = getattr(exc, "orig", None) or exc
    return next(
        (line.strip() for line in str(original).splitlines() if line.strip()), type(original).__name__
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if word in COMMANDS), None)
    debug = "--debug" in words
    try:
        args = build_parser(command).parse_args(words)
        _use_env_file(args.env_file)
        handler: Callable[[argparse.Namespace], int | None] = getattr(side_module(args.command), args.command)
        return handler(args) or 0
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"collapsewatch {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        hint = "" if hasattr(exc, "exit_code") else " (--debug shows the traceback)"  # ours say it all
        if isinstance(exc, UsageError):
            hint = f" (see `collapsewatch {command} --help`)" if command else " (see `collapsewatch --help`)"
        print(
            f"collapsewatch {command or ''}: error: {_one_line(exc)}{hint}".replace("  ", " "),
            file=sys.stderr,
        )
        return int(getattr(exc, "exit_code", 1))


if __name__ == "__main__":
    # `python -m collapsewatch.cli` runs this file as __main__: use the importable module's main, so
    # that CommandError and friends are the classes the sides raise.
    from collapsewatch.cli import main as importable_main

    sys.exit(importable_main())
