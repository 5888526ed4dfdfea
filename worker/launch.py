"""``collapsewatch worker``: start a Celery worker for the queue (stdlib imports at module level).

``--gpus 0,1`` runs one job per GPU: concurrency = number of GPUs, and each pool child is pinned to
one of them (``CUDA_VISIBLE_DEVICES`` set in the child before CUDA is initialised; the parent never
imports torch). ``--gpus auto`` uses every GPU ``nvidia-smi`` lists (none -> a CPU worker);
``--gpus none`` is a CPU worker running ``--concurrency`` small jobs at once with GPUs hidden.
GPU workers consume the ``gpu`` and ``default`` queues, CPU workers ``cpu`` and ``default``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys


def worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpus",
        default=None,
        help="'none' (CPU), 'auto' or GPU indices like 0,1 (default: $WORKER_GPUS or none)",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="parallel jobs of a CPU worker")
    parser.add_argument(
        "--queues",
        default=None,
        help="comma list of queue classes to consume: cpu, gpu, default (default: by --gpus)",
    )
    parser.add_argument("--server", default=None, help="server URL (default: $SERVER_URL)")
    parser.add_argument(
        "--token",
        default=None,
        help="worker token (default: $WORKER_TOKEN, or the file $WORKER_TOKEN_FILE names)",
    )
    parser.add_argument("--broker", default=None, help="broker URL (default: $BROKER_URL)")
    parser.add_argument("--name", default=None, help="Celery node name (default: collapsewatch-PID@HOST)")
    parser.add_argument("--loglevel", default=None, help="DEBUG, INFO, WARNING or ERROR")


def detect_gpus() -> list[str]:
    """GPU indices from ``nvidia-smi`` (no CUDA initialisation in this process); [] without GPUs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    indices = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
    if visible is not None:
        allowed = [v.strip() for v in visible.split(",") if v.strip()]
        indices = [i for i in indices if i in allowed]
    return indices


def celery_command(
    *, gpus: list[str], concurrency: int, queues: list[str], name: str, loglevel: str
) -> tuple[list[str], dict[str, str]]:
    """The ``celery worker`` argv and the extra environment for the parent."""
    from worker.settings import GPU_SLOTS_ENV

    argv = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--pool", "prefork", "--concurrency", str(len(gpus) or concurrency),
        "--queues", ",".join(queues), "--hostname", name, "--loglevel", loglevel,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return argv, {GPU_SLOTS_ENV: ",".join(gpus)}


def worker(args: argparse.Namespace) -> int:
    """Replace this process with the Celery worker (signals then go straight to Celery)."""
    from worker.settings import QUEUE_CLASSES, WorkerSettings, parse_gpus

    overrides = {
        "server_url": args.server,
        "worker_token": args.token,
        "broker_url": args.broker,
        "worker_gpus": args.gpus,
    }
    try:
        settings = WorkerSettings(**{k: v for k, v in overrides.items() if v is not None})
        parsed = parse_gpus(settings.worker_gpus)
    except ValueError as exc:
        print(f"collapsewatch worker: error: {exc}", file=sys.stderr)
        return 2
    if not settings.worker_token:
        print(
            "collapsewatch worker: error: no worker token; create one on the server with "
            "`collapsewatch token create --worker` and pass it as --token, WORKER_TOKEN or a file "
            "named by WORKER_TOKEN_FILE",
            file=sys.stderr,
        )
        return 2
    gpus = detect_gpus() if parsed == "auto" else parsed
    classes = ["gpu", "default"] if gpus else ["cpu", "default"]
    if args.queues:
        classes = [c.strip() for c in args.queues.split(",") if c.strip()]
        unknown = sorted(set(classes) - set(QUEUE_CLASSES))
        if unknown or not classes:
            print(
                f"collapsewatch worker: error: --queues {args.queues!r}: allowed {QUEUE_CLASSES}",
                file=sys.stderr,
            )
            return 2
    concurrency = args.concurrency or settings.worker_concurrency
    if concurrency < 1:
        print("collapsewatch worker: error: --concurrency must be >= 1", file=sys.stderr)
        return 2
    name = args.name or f"collapsewatch-{os.getpid()}@{socket.gethostname()}"
    argv, extra = celery_command(
        gpus=gpus, concurrency=concurrency, queues=[settings.queue_name(c) for c in classes],
        name=name, loglevel=(args.loglevel or settings.worker_log_level).upper(),
    )  # fmt: skip
    env = dict(
        os.environ, **extra, SERVER_URL=settings.server_url, BROKER_URL=settings.broker_url,
        WORKER_TOKEN=settings.worker_token,
    )  # fmt: skip
    where = f"GPUs {','.join(gpus)}" if gpus else f"CPU x{concurrency}"
    print(
        f"collapsewatch worker: {where}, queues {','.join(classes)}, server {settings.server_url}",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return
