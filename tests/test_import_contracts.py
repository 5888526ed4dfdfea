"""The layout's import rules (DESIGN.md §1), checked by import-linter's contracts in pyproject.toml
and, for private names, by grimp's import details: a new violation fails here and in `make lint`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("collapsewatch", "app", "worker")


def test_import_contracts_are_kept() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(linter), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and "no import cycles" in done.stdout


def _domain(module: str) -> str:
    """``app.auth.roles`` -> ``app.auth``; ``app.deps`` -> ``app.deps``; ``worker.x.y`` -> ``worker``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "app" else parts[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_uses(path: Path) -> list[str]:
    """Private names this module takes from another domain: ``from other import _x``, an import of a
    private module, or ``other_module._x`` through a name bound by ``import``/``from … import``."""
    here = _domain(_module_of(path))
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    foreign_modules: dict[str, str] = {}  # local name -> a module of another domain
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES or _domain(node.module) == here:
                continue
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{node.lineno}: from {node.module} import …")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                elif alias.name[:1].islower():  # possibly a submodule
                    foreign_modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in PACKAGES or _domain(alias.name) == here:
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
                if alias.asname:
                    foreign_modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign_modules
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr} ({foreign_modules[node.value.id]})")
    return found


def test_no_module_uses_another_domains_private_names() -> None:
    offences = [
        f"{path.relative_to(REPO)}:{use}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for use in private_uses(path)
    ]
    assert not offences, "private names used across domains:\n" + "\n".join(offences)


def test_private_use_finder_sees_wrapped_imports_and_attributes(tmp_path: Path) -> None:
    probe = REPO / "app" / "runs" / "_probe_private_uses.py"
    probe.write_text(
        "from app.jobs.queue import (\n    JobQueue,\n    _hidden,\n)\n"
        "from app.series import query\nquery._raw\nimport app.live.sse as _sse\n"
    )
    try:
        uses = private_uses(probe)
    finally:
        probe.unlink()
    assert any("_hidden" in use for use in uses) and any("query._raw" in use for use in uses)
    assert not any("_sse" in use for use in uses)  # a private alias of a public module is fine


def test_every_module_stays_small() -> None:
    """DESIGN.md §7: modules stay under ~300 lines (a few wire-contract ones may reach 360)."""
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
    }
    big = {path: lines for path, lines in sizes.items() if lines > 360}
    assert not big, f"split these modules: {big}"
