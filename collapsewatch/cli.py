"""The ``collapsewatch`` command line: parse the command, then hand it to the side that owns it.

Server commands live in :mod:`app.cli.commands`, worker commands in :mod:`worker.cli`; each is imported
by module name only when its command runs (this is the one module that names both sides), so that
``collapsewatch up`` never imports torch, ``collapsewatch train`` never imports SQLAlchemy, and a light
install says which extra a missing side needs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

# side -> (the module holding its commands, the extra that installs what it needs)
SIDES: dict[str, tuple[str, str]] = {
    "server": ("app.cli.commands", "server"),
    "worker": ("worker.cli", "worker"),
    "sdk": ("collapsewatch.sdk.sync", ""),  # part of the light install: no extra needed
}
# command -> (side, help); the side's module has ``<command>_args(parser)`` and ``<command>(args) -> int``
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("server", "start the server and an embedded worker (SQLite, no other services)"),
    "serve": ("server", "start only the web server"),
    "beat": ("server", "run the reaper and sweeper loop without serving"),
    "db": ("server", "database maintenance: `db upgrade`"),
    "token": ("server", "API tokens: `token create` prints a new token for the local admin"),
    "user": ("server", "accounts: `user create`"),
    "demo": ("server", "submit the seed's experiments on digits to a running server"),
    "worker": ("worker", "run a Celery worker that trains submitted jobs"),
    "train": ("worker", "train one job locally, writing per-epoch JSON lines"),
    "sync": ("sdk", "upload offline runs (logged with mode='offline') to the server"),
}


class MissingExtra(Exception):
    """The side that owns a command is not installed."""


def side_module(command: str) -> ModuleType:
    """The module that owns ``command``, imported now."""
    module_name, extra = SIDES[COMMANDS[command][0]]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MissingExtra(
            f"collapsewatch {command}: needs the {extra} side ({exc.name} is not installed); "
            f"install it with: pip install 'collapsewatch[{extra}]'"
        ) from exc


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s own arguments are loaded, so other sides stay unimported."""
    parser = argparse.ArgumentParser(prog="collapsewatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_args: Callable[[argparse.ArgumentParser], None] = getattr(side_module(name), f"{name}_args")
            add_args(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), None)
    try:
        args = build_parser(command if command in COMMANDS else None).parse_args(words)
        handler: Callable[[argparse.Namespace], int | None] = getattr(side_module(args.command), args.command)
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 2
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
