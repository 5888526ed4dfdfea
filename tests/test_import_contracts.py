"""The layout's import rules (DESIGN.md §1), checked by import-linter's contracts in pyproject.toml
and, for private names, by grimp's import details: a new violation fails here and in `make lint`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp

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


def test_no_module_imports_another_domains_private_names() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    offences = []
    for importer in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(importer):
            if _domain(importer) == _domain(imported):
                continue
            for detail in graph.get_import_details(importer=importer, imported=imported):
                line = detail["line_contents"]
                names = re.findall(r"\b_[A-Za-z]\w*", line.split(" import ", 1)[-1])
                private_module = any(
                    part.startswith("_") and not part.startswith("__") for part in imported.split(".")
                )
                if names or private_module:
                    offences.append(f"{importer}:{detail['line_number']}: {line}")
    assert not offences, "private names used across domains:\n" + "\n".join(offences)


def test_every_module_stays_small() -> None:
    """DESIGN.md §7: modules stay under ~300 lines (a few wire-contract ones may reach 360)."""
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text().splitlines())
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
    }
    big = {path: lines for path, lines in sizes.items() if lines > 360}
    assert not big, f"split these modules: {big}"
