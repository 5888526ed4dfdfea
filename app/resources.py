"""Where the server's non-Python files are: ``templates/``, ``migrations/`` and ``alembic.ini``.

The repository keeps them at its top level (fixed by the product brief). The wheel carries them inside
the ``app`` package (``app/templates``, ``app/migrations``, ``app/alembic.ini``; copied there at build
time by ``setup.py``), so both layouts put them at the same place relative to each other and
``alembic.ini``'s ``%(here)s/migrations`` holds in both. Both are found from the ``app`` package through
:mod:`importlib.resources`, never from the working directory. The dashboard's CSS and JavaScript live
inside the package already (``app/web/static``, see :mod:`app.web.static`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

SHIPPED = ("templates", "migrations", "alembic.ini")


@lru_cache(maxsize=1)
def shipped_root() -> Path:
    """The folder holding ``templates/``, ``migrations/`` and ``alembic.ini``: the installed ``app``
    package, or, in a source checkout (``pyproject.toml`` beside ``app/``), the repository root."""
    package = files("app")
    if not isinstance(package, Path):  # a zipped install: Jinja2 and Alembic need real folders
        raise RuntimeError(f"collapsewatch must be installed as files on disk, not zipped ({package})")
    if (package / "alembic.ini").is_file():
        return package
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "alembic.ini").is_file():
        return checkout
    raise RuntimeError(
        f"templates/, migrations/ and alembic.ini are missing from {package}: "
        "reinstall with pip install --force-reinstall 'collapsewatch[server]'"
    )


def shipped(name: str) -> Path:
    """One of :data:`SHIPPED` (a folder or the Alembic config) as a path on disk."""
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not shipped with the server; one of {SHIPPED}")
    return shipped_root() / name
