"""One wheel for the whole packaging suite, built from a clean copy of the tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.packaging.wheelkit import build_wheel, copy_tree


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("source") / "collapsewatch")


@pytest.fixture(scope="session")
def wheel(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(source_tree, tmp_path_factory.mktemp("dist"))
