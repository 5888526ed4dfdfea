"""What the ``train_run`` task does, as a plain function: claim -> train -> report -> finish.

1. **Claim** the run (one atomic UPDATE on the server); 409 means another worker has it or it is
   no longer queued: exit quietly (duplicate messages are harmless).
2. **Resume** from the newest stored checkpoint, if any (loaded with ``weights_only=True``); an
   ``npz`` job opens its dataset (``worker.datasets``: downloaded for this attempt and cached by
   sha256, or under a data root), its content checked against the registered sha256.
3. **Train** with the engine; every epoch is pushed with the attempt number (fencing), a checkpoint is
   uploaded after it, and a heartbeat thread extends the lease. Cancel is cooperative: the flag comes
   back with every heartbeat, and one extra heartbeat runs between epochs.
4. **Finish** ``succeeded`` / ``cancelled`` / ``failed`` (with the exception text and traceback tail,
   also posted as log lines). A fenced attempt (409: a newer attempt owns the run) stops without
   writing anything more; so does an attempt that cannot reach the server after the client's
   retries (the reaper re-queues the run when its lease expires).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from collapsewatch.contract import ClaimPublic, EpochIn, FinalStatus, WorkerInfo
from collapsewatch.sdk.client import ApiError, Client, NotClaimable, ServerUnavailable, StaleAttempt
from worker.settings import GPU_SLOTS_ENV, WorkerSettings

log = logging.getLogger(__name__)
TRACEBACK_LINES = 15


class Fenced(Exception):
    """A newer attempt owns the run (or it ended): this attempt must stop writing."""


class Heartbeat:
    """Extends the lease every ``interval`` seconds in a daemon thread; records cancel and fencing."""

    def __init__(self, client: Client, run_id: int, attempt: int, interval: float) -> None:
        self.client, self.run_id, self.attempt, self.interval = client, run_id, attempt, interval
        self.cancel_requested = threading.Event()
        self.fenced = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        """One heartbeat now; never raises (a server outage is retried on the next beat)."""
        with self._lock:
            if self.fenced.is_set():
                return
            try:
                answer = self.client.heartbeat(self.run_id, self.attempt)
            except (StaleAttempt, NotClaimable) as exc:
                log.warning("run %s attempt %s fenced: %s", self.run_id, self.attempt, exc.message)
                self.fenced.set()
                return
            except (ServerUnavailable, ApiError) as exc:
                log.warning("heartbeat of run %s failed: %s", self.run_id, exc)
                return
            if answer.cancel_requested:
                self.cancel_requested.set()

    def should_stop(self) -> bool:
        """The engine's between-epochs check: beat once, then stop on cancel or fencing."""
        self.beat()
        return self.cancel_requested.is_set() or self.fenced.is_set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 30)


class Uploader:
    """The engine's checkpoint sink: upload each checkpoint to the server's artifact store."""

    def __init__(self, client: Client, run_id: int, attempt: int) -> None:
        self.client, self.run_id, self.attempt = client, run_id, attempt

    def save(self, epoch: int, data: bytes) -> None:
        try:
            self.client.upload_checkpoint(self.run_id, self.attempt, epoch, data)
        except StaleAttempt as exc:
            raise Fenced(exc.message) from exc


def training_device(spec_device: str) -> str | None:
    """The device override for a job in this pool child. A child that ``collapsewatch worker`` pinned
    to one GPU sees it as ``cuda:0`` and trains every non-CPU job there (``cuda:N`` names a device
    class, the pinning picks the physical GPU); a pinned CPU child trains ``auto`` jobs on the CPU.
    None: the spec decides (unpinned workers, and ``cuda`` jobs that reached a CPU worker fail with
    the engine's "CUDA is not available")."""
    slots = os.environ.get(GPU_SLOTS_ENV)
    if slots is None:
        return None
    if slots.strip():
        return "cpu" if spec_device == "cpu" else "cuda:0"
    return "cpu" if spec_device in ("cpu", "auto") else None


def collect_worker_info(device: str | None) -> WorkerInfo:
    """Host, pid, device and torch/CUDA versions (initialises CUDA: call only inside the task)."""
    from worker.training.device import device_info, resolve_device

    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        info |= device_info(resolve_device(device or "auto"))
    except ValueError as exc:  # no such device: the engine reports it as the run's error
        info["device"] = device
        info["device_error"] = str(exc)
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        info["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return WorkerInfo.model_validate(info)


def make_client(settings: WorkerSettings) -> Client:
    if not settings.worker_token:
        raise RuntimeError("WORKER_TOKEN is not set; create one with `collapsewatch token create --worker`")
    spool = os.path.join(tempfile.gettempdir(), f"collapsewatch-worker-spool-{os.getuid()}")
    return Client(settings.server_url, settings.worker_token, spool_dir=spool, max_retries=6, backoff_max=5.0)


def run_job(run_id: int, *, settings: WorkerSettings, client: Client | None = None) -> str:
    """Claim and train run ``run_id``. Returns what happened: ``not-claimable``, ``fenced`` or the
    final status."""
    own_client = client is None
    client = client or make_client(settings)
    try:
        # Where an "auto" job would run: the claim records it (CUDA initialises here, in the task).
        info = collect_worker_info(training_device("auto"))
        try:
            claim = client.claim(run_id, info)
        except NotClaimable as exc:
            log.info("run %s not claimable (%s); nothing to do", run_id, exc.message)
            return "not-claimable"
        device = training_device(claim.spec.device)
        if (device or claim.spec.device) != info.device and device is not None:
            info = collect_worker_info(device)
        return _run_claimed(client, claim, settings=settings, device=device, info=info)
    finally:
        if own_client:
            client.close()


def _heartbeat_interval(claim: ClaimPublic, settings: WorkerSettings) -> float:
    """At most HEARTBEAT_SECONDS and a third of the lease. The lease length comes from the server:
    ``lease_until`` minus this machine's clock would be off by any clock skew (a worker minutes
    ahead would beat every 0.2 s); only a server that does not send ``lease_seconds`` needs it."""
    if claim.lease_seconds is not None:
        lease = claim.lease_seconds
    else:
        lease = (claim.lease_until - datetime.now(UTC)).total_seconds()
    return max(0.2, min(settings.heartbeat_seconds, lease / 3))


def _run_claimed(
    client: Client, claim: ClaimPublic, *, settings: WorkerSettings, device: str | None, info: WorkerInfo
) -> str:
    from worker.training.engine import train

    run_id, attempt, spec = claim.run.id, claim.attempt, claim.spec
    heartbeat = Heartbeat(client, run_id, attempt, _heartbeat_interval(claim, settings))
    heartbeat.start()

    def on_epoch(record: Any) -> None:
        if heartbeat.fenced.is_set():
            raise Fenced(f"attempt {attempt} was fenced out")
        try:
            client.put_epoch(run_id, record.epoch, EpochIn.model_validate(record.to_json(attempt)))
        except StaleAttempt as exc:
            raise Fenced(exc.message) from exc

    try:
        stored = client.download_checkpoint(run_id) if attempt > 1 or claim.resume_epoch else None
        note = f"resuming after epoch {stored[0]}" if stored else "starting from scratch"
        _log(
            client, run_id, attempt, f"attempt {attempt} on {socket.gethostname()} pid {os.getpid()}: {note}"
        )
        with _dataset(client, claim, settings) as data:
            result = train(
                spec,
                on_epoch=on_epoch,
                should_stop=heartbeat.should_stop,
                checkpoint=Uploader(client, run_id, attempt),
                resume=stored[1] if stored else None,
                device=device,
                data_file=data,
            )
        if heartbeat.fenced.is_set():
            raise Fenced(f"attempt {attempt} was fenced out")
        status: FinalStatus = "cancelled" if result.stopped else "succeeded"
        if result.early_stopped:
            _log(client, run_id, attempt, *result.notes[-1:])
        client.finish(run_id, attempt, status)
        log.info("run %s attempt %s %s after epoch %s", run_id, attempt, status, result.last_epoch)
        return status
    except (Fenced, StaleAttempt) as exc:
        log.warning("run %s attempt %s stopped: fenced (%s)", run_id, attempt, exc)
        return "fenced"
    except ServerUnavailable as exc:
        # Not the job's fault: stop without a verdict; the lease expires and the reaper re-queues
        # the run, which resumes from its last checkpoint once the server is back.
        log.error("run %s attempt %s stopped: the server is unreachable (%s)", run_id, attempt, exc)
        return "server-unavailable"
    except Exception as exc:
        error = failure_text(exc)
        log.error("run %s attempt %s failed: %s", run_id, attempt, error)
        _log(client, run_id, attempt, *error.splitlines())
        try:
            client.finish(run_id, attempt, "failed", error)
        except (StaleAttempt, ApiError, ServerUnavailable) as finish_exc:
            log.warning("could not report the failure of run %s: %s", run_id, finish_exc)
        return "failed"
    finally:
        heartbeat.stop()


@contextlib.contextmanager
def _dataset(client: Client, claim: ClaimPublic, settings: WorkerSettings) -> Iterator[BinaryIO | None]:
    """The checked, open file of an npz job's dataset (``worker.datasets``); None for the others."""
    spec = claim.spec
    if spec.dataset != "npz" or spec.dataset_id is None:
        yield None  # an npz spec without dataset_id fails in the engine, naming dataset_id
        return
    from worker.datasets import open_dataset

    handle = open_dataset(
        client,
        spec.dataset_id,
        run_id=claim.run.id,
        attempt=claim.attempt,
        cache_dir=settings.dataset_cache_dir,
        roots=settings.data_root_dirs(),
    )
    with handle:
        yield handle


def failure_text(exc: BaseException) -> str:
    """``Type: message`` plus the last lines of the traceback."""
    tail = traceback.format_exception(exc)
    lines = "".join(tail).rstrip().splitlines()[-TRACEBACK_LINES:]
    return f"{type(exc).__name__}: {exc}\n\nTraceback (last {len(lines)} lines):\n" + "\n".join(lines)


def _log(client: Client, run_id: int, attempt: int, *lines: str) -> None:
    try:
        client.post_logs(run_id, attempt, [line[:2000] for line in lines if line][:200], retries=2)
    except Exception as exc:  # logs are best effort
        log.warning("could not post logs for run %s: %s", run_id, exc)
