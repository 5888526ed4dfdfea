"""The dependency set is locked: ``requirements.lock`` lists every distribution ``collapsewatch[dev]``
pulls in at the version installed and tested. Any drift (an upgrade, a new dependency, a removed
one) fails here until the lock is regenerated on purpose with ``make lock``; ``make audit`` runs
pip-audit over the same file when a vulnerability database is reachable (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

from lockfile import closure

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    return pins


def test_installed_dependencies_match_the_lock() -> None:
    locked, installed = _locked(), closure()
    assert len(locked) > 50 and "fastapi" in locked and "schemathesis" in locked
    drift = sorted(
        f"{name}: locked {locked.get(name, '-')}, installed {installed.get(name, '-')}"
        for name in set(locked) | set(installed)
        if locked.get(name) != installed.get(name)
    )
    assert not drift, (
        "dependencies differ from requirements.lock (run `make lock` if intended):\n" + "\n".join(drift)
    )
