"""``collapsewatch train`` as a user runs it: a subprocess writing JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from collapsewatch.contract import EpochIn

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def _collapsewatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("collapsewatch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "collapsewatch.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_cli_train_writes_epoch_lines_valid_against_wire_contract(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    ckpt = tmp_path / "last.pt"
    config = ROOT / "examples" / "digits-svmax.yaml"
    done = _collapsewatch(
        "train", str(config), "--set", "epochs=2", "--set", "probe_size=64", "--device", "cpu",
        "--out", str(out), "--checkpoint", str(ckpt), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.pop("epoch") for line in lines] == [1, 2]
    for line in lines:
        parsed = EpochIn.model_validate({"attempt": 1, **line})
        assert parsed.stats is not None and parsed.metrics["reg_loss"] is not None
    assert "trained epochs 1..2 on cpu" in done.stderr
    assert ckpt.stat().st_size > 0

    resumed = _collapsewatch(
        "train", str(config), "--set", "epochs=3", "--set", "probe_size=64", "--device", "cpu",
        "--resume", str(ckpt), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(line)["epoch"] for line in resumed.stdout.splitlines()] == [3]


def test_cli_train_bad_config_exits_2_naming_field(tmp_path: Path) -> None:
    done = _collapsewatch("train", "--set", "batch_size=1", "--set", "epochs=2", cwd=tmp_path)
    assert done.returncode == 2
    assert "batch_size: Input should be greater than or equal to 2" in done.stderr
    assert done.stdout == ""


def test_cli_train_missing_npz_exits_2_naming_the_data_option(tmp_path: Path) -> None:
    done = _collapsewatch("train", "--data", str(tmp_path / "gone.npz"), cwd=tmp_path)
    assert done.returncode == 2
    assert "error: --data:" in done.stderr and "gone.npz" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--set", "dataset=npz", "--set", "data_path=/etc/passwd"],
            "data_path: refused: upload the .npz as a dataset",
        ),
        (["--set", "dataset=npz"], "needs its file: give it with --data FILE"),
        (["--set", "dataset=npz", "--set", "dataset_id=4"], "dataset_id: names a dataset on a server"),
    ],
    ids=["data-path", "no-file", "dataset-id"],
)
def test_cli_train_reads_npz_only_through_its_data_option(
    tmp_path: Path, args: list[str], words: str
) -> None:
    done = _collapsewatch("train", *args, cwd=tmp_path)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert done.stdout == ""


def test_cli_train_trains_on_a_local_npz_given_with_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "local.npz"
    np.savez(path, x=rng.normal(size=(60, 5)).astype(np.float32), y=np.arange(60) % 3)
    helped = _collapsewatch("train", "--help", cwd=tmp_path)
    assert "--data FILE" in helped.stdout and "never names a file" in " ".join(helped.stdout.split())
    done = _collapsewatch(
        "train", "--data", str(path), "--set", "epochs=1", "--set", "probe_size=16", "--quiet", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["epoch"] == 1 and line["stats"]["mean_sv"] > 0
