"""The per-image lock files (locks/*.txt, made by `make locks` = locks/make_locks.py with uv): every
distribution pinned with its hashes, the web image without torch, the worker with the CPU or the
CUDA build, each covering what pyproject.toml's extras ask for at versions that satisfy them and
agree with requirements.lock (the versions CI tested)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "locks"))
from make_locks import IMAGES, requirements, torch_version  # noqa: E402

LOCKS = {"web": "web.txt", "worker-cpu": "worker-cpu.txt", "worker-cuda": "worker-cuda.txt"}
GPU_ONLY = re.compile(r"^(nvidia-|triton$|cuda-)")


def pins(name: str) -> dict[str, tuple[str, list[str]]]:
    """{distribution: (version, [hashes])} of one lock file."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in (ROOT / "locks" / LOCKS[name]).read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            current = canonicalize_name(match.group(1))
            out[current] = (match.group(2), [])
        elif current and (digest := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            out[current][1].append(digest.group(1))
    return out


def dev_lock() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(n): v for n, _, v in (line.partition("==") for line in text if "==" in line)}


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_pins_every_distribution_with_hashes(name: str) -> None:
    locked = pins(name)
    assert len(locked) > 40
    assert all(hashes for _, hashes in locked.values()), [d for d, (_, h) in locked.items() if not h]
    assert "setuptools" in locked  # the image builds the project without fetching anything unpinned


@pytest.mark.parametrize(
    ("name", "image"), [("web", "web"), ("worker-cpu", "worker"), ("worker-cuda", "worker")]
)
def test_lock_covers_the_extras_at_versions_ci_tested(name: str, image: str) -> None:
    locked, tested = pins(name), dev_lock()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for line in requirements(pyproject, IMAGES[image]):
        requirement = Requirement(line)
        key = canonicalize_name(requirement.name)
        assert key in locked, f"{name}: {requirement.name} is not locked (run `make locks`)"
        assert requirement.specifier.contains(locked[key][0], prereleases=True), (name, line, locked[key])
    drift = {
        d: (v, tested[d]) for d, (v, _) in locked.items() if d in tested and d != "torch" and v != tested[d]
    }
    assert not drift, f"{name} differs from requirements.lock (run `make locks`): {drift}"


def test_web_lock_has_no_torch_and_workers_have_their_build() -> None:
    web, cpu, cuda = pins("web"), pins("worker-cpu"), pins("worker-cuda")
    assert not [d for d in web if d == "torch" or GPU_ONLY.match(d)]
    assert "boto3" in web  # ARTIFACT_STORE=s3://… works in the web image
    release = torch_version(ROOT / "requirements.lock")
    assert cpu["torch"][0] == f"{release}+cpu" and not [d for d in cpu if GPU_ONLY.match(d)]
    assert cuda["torch"][0] == release and any(d.startswith("nvidia-") for d in cuda)
