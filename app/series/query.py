"""``GET /api/v1/series`` in SQL: the contract of :mod:`app.series.downsample`, aggregated by the database.

Where a key is looked up (``source``):

- ``epoch``: an epoch statistic column (``mean_sv``, ``sv_position``, ``effective_rank``, ``dead_dims``
  …, see :data:`EPOCH_COLUMNS`) or, for any other key, the epoch record's ``metrics`` JSON
  (``train_loss``, ``val_acc``, ``knn_acc``, ``recall_at_1`` …); x is the epoch.
- ``metric``: the free scalars logged with ``POST /runs/{id}/metrics`` (the SDK); x is the step. They
  are read from their packed copy (``app.series.chunks``, ~40 blobs per 10,000 steps) and bucketed
  with numpy (``app.series.arrays``): grouping 10,000 raw rows per run in SQL is what made a query slow.
- ``auto`` (default): an epoch statistic column if the key is one; otherwise, per run, the metrics
  table when that run has points for the key, else the epoch ``metrics`` JSON.

Null values (non-finite numbers sent as null) are left out of the points; the shared x range of
SDK scalars spans their first and last stored step, null values included.

Buckets are computed with integer arithmetic shared by SQLite and PostgreSQL; the database returns one
row per non-empty bucket (count, min, max and the bucket's last point), and only the rows of the few
buckets holding a series' first, min and max point travel in full.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.models import EPOCH_STAT_COLUMNS, Epoch, Metric
from app.series.arrays import downsample_arrays, finite
from app.series.chunks import Arrays, load_chunks
from app.series.downsample import Bucket, Point, assemble, bucket_count, bucket_width, required_points

EPOCH_COLUMNS = EPOCH_STAT_COLUMNS
SourceName = Literal["auto", "epoch", "metric"]


@dataclass(frozen=True, slots=True)
class SeriesResult:
    run: int
    source: Literal["epoch", "metric"]
    total: int
    points: list[Point]


@dataclass(frozen=True, slots=True)
class _Spec:
    """Where one series lives: an ORM table, plus how to read run, x and y from an alias of it."""

    source: Literal["epoch", "metric"]
    key: str

    def columns(self) -> tuple[Any, Any, Any, ColumnElement[bool]]:
        return self.entity_columns()[1:]

    def entity_columns(self) -> tuple[Any, Any, Any, Any, ColumnElement[bool]]:
        """A fresh alias of the table, and its run, x, y and filter expressions."""
        if self.source == "metric":  # Core table aliases: no ORM row processing on 20k-row results
            m = Metric.__table__.alias()
            return m, m.c.run_id, m.c.step, m.c.value, m.c.key == self.key
        e = Epoch.__table__.alias()
        if self.key in EPOCH_COLUMNS:
            return e, e.c.run_id, e.c.epoch, e.c[self.key], true()
        return e, e.c.run_id, e.c.epoch, e.c.metrics[self.key].as_float(), true()


def _stats(*, session: Session, spec: _Spec, run_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    run, x, y, cond = spec.columns()
    rows = session.execute(
        select(run, func.count(), func.min(x), func.max(x))
        .where(run.in_(run_ids), cond, y.is_not(None))
        .group_by(run)
    ).all()
    return {int(r): (int(n), int(a), int(b)) for r, n, a, b in rows if n}


def _raw(*, session: Session, spec: _Spec, run_ids: Sequence[int]) -> dict[int, list[Point]]:
    run, x, y, cond = spec.columns()
    rows = session.execute(
        select(run, x, y).where(run.in_(run_ids), cond, y.is_not(None)).order_by(run, x)
    ).all()
    out: dict[int, list[Point]] = {r: [] for r in run_ids}
    for r, xv, yv in rows:
        y = float(yv)
        out[int(r)].append(Point(int(xv), y, y, y))  # what exact() builds, without two lists a row
    return out


def _aggregate(
    *, session: Session, spec: _Spec, run_ids: Sequence[int], lo: int, width: int
) -> dict[int, list[Bucket]]:
    run, x, y, cond = spec.columns()
    offset = (x - literal_column(str(int(lo)), BigInteger)).self_group()
    bucket = offset.op("/", return_type=BigInteger)(literal_column(str(int(width)), BigInteger))
    columns = [
        run.label("run"),
        bucket.label("b"),
        func.count().label("n"),
        func.min(y).label("y_min"),
        func.max(y).label("y_max"),
        func.max(x).label("last_x"),
    ]
    rows: list[Any]
    if session.get_bind().dialect.name == "postgresql":
        # the bucket's last point in the same pass: arrays compare element-wise, so the max of
        # [x, y] is the row with the largest x (x <= 2**53 is exact as float8).
        last = func.max(postgresql.array([cast(x, Float), cast(y, Float)]), type_=postgresql.ARRAY(Float))
        stmt = (
            select(*columns, last[2])
            .where(run.in_(run_ids), cond, y.is_not(None))
            .group_by(run, bucket)
            .order_by(run, bucket)
        )
        rows = list(session.execute(stmt).all())
    else:
        # SQLite: one query per run grouped by bucket alone (many small GROUP BY sorts beat one
        # large one; the run column is constant), joining each bucket's last step back through the
        # unique index for its value.
        this_run = bindparam("run_id", type_=Integer)
        agg = select(*columns).where(run == this_run, cond, y.is_not(None)).group_by(bucket).subquery()
        table2, run2, x2, y2, cond2 = spec.entity_columns()
        stmt = (
            select(agg.c.run, agg.c.b, agg.c.n, agg.c.y_min, agg.c.y_max, agg.c.last_x, y2)
            .join_from(agg, table2, and_(run2 == agg.c.run, x2 == agg.c.last_x, cond2))
            .order_by(agg.c.b)
        )
        rows = [row for r in run_ids for row in session.execute(stmt, {"run_id": r}).all()]
    out: dict[int, list[Bucket]] = {r: [] for r in run_ids}
    for row in rows:  # (run, bucket, n, min, max, last x, last y): the drivers return int / float
        out[row[0]].append(Bucket(row[1], row[2], row[3], row[4], row[5], row[5], row[6]))
    return out


def _required(
    *, session: Session, spec: _Spec, buckets: dict[int, list[Bucket]], lo: int, width: int
) -> dict[int, list[Any]]:
    """First, min and max point of each run, read from the rows of the (at most 3) buckets holding them."""
    wanted: dict[int, set[int]] = {}
    for r, bs in buckets.items():
        if bs:
            # buckets come in bucket order; min() and max() return the first extreme
            low, high = min(bs, key=itemgetter(2)), max(bs, key=itemgetter(3))
            wanted[r] = {bs[0].bucket, low.bucket, high.bucket}
    if not wanted:
        return {}
    run, x, y, cond = spec.columns()
    ranges = [
        and_(run == r, x.between(lo + b * width, lo + (b + 1) * width - 1))
        for r, bs in wanted.items()
        for b in sorted(bs)
    ]
    rows = session.execute(select(run, x, y).where(or_(*ranges), cond, y.is_not(None)).order_by(run, x)).all()
    per_run: dict[int, tuple[list[int], list[float]]] = {r: ([], []) for r in wanted}
    for r, xv, yv in rows:
        per_run[int(r)][0].append(int(xv))
        per_run[int(r)][1].append(float(yv))
    return {r: required_points(xs, xs, ys, lo=lo, width=width) for r, (xs, ys) in per_run.items()}


def _series_for(
    *, session: Session, spec: _Spec, runs: dict[int, tuple[int, int]], max_points: int, lo: int, width: int
) -> dict[int, tuple[int, list[Point]]]:
    """(total, points) per run: aggregated in SQL, or raw when a run has at most ``max_points``."""
    big = [r for r, (n, _) in runs.items() if n > max_points]
    small = [r for r, (n, _) in runs.items() if n <= max_points]
    out: dict[int, tuple[int, list[Point]]] = {}
    if small:
        out |= {r: (len(p), p) for r, p in _raw(session=session, spec=spec, run_ids=small).items()}
    if big:
        buckets = _aggregate(session=session, spec=spec, run_ids=big, lo=lo, width=width)
        totals = {r: sum(b.n for b in bs) for r, bs in buckets.items()}
        fits = [r for r in big if totals[r] <= max_points]  # null values made it small after all
        if fits:
            out |= {r: (len(p), p) for r, p in _raw(session=session, spec=spec, run_ids=fits).items()}
        rest = {r: bs for r, bs in buckets.items() if r not in fits}
        required = _required(session=session, spec=spec, buckets=rest, lo=lo, width=width)
        out |= {r: (totals[r], assemble(bs, required.get(r, []))) for r, bs in rest.items()}
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building ~20,000 result tuples otherwise triggers
    collections that scan the whole heap (measured: a third of the query time). Tuples make no
    cycles; the collector resumes (and catches up) when the block ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_series(
    *, session: Session, run_ids: Sequence[int], key: str, max_points: int, source: SourceName = "auto"
) -> list[SeriesResult]:
    """One downsampled series per run (in ``run_ids`` order), aligned on a shared x range."""
    with gc_paused():
        return _load_series(session=session, run_ids=run_ids, key=key, max_points=max_points, source=source)


def _load_series(
    *, session: Session, run_ids: Sequence[int], key: str, max_points: int, source: SourceName
) -> list[SeriesResult]:
    run_ids = list(dict.fromkeys(run_ids))
    epoch_spec, metric_spec = _Spec("epoch", key), _Spec("metric", key)
    # per run: (spec, (count estimate, first x, last x)); metric counts are upper bounds (nulls)
    plan: dict[int, tuple[_Spec, tuple[int, int, int]]] = {}
    packed: dict[int, Arrays] = {}
    if source == "metric" or (source == "auto" and key not in EPOCH_COLUMNS):
        packed = {
            r: a for r, a in load_chunks(session=session, run_ids=run_ids, key=key).items() if len(a[0])
        }
        plan = {r: (metric_spec, (len(s), int(s[0]), int(s[-1]))) for r, (s, _) in packed.items()}
    if source == "epoch" or (source == "auto" and len(plan) < len(run_ids)):
        rest = [r for r in run_ids if r not in plan]
        plan |= {
            r: (epoch_spec, s) for r, s in _stats(session=session, spec=epoch_spec, run_ids=rest).items()
        }
    results: dict[int, tuple[int, list[Point]]] = {}
    if plan:
        lo = min(s[1] for _, s in plan.values())
        hi = max(s[2] for _, s in plan.values())
        width = bucket_width(lo, hi, bucket_count(max_points))
        runs = {r: (s[0], s[1]) for r, (sp, s) in plan.items() if sp is epoch_spec}
        if runs:
            results |= _series_for(
                session=session, spec=epoch_spec, runs=runs, max_points=max_points, lo=lo, width=width
            )
        for r, arrays in packed.items():
            xs, ys = finite(arrays)
            results[r] = (len(xs), downsample_arrays(xs, ys, max_points, lo=lo, width=width))
    default: Literal["epoch", "metric"] = "epoch" if source != "metric" else "metric"
    return [
        SeriesResult(
            run=r,
            source=plan[r][0].source if r in plan else default,
            total=results[r][0] if r in results else 0,
            points=results[r][1] if r in results else [],
        )
        for r in run_ids
    ]
