"""``collapsewatch worker``: start a Celery worker for the queue (stdlib imports at module level).

``--gpus 0,1`` runs one job per GPU: concurrency = number of GPUs, and each pool child is pinned to
one of them (``CUDA_VISIBLE_DEVICES`` set in the child before CUDA is initialised; the parent never
imports torch). ``--gpus auto`` uses every GPU ``nvidia-smi`` lists (none -> a CPU worker);
``--gpus none`` is a CPU worker running ``--concurrency`` small jobs at once with GPUs hidden.
GPU workers consume the ``gpu`` and ``default`` queues, CPU workers ``cpu`` and ``default``.

Before it starts Celery it checks the broker (one connection) and the server (``/healthz``, retried for
``--wait-server`` seconds) and says in one line which one cannot be reached. Celery runs as
``collapsewatch``'s own ``worker`` package even when a user's project with a ``worker/`` package is the
working directory or on ``PYTHONPATH`` (:func:`collapsewatch.cli.own_packages_first`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

from collapsewatch.cli import CommandError, first_line, redact_url

# `python -c` with this runs Celery's own command line after pinning our packages (see above).
CELERY_BOOTSTRAP = (
    "import sys; from collapsewatch.cli import own_packages_first; own_packages_first(); "
    "sys.argv[0] = 'celery'; from celery.__main__ import main; sys.exit(main())"
)
DEFAULT_WAIT_SERVER_S = 30.0


def worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpus",
        default=None,
        help="'none' (CPU), 'auto' or GPU indices like 0,1 (default: $COLLAPSEWATCH_WORKER_GPUS, else none)",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="parallel jobs of a CPU worker")
    parser.add_argument(
        "--queues",
        default=None,
        help="comma list of queue classes to consume: cpu, gpu, default (default: by --gpus)",
    )
    parser.add_argument("--server", default=None, help="server URL (default: $COLLAPSEWATCH_SERVER_URL)")
    parser.add_argument(
        "--token",
        default=None,
        help="worker token (default: $COLLAPSEWATCH_WORKER_TOKEN, or the file named by "
        "$COLLAPSEWATCH_WORKER_TOKEN_FILE)",
    )
    parser.add_argument("--broker", default=None, help="broker URL (default: $COLLAPSEWATCH_BROKER_URL)")
    parser.add_argument(
        "--wait-server",
        type=float,
        default=DEFAULT_WAIT_SERVER_S,
        metavar="SECONDS",
        help=f"how long to wait for the server to answer at start (default {DEFAULT_WAIT_SERVER_S:g})",
    )
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
        sys.executable, "-c", CELERY_BOOTSTRAP, "-A", "worker.celery_app", "worker",
        "--pool", "prefork", "--concurrency", str(len(gpus) or concurrency),
        "--queues", ",".join(queues), "--hostname", name, "--loglevel", loglevel,
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return argv, {GPU_SLOTS_ENV: ",".join(gpus)}


def check_broker(url: str) -> None:
    """One connection to the broker (a few seconds at most); CommandError naming it otherwise."""
    if url.startswith(("sqla+", "sqlalchemy+")):
        return  # a local SQLite file, created on first use
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
    except Exception as exc:
        raise CommandError(
            f"cannot reach the broker {redact_url(url)}: {first_line(exc)} "
            "(is it running? --broker or COLLAPSEWATCH_BROKER_URL)"
        ) from exc


def check_server(url: str, wait_s: float) -> None:
    """``GET /healthz`` until it answers 200, for ``wait_s`` seconds at most; CommandError otherwise."""
    import httpx

    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            problem = f"/healthz answered {response.status_code}"
        except httpx.HTTPError as exc:
            problem = first_line(exc)
        if time.monotonic() >= deadline:
            raise CommandError(
                f"cannot reach the server {url}: {problem} "
                "(is it running? --server or COLLAPSEWATCH_SERVER_URL)"
            )
        time.sleep(1.0)


def child_env(settings: Any, extra: dict[str, str]) -> dict[str, str]:
    """Celery's environment: every worker setting under its prefixed name (the children read those,
    so an unprefixed name the user set is warned about once, here, not in every child)."""
    from collapsewatch.envsettings import env_name

    values = {
        env_name(field): str(value)
        for field, value in settings.model_dump(mode="json").items()
        if value is not None
    }
    return dict(os.environ, **values, **extra)


def worker(args: argparse.Namespace) -> int:
    """Replace this process with the Celery worker (signals then go straight to Celery)."""
    from collapsewatch.envsettings import SettingsError, load
    from worker.settings import QUEUE_CLASSES, WorkerSettings, parse_gpus

    overrides = {
        "server_url": args.server,
        "worker_token": args.token,
        "broker_url": args.broker,
        "worker_gpus": args.gpus,
    }
    try:
        settings = load(WorkerSettings, **{k: v for k, v in overrides.items() if v is not None})
        parsed = parse_gpus(settings.worker_gpus)
    except (SettingsError, ValueError) as exc:
        print(f"collapsewatch worker: error: {exc}", file=sys.stderr)
        return 2
    if not settings.worker_token:
        print(
            "collapsewatch worker: error: no worker token; create one on the server with "
            "`collapsewatch token create --worker` and pass it as --token, COLLAPSEWATCH_WORKER_TOKEN or a "
            "file named by COLLAPSEWATCH_WORKER_TOKEN_FILE",
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
    check_broker(settings.broker_url)
    check_server(settings.server_url, getattr(args, "wait_server", DEFAULT_WAIT_SERVER_S))
    name = args.name or f"collapsewatch-{os.getpid()}@{socket.gethostname()}"
    argv, extra = celery_command(
        gpus=gpus, concurrency=concurrency, queues=[settings.queue_name(c) for c in classes],
        name=name, loglevel=(args.loglevel or settings.worker_log_level).upper(),
    )  # fmt: skip
    env = child_env(settings, extra)
    where = f"GPUs {','.join(gpus)}" if gpus else f"CPU x{concurrency}"
    print(
        f"collapsewatch worker: {where}, queues {','.join(classes)}, server {settings.server_url}",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return
