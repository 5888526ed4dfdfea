"""Building collapsewatch's wheel and sdist from a clean copy of the tree, and fresh virtual environments
installed from them the way a user does (``pip``, its cache, the machine's indexes; torch first, pinned,
as the Makefile does, so no CUDA build is pulled; the versions of requirements.lock as constraints)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.app.cli.clikit import ROOT, clean_env

LOCK = ROOT / "requirements.lock"
TORCH = "torch==2.13.0"
SKIPPED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.py[cod]", ".*_cache", ".hypothesis",
    "test-artifacts", "artifacts", "*.db", "*.db-*", ".env",
)  # fmt: skip


def _run(command: list[str], *, cwd: Path | None = None, timeout: float = 1500) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=clean_env(pythonpath=None), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
    return done.stdout


def copy_tree(destination: Path) -> Path:
    """The files git would commit (tracked and new, not ignored), else the tree minus build output."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, destination, ignore=SKIPPED)
        return destination
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def build_wheel(source: Path, out: Path) -> Path:
    """``pip wheel SOURCE --no-deps`` (an isolated PEP 517 build, as a user's pip does it)."""
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)])
    [wheel] = out.glob("collapsewatch-*.whl")
    return wheel


def build_sdist(source: Path, out: Path) -> Path:
    """The sdist, by setuptools' PEP 517 hook (what ``python -m build --sdist`` calls)."""
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    out.mkdir(parents=True, exist_ok=True)
    name = _run([sys.executable, "-c", code], cwd=source).strip().splitlines()[-1]
    return out / name


def wheel_files(wheel: Path) -> dict[str, str]:
    """``{path: sha256}`` of a wheel's files, its RECORD (which lists them) left out."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            info.filename: hashlib.sha256(archive.read(info)).hexdigest()
            for info in archive.infolist()
            if not info.filename.endswith(".dist-info/RECORD") and not info.is_dir()
        }


def make_venv(path: Path, *installs: list[str]) -> Path:
    """A new virtual environment at ``path``, then one ``pip install`` per item of ``installs``."""
    _run([sys.executable, "-m", "venv", str(path)])
    for args in installs:
        _run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", *args])
    return path


def installed(venv: Path) -> set[str]:
    """The distributions installed in ``venv`` (lower-case names)."""
    out = _run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"])
    return {line.split("==")[0].lower().replace("_", "-") for line in out.splitlines() if "==" in line}
