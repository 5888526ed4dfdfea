"""Worker-side commands of ``collapsewatch`` (module-level imports stay stdlib-only)."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any, TextIO

EXAMPLE_NAME = "example-job.yaml"  # in the wheel: worker/example-job.yaml (setup.py copies it there)
CHECKOUT_EXAMPLE = Path("examples") / "digits-svmax.yaml"  # its source in the repository


def example_config() -> str:
    """The example job config that ships with the worker (a source checkout reads the original)."""
    package = files("worker")
    shipped = package / EXAMPLE_NAME
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    checkout = Path(str(package)).parent
    if (checkout / "pyproject.toml").is_file():
        return (checkout / CHECKOUT_EXAMPLE).read_text(encoding="utf-8")
    raise FileNotFoundError(f"{EXAMPLE_NAME} is missing from {package}; reinstall 'collapsewatch[worker]'")


def needs_a_config() -> str:
    """What ``collapsewatch train`` without a config prints: what it needs and where to start."""
    from collapsewatch.contract import JobSpec

    keys = ", ".join(JobSpec.model_fields)
    return (
        "collapsewatch train: needs a job config: a YAML file of job keys, and/or --set KEY=VALUE.\n"
        "  collapsewatch train --example > job.yaml    writes an example to start from (digits, contrastive\n"
        "                                              loss, SVMax), then: collapsewatch train job.yaml\n"
        "  collapsewatch train --set epochs=5 ...      trains the defaults with these keys changed\n"
        f"  keys: {keys}"
    )


def train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        help="YAML file of job keys (`collapsewatch train --example > job.yaml` writes one to start from)",
    )
    parser.add_argument("--example", action="store_true", help="print an example config and exit")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one job key (value parsed as YAML), e.g. --set lr=0.5; repeatable",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="train on this local .npz (arrays x and y; sets dataset=npz). Only here, without a server: "
        "a job spec never names a file; jobs on a server name an uploaded dataset by dataset_id",
    )
    parser.add_argument("--out", help="write the per-epoch JSON lines to this file (default: stdout)")
    parser.add_argument("--device", help="override the spec's device: auto, cpu, cuda or cuda:N")
    parser.add_argument("--checkpoint", help="write the latest checkpoint to this file")
    parser.add_argument("--resume", help="continue from this checkpoint file (same settings)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"collapsewatch train: error: {message}", file=sys.stderr)
    return 2


def train(args: argparse.Namespace) -> int:
    """``collapsewatch train``: train one job locally and write one JSON line per epoch."""
    from worker.training.config import SpecError, load_spec
    from worker.training.data import DataError, read_npz

    if args.example:
        sys.stdout.write(example_config())
        return 0
    if args.config is None and not args.overrides and not args.device and not args.data:
        print(needs_a_config(), file=sys.stderr)
        return 2

    # Validate before importing torch, so that a bad config fails at once.
    try:
        overrides = [*args.overrides, *([f"device={args.device}"] if args.device else [])]
        spec = load_spec(args.config, [*overrides, *(["dataset=npz"] if args.data else [])])
        if spec.dataset_id is not None:
            return _fail(
                "dataset_id: names a dataset on a server (workers fetch it); "
                "`collapsewatch train` reads a local .npz given with --data FILE"
            )
        if spec.dataset == "npz":
            if not args.data:
                return _fail("dataset 'npz' needs its file: give it with --data FILE (an .npz with x and y)")
            read_npz(args.data, "--data")
        resume = Path(args.resume).read_bytes() if args.resume else None
    except (SpecError, DataError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"--resume: cannot read {args.resume!r}: {exc.strerror}")

    from tqdm import tqdm

    from worker.training.checkpoint import FileCheckpoint
    from worker.training.engine import TrainingDiverged
    from worker.training.engine import train as run_training
    from worker.training.records import EpochRecord

    try:
        out: TextIO = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    except OSError as exc:
        return _fail(f"--out: cannot write {args.out!r}: {exc.strerror}")
    bar: Any = tqdm(total=spec.epochs, desc="train", unit="epoch", file=sys.stderr, disable=args.quiet)

    def on_epoch(record: EpochRecord) -> None:
        out.write(json.dumps(record.to_line(), allow_nan=False) + "\n")
        out.flush()
        stats = record.stats or {}
        bar.set_postfix(
            loss=record.metrics.get("train_loss"),
            val_acc=record.metrics.get("val_acc"),
            mean_sv=stats.get("mean_sv"),
        )
        bar.update(1)

    try:
        result = run_training(
            spec,
            on_epoch=on_epoch,
            checkpoint=FileCheckpoint(Path(args.checkpoint)) if args.checkpoint else None,
            resume=resume,
            data_file=args.data if spec.dataset == "npz" else None,
        )
    except (DataError, ValueError) as exc:
        return _fail(str(exc))
    except TrainingDiverged as exc:
        print(f"collapsewatch train: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    info = result.device
    where = f"{info['device']} ({info['device_name']}), torch {info['torch']}"
    notes = "".join(f"; {note}" for note in result.notes)
    print(f"trained epochs {result.start_epoch}..{result.last_epoch} on {where}{notes}", file=sys.stderr)
    return 0


def worker_args(parser: argparse.ArgumentParser) -> None:
    from worker.launch import worker_args as add_args

    add_args(parser)


def worker(args: argparse.Namespace) -> int:
    """``collapsewatch worker``: a Celery worker for submitted jobs (see :mod:`worker.launch`)."""
    from worker.launch import worker as run_worker

    return run_worker(args)
