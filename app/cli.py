"""The ``collapsewatch`` command line.

Each sub-command lives in the module that owns it and is imported only when it runs, so that
``collapsewatch up`` never imports torch and ``collapsewatch train`` never imports SQLAlchemy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# name -> ("module:function" taking the parsed namespace and returning an exit code, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("app.commands:up", "start the server and an embedded worker (SQLite, no other services)"),
    "serve": ("app.commands:serve", "start only the web server"),
    "beat": ("app.commands:beat", "run the reaper and sweeper loop without serving"),
    "db": ("app.commands:db", "database maintenance: `db upgrade`"),
    "token": ("app.commands:token", "API tokens: `token create` prints a new token for the local admin"),
    "user": ("app.commands:user", "accounts: `user create`"),
    "demo": ("app.commands:demo", "submit the seed's experiments on digits to a running server"),
    "worker": ("worker.cli:worker", "run a Celery worker that trains submitted jobs"),
    "train": ("worker.cli:train", "train one job locally, writing per-epoch JSON lines"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collapsewatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (target, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        _load(f"{target}_args")(sub_parser)
    return parser


def _load(target: str) -> Callable[..., int | None]:
    module_name, func = target.split(":")
    handler: Callable[..., int | None] = getattr(importlib.import_module(module_name), func)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = COMMANDS[args.command][0]
    return _load(target)(args) or 0


if __name__ == "__main__":
    sys.exit(main())
