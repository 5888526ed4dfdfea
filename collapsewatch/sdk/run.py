"""The SDK's :class:`Run`: what :func:`collapsewatch.init` returns."""

from __future__ import annotations

import atexit
import logging
import math
import operator
import re
import threading
import traceback
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from collapsewatch.contract import (
    KEY_PATTERN,
    MAX_METRIC_POINTS,
    CollapseStatsIn,
    EpochIn,
    FinalStatus,
    FinishIn,
    RunPublic,
)
from collapsewatch.sdk.client import Client
from collapsewatch.sdk.errors import ApiError, ServerUnavailable, StaleAttempt
from collapsewatch.sdk.outbox import Outbox
from collapsewatch.sdk.spool import Entry, Spool, log_rejection

log = logging.getLogger("collapsewatch.sdk")
_KEY = re.compile(KEY_PATTERN)
_FATAL_STATUSES = frozenset({401, 403, 404})


class Run:
    """One run being logged. Create it with :meth:`collapsewatch.sdk.client.Client.start_run` or
    :func:`collapsewatch.sdk.client.init`; use it as a context manager or call :meth:`finish`.

    Delivery: every ``log*`` call returns at once. Writes are sent in order by a background thread;
    while the server is unreachable they are appended to an on-disk spool and re-sent when it
    answers again (nothing is lost, nothing is duplicated: the server's writes are idempotent).
    Writes the server refuses (4xx) are logged and dropped; if it refuses them because this attempt
    is fenced out, the run is gone, or the token is not accepted, the next ``log*`` call or
    ``finish`` raises that :class:`collapsewatch.sdk.client.ApiError`.
    """

    def __init__(self, client: Client, run_id: int, attempt: int, *, info: RunPublic | None = None) -> None:
        self.client = client
        self.id = run_id
        self.attempt = attempt
        self.info = info
        self.owns_client = False
        self.finished = False
        self._fatal: Exception | None = None
        self._buffer: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()
        self._last_step = -1
        self._warned_nonfinite = False
        self._outbox = Outbox(
            lambda entry: client.send_entry(entry, retries=0),
            Spool.new(client.spool_dir, run_id),
            retryable=(ServerUnavailable,),
            on_rejected=self._rejected,
            backoff=client.backoff,
            backoff_max=client.backoff_max,
            tick=self._flush_scalars,
            tick_interval=client.flush_interval,
            name=f"collapsewatch-run-{run_id}",
        )
        atexit.register(self._at_exit)

    def __repr__(self) -> str:
        return f"Run(id={self.id}, attempt={self.attempt}, url={self.client.url!r})"

    @property
    def pending(self) -> int:
        """Writes not yet delivered (buffered scalars count as one)."""
        return self._outbox.pending + int(bool(self._buffer))

    # -- logging ----------------------------------------------------------------------------------

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """Record scalars ``{key: value}`` at ``step`` (default: one more than the largest step
        logged so far, 0 at first). Points are buffered and sent in batches of at most 1000, every
        ``flush_interval`` seconds and on :meth:`finish`; logging a key at a step twice keeps the
        last value. Keys must match ``[A-Za-z0-9_][A-Za-z0-9_.-/]*`` (≤ 128 characters).

        NaN and ±Inf values are dropped (the server accepts only finite scalars), with one
        warning per run naming the first such key."""
        self._check_open()
        step = _index("step", self._last_step + 1 if step is None else step, 2**53)
        points: dict[tuple[str, int], float] = {}
        for key, raw in data.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError(f"metric key {key!r} must match {KEY_PATTERN}")
            value = _to_float(key, raw)
            if not math.isfinite(value):
                if not self._warned_nonfinite:
                    self._warned_nonfinite = True
                    log.warning(
                        "run %s: %s=%s at step %d dropped; only finite scalars are stored "
                        "(further non-finite values are dropped silently)",
                        self.id,
                        key,
                        raw,
                        step,
                    )
                continue
            points[(key, step)] = value
        with self._lock:
            self._last_step = max(self._last_step, step)
            self._buffer.update(points)
            full = len(self._buffer) >= MAX_METRIC_POINTS
        if full:
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
        epoch = _index("epoch", epoch, 2**31 - 1)
        clean = {str(k): _finite_or_none(str(k), v) for k, v in (metrics or {}).items()}
        body = EpochIn(
            attempt=self.attempt,
            metrics=clean,
            stats=_parse_stats(stats),
            layers={str(name): _parse_stats(found) for name, found in (layers or {}).items()},
        )
        dumped = body.model_dump(mode="json")
        if not body.layers:  # the record of servers from before per-layer statistics
            del dumped["layers"]
        self._outbox.put({"kind": "epoch", "run": self.id, "epoch": epoch, "body": dumped})

    def log_embeddings(
        self,
        embeddings: Any,
        epoch: int,
        metrics: Mapping[str, Any] | None = None,
        *,
        hist_edges: Any = None,
        dead_threshold: float = 1e-3,
    ) -> Any:
        """Compute the collapse statistics of ``embeddings`` (a ``b x d`` torch tensor or numpy array,
        ideally a fixed probe set) here, in float64, and log them with ``metrics`` as epoch ``epoch``.
        Returns the statistics, or None when the embeddings hold NaN/Inf (the epoch is then logged
        without statistics, with a warning).

        ``embeddings`` may also be a mapping ``{layer name: matrix}`` (one epoch, one record): every
        entry's statistics are logged under ``layers``, and the entry named ``"embedding"`` (else the
        first) is also the epoch's default ``stats``. Returns ``{name: stats or None}`` then."""
        if isinstance(embeddings, Mapping):
            if not embeddings:
                raise ValueError("embeddings: the mapping of layer name -> matrix is empty")
            found = {
                _layer_name(name): self._stats_of(matrix, epoch, hist_edges, dead_threshold, name)
                for name, matrix in embeddings.items()
            }
            default = found["embedding"] if "embedding" in found else next(iter(found.values()))
            layers = {name: stats for name, stats in found.items() if stats is not None}
            self.log_epoch(epoch, metrics, default, layers=layers)
            return found
        stats = self._stats_of(embeddings, epoch, hist_edges, dead_threshold, None)
        self.log_epoch(epoch, metrics, stats)
        return stats

    def _stats_of(
        self, embeddings: Any, epoch: int, hist_edges: Any, dead_threshold: float, name: str | None
    ) -> dict[str, Any] | None:
        import torch

        from collapsewatch.stats import collapse_stats

        what = "embeddings" if name is None else f"embeddings[{name!r}]"
        tensor = embeddings if isinstance(embeddings, torch.Tensor) else torch.as_tensor(embeddings)
        tensor = tensor.detach().to("cpu", torch.float64)
        if tensor.ndim != 2 or min(tensor.shape) < 1:
            raise ValueError(f"{what}: shape {tuple(tensor.shape)} must be (batch, dim) with both >= 1")
        if bool(torch.isfinite(tensor).all()):
            return collapse_stats(tensor, hist_edges=hist_edges, dead_threshold=dead_threshold)
        log.warning("run %s epoch %d: %s are not finite; logged without statistics", self.id, epoch, what)
        return None

    def log_lines(self, lines: Sequence[str]) -> None:
        """Append text lines (each cut to 10,000 characters) to the run's log."""
        self._check_open()
        clipped = [str(line)[:10_000] for line in lines]
        for start in range(0, len(clipped), 1000):
            body = {"attempt": self.attempt, "lines": clipped[start : start + 1000]}
            self._outbox.put({"kind": "logs", "run": self.id, "body": body})

    # -- ending -----------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send buffered scalars and wait (up to ``timeout`` s) until every write is delivered."""
        self._flush_scalars()
        return self._outbox.flush(timeout)

    def finish(
        self, status: FinalStatus = "succeeded", error: str | None = None, *, timeout: float | None = None
    ) -> bool:
        """End the run with ``status`` (``succeeded``, ``failed`` or ``cancelled``) after sending every
        buffered write. Waits at most ``timeout`` seconds (default ``Client.finish_timeout``).

        Returns True when everything, the final status included, reached the server. False means the
        server is still unreachable: the rest stays in the spool on disk and is re-sent by
        ``Client.flush_spool()`` or the next ``start_run`` against the same server. Calling it again
        is a no-op."""
        if self.finished:
            return True
        body = FinishIn(
            attempt=self.attempt, status=status, error=error if error is None else error[-20_000:]
        )
        self.finished = True
        atexit.unregister(self._at_exit)
        self._flush_scalars(then={"kind": "finish", "run": self.id, "body": body.model_dump(mode="json")})
        done = self._outbox.close(self.client.finish_timeout if timeout is None else timeout)
        if self.owns_client:
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
            log.exception("run %s: finishing after an error failed", self.id)

    # -- internals --------------------------------------------------------------------------------

    def _flush_scalars(self, then: Entry | None = None) -> None:
        """Queue the buffered scalars as batches (then ``then``), atomically with respect to other flushes."""
        with self._lock:
            points, self._buffer = list(self._buffer.items()), {}
            for start in range(0, len(points), MAX_METRIC_POINTS):
                chunk = points[start : start + MAX_METRIC_POINTS]
                body = {
                    "attempt": self.attempt,
                    "points": [{"key": k, "step": s, "value": v} for (k, s), v in chunk],
                }
                self._outbox.put({"kind": "metrics", "run": self.id, "body": body})
            if then is not None:
                self._outbox.put(then)

    def _check_open(self) -> None:
        if self.finished:
            raise RuntimeError(f"run {self.id} is finished; start a new run to log more")
        if self._fatal is not None:
            raise self._fatal

    def _rejected(self, entry: Entry, exc: Exception) -> None:
        log_rejection(entry, exc)
        is_final = entry.get("kind") == "finish"
        fenced = isinstance(exc, StaleAttempt) and not is_final
        if fenced or (isinstance(exc, ApiError) and exc.status_code in _FATAL_STATUSES):
            self._fatal = exc

    def _at_exit(self) -> None:
        """At interpreter exit without ``finish``: deliver (or spool) what is buffered; status unchanged."""
        log.warning("run %s was not finished; call run.finish() or use `with`", self.id)
        self._flush_scalars()
        self._outbox.close(min(5.0, self.client.finish_timeout))


def _parse_stats(stats: Mapping[str, Any] | CollapseStatsIn | None) -> CollapseStatsIn | None:
    if isinstance(stats, CollapseStatsIn) or stats is None:
        return stats
    return CollapseStatsIn.model_validate(stats)


def _layer_name(name: Any) -> str:
    if not isinstance(name, str) or not _KEY.match(name):
        raise ValueError(f"embeddings: layer name {name!r} must be a string matching {KEY_PATTERN}")
    return name


def _index(name: str, value: Any, upper: int) -> int:
    """An integer in [0, upper] (numpy / torch integers too); ``ValueError`` naming ``name`` otherwise."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or not 0 <= number <= upper:
        raise ValueError(f"{name}: {value!r} must be an integer between 0 and {upper}")
    return number


def _to_float(key: str, raw: Any) -> float:
    try:
        return float(raw.item() if hasattr(raw, "item") else raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metric {key!r}: {raw!r} is not a number") from exc


def _finite_or_none(key: str, raw: Any) -> float | None:
    if raw is None:
        return None
    value = _to_float(key, raw)
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """Config values as JSON: NaN/Inf become None, tuples lists, unknown objects their ``str``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)
