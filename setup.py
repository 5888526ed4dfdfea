"""Build hook; everything else is declared in pyproject.toml.

The repository keeps ``templates/``, ``migrations/`` and ``alembic.ini`` at its top level (fixed by the
product brief). The wheel carries them inside the ``app`` package, in the same layout relative to each
other (``app/templates``, ``app/migrations``, ``app/alembic.ini``), where ``app/resources.py`` finds them
through importlib.resources; ``collapsewatch train --example`` prints ``worker/example-job.yaml``, a copy
of ``examples/digits-svmax.yaml``. MANIFEST.in puts the same files in the sdist, so a wheel built from the
sdist is the same as one built from the checkout (tests/packaging checks both).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (source in the repository, destination inside the built packages)
SHIPPED = [
    ("templates", "app/templates"),
    ("migrations", "app/migrations"),
    ("alembic.ini", "app/alembic.ini"),
    ("examples/digits-svmax.yaml", "worker/example-job.yaml"),
]
IGNORED = shutil.ignore_patterns("__pycache__", "*.py[cod]")


class BuildPyWithData(build_py):
    """``build_py``, then the shipped top-level files copied into the build tree."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout (app/resources.py)
        for source, destination in SHIPPED:
            origin, target = HERE / source, Path(self.build_lib) / destination
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=IGNORED, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


setup(cmdclass={"build_py": BuildPyWithData})
