"""What the wheel carries: the code, and the server's templates, migrations, Alembic configuration and
static files inside the ``app`` package (where app/resources.py and app/web/static.py find them); the
sdist builds the very same wheel; the metadata is the light library plus extras."""

from __future__ import annotations

import email
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.app.cli.clikit import ROOT
from tests.packaging.wheelkit import build_sdist, build_wheel, wheel_files

pytestmark = pytest.mark.slow


def test_wheel_when_built_carries_templates_migrations_alembic_config_and_static_files(wheel: Path) -> None:
    names = set(wheel_files(wheel))
    expected = {f"app/templates/{p.name}" for p in (ROOT / "templates").glob("*.html")}
    expected |= {f"app/migrations/versions/{p.name}" for p in (ROOT / "migrations" / "versions").glob("*.py")}
    expected |= {"app/migrations/env.py", "app/migrations/script.py.mako", "app/alembic.ini"}
    expected |= {f"app/web/static/{p.name}" for p in (ROOT / "app" / "web" / "static").iterdir()}
    expected |= {"worker/example-job.yaml", "collapsewatch/cli.py", "app/main.py", "worker/celery_app.py"}
    assert len(expected) > 30 and expected <= names, sorted(expected - names)
    assert {name.split("/")[0] for name in names} == {
        "app",
        "collapsewatch",
        "worker",
        wheel_dist_info(wheel),
    }
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("app/alembic.ini") == (ROOT / "alembic.ini").read_bytes()
        assert (
            archive.read("worker/example-job.yaml") == (ROOT / "examples" / "digits-svmax.yaml").read_bytes()
        )


def test_sdist_when_built_makes_the_same_wheel(source_tree: Path, wheel: Path, tmp_path: Path) -> None:
    sdist = build_sdist(source_tree, tmp_path / "sdist")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"alembic.ini", "setup.py", "MANIFEST.in", "templates/run.html", "migrations/env.py"} <= members
    assert not [name for name in members if name.startswith(("tests/", "bench/", ".venv"))]
    from_sdist = build_wheel(sdist, tmp_path / "wheel-from-sdist")
    assert from_sdist.name == wheel.name
    assert wheel_files(from_sdist) == wheel_files(wheel)  # same files, same bytes


def test_wheel_metadata_when_read_is_the_light_library_with_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.message_from_bytes(archive.read(f"{wheel_dist_info(wheel)}/METADATA"))
        entry_points = archive.read(f"{wheel_dist_info(wheel)}/entry_points.txt").decode()
    requires = metadata.get_all("Requires-Dist") or []
    base = sorted(r.split(">")[0].split("=")[0].split("<")[0] for r in requires if "extra ==" not in r)
    assert base == ["httpx", "numpy", "pydantic", "threadpoolctl", "tqdm"]
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert extras == {"server", "worker", "lightning", "s3", "all", "dev"}

    def extra(name: str) -> list[str]:
        return [r for r in requires if r.endswith(f'extra == "{name}"')]

    assert any(r.startswith("fastapi") for r in extra("server")) and not any(
        "torch" in r for r in extra("server")
    )
    assert any(r.startswith("torch") for r in extra("worker")) and any(
        r.startswith("lightning") for r in extra("lightning")
    )
    assert any("collapsewatch[lightning,server,worker]" in r for r in extra("all"))
    assert any("collapsewatch[all,s3]" in r for r in extra("dev"))
    assert "collapsewatch = collapsewatch.cli:main" in entry_points


def wheel_dist_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"
