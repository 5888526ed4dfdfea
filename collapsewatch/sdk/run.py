"""The SDK's :class:`Run`: what :func:`collapsewatch.init` returns. Its writes (epochs, scalar batches,
log lines, the final status) go to a sink: an :class:`~collapsewatch.sdk.outbox.Outbox` online, the
run's directory offline (:mod:`collapsewatch.sdk.offline`, uploaded later by ``collapsewatch sync``)."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from collapsewatch.contract import (
    MAX_METRIC_POINTS,
    CollapseStatsIn,
    EpochIn,
    FinalStatus,
    FinishIn,
    RunPublic,
)
from collapsewatch.sdk import values
from collapsewatch.sdk.client import Client
from collapsewatch.sdk.errors import ServerUnavailable, StaleAttempt, is_fatal
from collapsewatch.sdk.heartbeat import Heartbeat
from collapsewatch.sdk.outbox import Outbox, Sink
from collapsewatch.sdk.spool import Entry, Spool, log_rejection

__all__ = ["Run", "Sink"]
log = logging.getLogger("collapsewatch.sdk")


class Run:
    """One run being logged; use it as a context manager or call :meth:`finish`.

    Every ``log*`` call returns at once. Online, a background thread sends the writes in order (to an
    on-disk spool while the server is away: nothing is lost or duplicated) and a heartbeat thread keeps
    the run's lease (a run whose process dies ends ``crashed``). Writes the server refuses (4xx) are
    logged and dropped; if this attempt was fenced out (the run was resumed elsewhere), the run is gone
    or the token is refused, the next ``log*`` call or ``finish`` raises that ``ApiError``.

    ``id`` is the server's run id (None offline), ``attempt`` this process's attempt.
    """

    id: int | None
    client: Client | None
    mode: str = "online"

    def __init__(
        self,
        client: Client,
        run_id: int,
        attempt: int,
        *,
        info: RunPublic | None = None,
        heartbeat: float | None = None,
    ) -> None:
        self.client, self.id, self.info = client, run_id, info
        self.owns_client = False
        self._heartbeat = Heartbeat(client, run_id, attempt, heartbeat) if heartbeat else None
        outbox = Outbox(
            self._send,
            Spool.new(client.spool_dir, run_id),
            retryable=(ServerUnavailable,),
            on_rejected=self._rejected,
            backoff=client.backoff,
            backoff_max=client.backoff_max,
            tick=self._flush_scalars,
            tick_interval=client.flush_interval,
            name=f"collapsewatch-run-{run_id}",
        )
        self._start(outbox, attempt, finish_timeout=client.finish_timeout, flush_interval=None)

    def _start(
        self, sink: Sink, attempt: int, *, finish_timeout: float, flush_interval: float | None
    ) -> None:
        """State shared by every mode; ``flush_interval`` set: ``log`` flushes scalars itself (no thread)."""
        self.attempt = attempt
        self.finished = False
        self._sink = sink
        self._finish_timeout = finish_timeout
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._fatal: Exception | None = None
        self._buffer: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self._last_step = -1
        self._warned_nonfinite = False
        atexit.register(self._at_exit)

    def __repr__(self) -> str:
        url = self.client.url if self.client is not None else None
        return f"Run(id={self.id}, attempt={self.attempt}, mode={self.mode!r}, url={url!r})"

    @property
    def label(self) -> str:
        """How log messages name this run: ``run 12`` online, its directory offline."""
        if self.id is not None:
            return f"run {self.id}"
        where = getattr(self, "dir", None)
        return f"offline run {where}" if where is not None else f"{self.mode} run"

    @property
    def pending(self) -> int:
        """Writes not yet delivered (buffered scalars count as one)."""
        return self._sink.pending + int(bool(self._buffer))

    @property
    def start_epoch(self) -> int:
        """The first epoch to log: 0 for a new run, one after the last stored epoch when resumed."""
        last = self.info.last_epoch if self.info is not None else None
        return 0 if last is None else last + 1

    @property
    def cancel_requested(self) -> bool:
        """Someone pressed Cancel on the run's page (read at heartbeats): stop when convenient."""
        return self._heartbeat is not None and self._heartbeat.cancel_requested.is_set()

    # -- logging ----------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record scalars ``{key: value}`` at ``step`` (default: one more than the largest step
        logged so far, 0 at first). Points are buffered and sent in batches of at most 1000, every
        ``flush_interval`` seconds and on :meth:`finish`; logging a key at a step twice keeps the
        last value. Keys must match ``[A-Za-z0-9_][A-Za-z0-9_.-/]*`` (≤ 128 characters).

        NaN and ±Inf values are dropped (the server accepts only finite scalars), with one
        warning per run naming the first such key."""
        self._check_open()
        step = values.index("step", self._last_step + 1 if step is None else step, 2**53)
        points, dropped = values.scalar_points(data, step)
        if dropped is not None and not self._warned_nonfinite:
            self._warned_nonfinite = True
            log.warning(
                "%s: %s=%s at step %d dropped; only finite scalars are stored "
                "(further non-finite values are dropped silently)",
                self.label, dropped, data[dropped], step,
            )  # fmt: skip
        with self._lock:
            self._last_step = max(self._last_step, step)
            self._buffer.update(points)
            full = len(self._buffer) >= MAX_METRIC_POINTS
        due = self._flush_interval is not None and time.monotonic() - self._last_flush >= self._flush_interval
        if full or due:
            self._flush_scalars()

    def log_epoch(
        self,
        epoch: int,
        metrics: Mapping[str, Any] | None = None,
        stats: Mapping[str, Any] | CollapseStatsIn | None = None,
        *,
        layers: Mapping[str, Mapping[str, Any] | CollapseStatsIn] | None = None,
    ) -> None:
        """Record epoch ``epoch`` (≥ 0): scalar ``metrics`` (e.g. ``train_loss``, ``val_acc``) and the
        collapse statistics ``stats`` (the dict of ``collapsewatch.stats.collapse_stats``), plus
        optionally ``layers``, the statistics of named layers (``{name: stats}``). The server keeps
        the first record of an epoch per attempt (a repeat is ignored, which makes re-sending safe).

        NaN and ±Inf metric values are sent as null ("not finite"), so the epoch still appears;
        ``stats`` must be finite (``ValueError`` otherwise, as for a bad key)."""
        self._check_open()
        epoch = values.index("epoch", epoch, 2**31 - 1)
        clean = {str(k): values.finite_or_none(str(k), v) for k, v in (metrics or {}).items()}
        body = EpochIn(
            attempt=self.attempt,
            metrics=clean,
            stats=_parse_stats(stats),
            layers={str(name): _parse_stats(found) for name, found in (layers or {}).items()},
        )
        dumped = body.model_dump(mode="json")
        if not body.layers:  # the record of servers from before per-layer statistics
            del dumped["layers"]
        if self._flush_interval is not None:
            self._flush_scalars()  # offline: the epoch's scalars reach the disk with it
        self._sink.put({"kind": "epoch", "run": self.id, "epoch": epoch, "body": dumped})

    def log_embeddings(
        self,
        embeddings: Any,
        epoch: int,
        metrics: Mapping[str, Any] | None = None,
        *,
        hist_edges: Any = None,
        dead_threshold: float = 1e-3,
    ) -> Any:
        """Compute the collapse statistics of ``embeddings`` (``b x d`` numpy array or torch tensor, a
        fixed probe set ideally) here, in float64, and log them with ``metrics`` as epoch ``epoch``.
        Returns them, or None when the embeddings hold NaN/Inf (then logged without, with a warning).

        ``embeddings`` may also be a mapping ``{layer name: matrix}`` (one epoch, one record): every
        entry's statistics are logged under ``layers``, and the entry named ``"embedding"`` (else the
        first) is also the epoch's default ``stats``. Returns ``{name: stats or None}`` then."""
        self._check_open()
        if isinstance(embeddings, Mapping):
            if not embeddings:
                raise ValueError("embeddings: the mapping of layer name -> matrix is empty")
            found = {
                values.layer_name(name): self._stats_of(
                    matrix, epoch, hist_edges, dead_threshold, f"embeddings[{name!r}]"
                )
                for name, matrix in embeddings.items()
            }
            default = found["embedding"] if "embedding" in found else next(iter(found.values()))
            layers = {name: stats for name, stats in found.items() if stats is not None}
            self.log_epoch(epoch, metrics, default, layers=layers)
            return found
        stats = self._stats_of(embeddings, epoch, hist_edges, dead_threshold, "embeddings")
        self.log_epoch(epoch, metrics, stats)
        return stats

    def _stats_of(
        self, embeddings: Any, epoch: int, hist_edges: Any, dead_threshold: float, what: str
    ) -> dict[str, Any] | None:
        stats = values.embedding_stats(
            embeddings, hist_edges=hist_edges, dead_threshold=dead_threshold, what=what
        )
        if stats is None:
            log.warning("%s epoch %d: %s are not finite; logged without statistics", self.label, epoch, what)
        return stats

    def update_config(self, config: Mapping[str, Any]) -> None:
        """Merge ``config`` into the run's config (like W&B's ``run.config.update``)."""
        self._check_open()
        body = {"attempt": self.attempt, "config": values.jsonable(dict(config))}
        self._sink.put({"kind": "config", "run": self.id, "body": body})

    def log_lines(self, lines: Sequence[str]) -> None:
        """Append text lines (each cut to 10,000 characters) to the run's log."""
        self._check_open()
        clipped = [str(line)[:10_000] for line in lines]
        for start in range(0, len(clipped), 1000):
            body = {"attempt": self.attempt, "lines": clipped[start : start + 1000]}
            self._sink.put({"kind": "logs", "run": self.id, "body": body})

    # -- ending -----------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send buffered scalars and wait (up to ``timeout`` s) until every write is delivered."""
        self._flush_scalars()
        return self._sink.flush(timeout)

    def finish(
        self, status: FinalStatus = "succeeded", error: str | None = None, *, timeout: float | None = None
    ) -> bool:
        """End the run with ``status`` (``succeeded``, ``failed`` or ``cancelled``) after sending every
        buffered write. Waits at most ``timeout`` seconds (default ``Client.finish_timeout``).

        Returns True when everything, the final status included, reached the server (offline: the
        disk). False means the server is still unreachable: the rest stays in the spool on disk and is
        re-sent by ``Client.flush_spool()`` or the next ``init`` against the same server. Calling it
        again is a no-op."""
        if self.finished:
            return True
        body = FinishIn(
            attempt=self.attempt, status=status, error=error if error is None else error[-20_000:]
        )
        self.finished = True
        atexit.unregister(self._at_exit)
        self._flush_scalars(then={"kind": "finish", "run": self.id, "body": body.model_dump(mode="json")})
        done = self._sink.close(self._finish_timeout if timeout is None else timeout)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.owns_client and self.client is not None:
            self.client.close()
        if self._fatal is not None:
            raise self._fatal
        return done

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Finish ``succeeded``; ``failed`` with the exception's traceback if the block raised
        (``cancelled`` for ``KeyboardInterrupt``). Errors of ``finish`` never hide the block's own."""
        if exc_type is None:
            self.finish("succeeded")
            return
        status: FinalStatus = "cancelled" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        try:
            self.finish(status, error=text)
        except Exception:
            log.exception("%s: finishing after an error failed", self.label)

    # -- internals --------------------------------------------------------------------------------

    def _flush_scalars(self, then: Entry | None = None) -> None:
        """Queue the buffered scalars as batches (then ``then``), atomically with respect to other flushes."""
        with self._lock:
            self._last_flush = time.monotonic()
            points, self._buffer = list(self._buffer.items()), {}
            for body in values.metric_batches(self.attempt, points):
                self._sink.put({"kind": "metrics", "run": self.id, "body": body})
            if then is not None:
                self._sink.put(then)

    def _send(self, entry: Entry) -> None:
        """Deliver one write. A 409 on an SDK run may only mean the server marked it ``crashed``
        while it could not reach us: one heartbeat of this attempt brings it back, then resend."""
        assert self.client is not None
        try:
            self.client.send_entry(entry, retries=0)
        except StaleAttempt:
            if self._heartbeat is None or not self._heartbeat.beat():
                raise
            self.client.send_entry(entry, retries=0)

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError(f"{self.label} is finished; start a new run to log more")
        if self._fatal is not None:
            raise self._fatal

    def _rejected(self, entry: Entry, exc: Exception) -> None:
        log_rejection(entry, exc)
        if is_fatal(entry, exc):
            self._fatal = exc

    def _at_exit(self) -> None:
        """At exit without ``finish``: deliver (or spool) what is buffered; the server marks the run
        ``crashed`` once its heartbeats stop."""
        log.warning("%s was not finished; call run.finish() or use `with`", self.label)
        self._flush_scalars()
        self._sink.close(min(5.0, self._finish_timeout))
        if self._heartbeat is not None:
            self._heartbeat.stop()


def _parse_stats(stats: Mapping[str, Any] | CollapseStatsIn | None) -> CollapseStatsIn | None:
    if isinstance(stats, CollapseStatsIn) or stats is None:
        return stats
    return CollapseStatsIn.model_validate(stats)
