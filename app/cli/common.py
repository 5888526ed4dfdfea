"""What the server's commands share: ``--data DIR``, one-line errors for unreachable services, and
where the embedded set-up keeps its files. Module-level imports: no server framework (SQLAlchemy and
kombu are imported by the functions that use them)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from collapsewatch.cli import CommandError, first_line, redact_url

if TYPE_CHECKING:
    from app.settings import Settings

DATA_DIR_VAR = "COLLAPSEWATCH_DATA_DIR"  # the settings' data_dir field (app/settings.py)


def data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="folder for the SQLite database, the SQLite broker and the artifacts "
        f"(default: ${DATA_DIR_VAR}, else the working directory)",
    )


def use_data_dir(args: argparse.Namespace) -> None:
    """``--data DIR`` (else ``$COLLAPSEWATCH_DATA_DIR``): named to the settings of this process and its
    children, and created."""
    from app.settings import get_settings

    folder = getattr(args, "data", None)
    if folder:
        os.environ[DATA_DIR_VAR] = str(Path(folder).expanduser().resolve())
    get_settings.cache_clear()
    data_dir = get_settings().data_dir
    if data_dir is not None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            flag = "--data" if folder else DATA_DIR_VAR
            raise CommandError(f"{flag}: cannot create {str(data_dir)!r}: {exc.strerror}") from exc


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///…`` or ``sqla+sqlite:///…`` URL, absolute; None for other URLs."""
    for prefix in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix).split("?", 1)[0]).expanduser().resolve()
    return None


def describe_storage(settings: Settings) -> str:
    """Where the data lives, for the start-up banner of ``collapsewatch up``."""
    database = sqlite_path(settings.database_url) or redact_url(settings.database_url)
    broker = sqlite_path(settings.broker_url) or redact_url(settings.broker_url)
    artifacts = Path(settings.artifact_dir).expanduser().resolve()
    hint = "" if settings.data_dir else f" (--data DIR or ${DATA_DIR_VAR} moves them)"
    return f"data: database {database}, broker {broker}, artifacts {artifacts}{hint}"


@contextmanager
def reaching_database(settings: Settings) -> Iterator[None]:
    """Turn "cannot connect / cannot open" into one line naming the database and the setting."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        path = sqlite_path(settings.database_url)
        if path is not None:
            raise CommandError(
                f"cannot open the database {path}: {first_line(exc)} "
                "(does its folder exist? set COLLAPSEWATCH_DATABASE_URL, or --data DIR)"
            ) from exc
        raise CommandError(
            f"cannot reach the database {redact_url(settings.database_url)}: {first_line(exc)} "
            "(is it running? set COLLAPSEWATCH_DATABASE_URL)"
        ) from exc


def check_broker(url: str) -> None:
    """Connect to the broker once (a few seconds at most); one line naming it if that fails."""
    if url.startswith(("sqla+", "sqlalchemy+")):
        path = sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise CommandError(f"broker {url}: folder {str(path.parent)!r} does not exist")
        return  # a local SQLite file: created on first use
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
    except Exception as exc:
        raise CommandError(
            f"cannot reach the broker {redact_url(url)}: {first_line(exc)} "
            "(is it running? set COLLAPSEWATCH_BROKER_URL)"
        ) from exc
