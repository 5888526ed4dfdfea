"""The locked dependency set: every distribution ``collapsewatch[dev]`` needs, with its installed
version, computed from the installed metadata (requirements, extras and markers followed).

    python tests/security/lockfile.py > requirements.lock     (``make lock``)

``test_dependency_lock`` checks the environment against ``requirements.lock``; ``make audit`` runs
pip-audit over it when a vulnerability database is reachable.
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "collapsewatch"
ROOT_EXTRAS = frozenset({"dev"})


def _requirements(name: str, extras: frozenset[str]) -> list[Requirement]:
    wanted = []
    for line in metadata.distribution(name).requires or []:
        requirement = Requirement(line)
        if requirement.marker is None:
            wanted.append(requirement)
            continue
        for extra in {"", *extras}:
            if requirement.marker.evaluate(default_environment() | {"extra": extra}):
                wanted.append(requirement)
                break
    return wanted


def closure() -> dict[str, str]:
    """``{canonical name: installed version}`` of everything ``collapsewatch[dev]`` pulls in."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(ROOT, ROOT_EXTRAS)]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for requirement in _requirements(name, extras):
            key = canonicalize_name(requirement.name)
            found[key] = metadata.version(requirement.name)
            todo.append((requirement.name, frozenset(requirement.extras)))
    found.pop(canonicalize_name(ROOT), None)
    return dict(sorted(found.items()))


def main() -> int:
    print("# collapsewatch[dev], as installed and tested (regenerate: make lock)")
    for name, version in closure().items():
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
