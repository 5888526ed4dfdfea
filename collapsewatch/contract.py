"""The wire contract shared by the server, the workers and the SDK (DESIGN.md §5).

Pydantic only: importable without FastAPI, SQLAlchemy or torch. Flat keys, so that forms, sweeps and
"group by" all speak the same names. Classes are named by direction: ``*In`` / ``*Create`` travel to
the server, ``*Public`` come back from it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from collapsewatch.contract_reads import MAX_ATTEMPT as MAX_ATTEMPT  # re-exported
from collapsewatch.contract_reads import Attempt
from collapsewatch.layers import HELP, MAX_LAYERS, LayerList, LayerName

Dataset = Literal["digits", "gaussians", "npz"]
ModelName = Literal["mlp", "cnn"]
Objective = Literal["cross_entropy", "contrastive", "triplet", "vicreg"]
Regularizer = Literal["none", "svmax", "vicreg_variance"]
Optimizer = Literal["sgd", "adam"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "lost", "crashed"]
FinalStatus = Literal["succeeded", "failed", "cancelled"]

TASK_NAME = "train_run"
"""The Celery task the server sends by name with a run id (DESIGN.md §2); workers register it."""
QUEUE_CLASSES: tuple[str, ...] = ("cpu", "gpu", "default")
"""Queues by device class: device "cpu" -> ``cpu``, "cuda"/"cuda:N" -> ``gpu``, "auto" -> ``default``."""

TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "crashed"})
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,2})$")
KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}$"
MAX_TAG_LENGTH = 64
TAG_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no NUL or control characters (PostgreSQL's jsonb refuses \u0000)
Tag = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TAG_LENGTH,
        pattern=TAG_PATTERN,
        description="a label, 1-64 characters, no control characters",
    ),
]
MAX_SWEEP_RUNS = 256
DATA_PATH_REFUSED = "refused: upload the .npz as a dataset (POST /api/v1/datasets) and set dataset_id"
MAX_METRIC_POINTS = 1000


class JobSpec(BaseModel):
    """Everything a training job needs; the defaults are DESIGN.md §5's (npz: a dataset_id, never a path)."""

    model_config = ConfigDict(extra="forbid")

    dataset: Dataset = "digits"
    dataset_id: int | None = Field(None, ge=1, le=2**31 - 1, description="npz: a dataset of the project")
    data_path: None = Field(None, exclude=True, description="refused: jobs name a dataset_id, not a file")
    model: ModelName = "mlp"
    embedding_dim: int = Field(32, ge=1, le=8192)
    objective: Objective = "cross_entropy"
    regularizer: Regularizer = "none"
    reg_lambda: float = Field(1.0, ge=0.0, le=1e4)
    svmax_bounded: bool = True
    vicreg_gamma: float = Field(1.0, gt=0.0, le=1e3)
    lr: float = Field(0.05, gt=0.0, le=10.0)
    batch_size: int = Field(128, ge=2, le=65536)
    epochs: int = Field(20, ge=1, le=10000)
    optimizer: Optimizer = "sgd"
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    probe_size: int = Field(512, ge=2, le=100_000)
    device: str = "auto"
    # Extensions beyond §5's list (same flat style).
    margin: float = Field(0.5, gt=0.0, le=10.0, description="contrastive / triplet margin")
    vicreg_sim_coeff: float = Field(25.0, ge=0.0, le=1e4, description="VICReg lambda (objective=vicreg)")
    vicreg_std_coeff: float = Field(25.0, ge=0.0, le=1e4, description="VICReg mu (objective=vicreg)")
    vicreg_cov_coeff: float = Field(1.0, ge=0.0, le=1e4, description="VICReg nu (objective=vicreg)")
    dead_threshold: float = Field(1e-3, gt=0.0, le=1.0)
    checkpoint_every: int = Field(1, ge=1, le=10000, description="epochs between checkpoints")
    stats_layers: LayerList = Field("", description=HELP["stats_layers"])  # see collapsewatch.layers
    reg_layers: LayerList = Field("", description=HELP["reg_layers"])
    early_stop_patience: int = Field(0, ge=0, le=10000, description=HELP["early_stop_patience"])

    @field_validator("reg_lambda", "vicreg_gamma", "lr", "weight_decay", "margin")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return value

    @field_validator("dataset_id", "data_path", mode="before")
    @classmethod
    def _dataset_file(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "data_path" and value is not None:  # null: configs stored before datasets
            raise ValueError(DATA_PATH_REFUSED)
        if value is not None and info.data.get("dataset", "npz") != "npz":
            raise ValueError("only allowed when dataset is 'npz'")
        return value


class JobSubmit(BaseModel):
    """``POST /api/v1/jobs``: one run per grid point x seed, sharing a sweep id."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    name: str | None = Field(None, max_length=200)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    spec: dict[str, Any] = Field(default_factory=dict)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | None = Field(None, min_length=1, max_length=64)

    def expand(self) -> list[JobSpec]:
        """The validated grid. Raises ``ValueError`` naming the field for a bad key or value."""
        import itertools

        base = JobSpec.model_validate(self.spec)
        for key, values in self.sweep.items():
            if key not in JobSpec.model_fields:
                raise ValueError(f"sweep.{key}: unknown spec key; allowed: {sorted(JobSpec.model_fields)}")
            if not values:
                raise ValueError(f"sweep.{key}: needs at least one value")
        seeds = self.seeds if self.seeds is not None else [base.seed]
        keys = list(self.sweep)
        total = len(seeds) * math.prod(len(v) for v in self.sweep.values())
        if total > MAX_SWEEP_RUNS:
            raise ValueError(f"sweep: {total} runs requested; at most {MAX_SWEEP_RUNS} per submission")
        specs: list[JobSpec] = []
        for combo in itertools.product(*(self.sweep[k] for k in keys)):
            for seed in seeds:
                data = base.model_dump() | dict(zip(keys, combo, strict=True)) | {"seed": seed}
                specs.append(JobSpec.model_validate(data))
        return specs


class RunCreate(BaseModel):
    """``POST /api/v1/runs``: a run logged by the SDK from the user's own loop."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field("default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    name: str | None = Field(None, max_length=200)
    config: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    client_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{7,63}$")  # repeat: same run
    provenance: dict[str, Any] | None = None  # git commit + dirty, command, versions, host


class WorkerInfo(BaseModel):
    """Where an attempt ran (sent with the claim)."""

    model_config = ConfigDict(extra="allow")

    host: str | None = None
    device: str | None = None
    device_name: str | None = None
    torch: str | None = None
    cuda: str | None = None
    pid: int | None = None


class RunPublic(BaseModel):
    id: int
    project: str
    name: str | None
    kind: Literal["job", "sdk"]
    status: RunStatus
    attempt: int
    max_attempts: int
    config: dict[str, Any]
    tags: list[str]
    sweep_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_until: datetime | None
    cancel_requested: bool
    error: str | None
    worker: dict[str, Any] | None
    summary: dict[str, Any]
    last_epoch: int | None
    provenance: dict[str, Any] | None = None  # SDK runs, in one-run answers (not in lists)
    lease_seconds: int | None = None  # SDK runs' create / resume answers: heartbeat well within it
    archived_at: datetime | None = None  # archived: hidden from lists until unarchived
    deleted_at: datetime | None = None  # in the trash: purged after the retention period


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: WorkerInfo = Field(default_factory=WorkerInfo)


class ClaimPublic(BaseModel):
    run: RunPublic
    attempt: int
    lease_until: datetime
    spec: JobSpec
    resume_epoch: int | None = Field(None, description="epoch of the newest stored checkpoint, if any")
    lease_seconds: float | None = Field(
        None, description="the lease granted; pace heartbeats by it (a worker's clock may be skewed)"
    )


class AttemptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: Attempt


class HeartbeatPublic(BaseModel):
    lease_until: datetime
    cancel_requested: bool


class FinishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: Attempt
    status: FinalStatus
    error: str | None = Field(None, max_length=20_000)


class StdHist(BaseModel):
    """Histogram of ``dim_std``: ``counts[i]`` dimensions have ``edges[i] <= std < edges[i+1]`` (the
    first and last bins also hold values below and above the edges). Any strictly increasing, finite
    edges are accepted; ``collapse_stats`` declares ``collapsewatch.stats.DEFAULT_HIST_EDGES`` (65
    edges: a [0, 1e-4) bin, then 63 log-spaced bins up to 4), older runs the even bins of [0, 2]."""

    model_config = ConfigDict(extra="forbid")

    edges: list[float] = Field(..., min_length=2, max_length=1025)
    counts: list[int] = Field(..., min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _shape(self) -> StdHist:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("edges must have exactly one more entry than counts")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must be strictly increasing")
        if any(c < 0 for c in self.counts):
            raise ValueError("counts must be non-negative")
        return self


def _all_finite(values: list[float], name: str) -> list[float]:
    if math.isfinite(sum(values)):  # a NaN or an infinity makes the sum NaN or infinite (C speed)
        return values
    for i, v in enumerate(values):  # which one (or none: finite values whose sum overflowed)
        if not math.isfinite(v):
            raise ValueError(f"{name}[{i}] is {v}; only finite numbers are accepted")
    return values


class CollapseStatsIn(BaseModel):
    """The ``collapse_stats`` dict of DESIGN.md §3. All values finite."""

    model_config = ConfigDict(extra="forbid")

    mean_sv: float
    sv_lower: float
    sv_upper: float
    sv_position: float
    singular_values: list[float] = Field(..., max_length=8192)
    effective_rank: float
    dim_std: list[float] = Field(..., max_length=8192)
    std_hist: StdHist
    dead_dims: int = Field(..., ge=0)
    cov_offdiag: float
    l2_std: float

    @field_validator(
        "mean_sv", "sv_lower", "sv_upper", "sv_position", "effective_rank", "cov_offdiag", "l2_std"
    )
    @classmethod
    def _finite_scalar(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"{value} is not finite; only finite numbers are accepted")
        return value

    @field_validator("singular_values", "dim_std", "std_hist")
    @classmethod
    def _finite_lists(cls, value: Any, info: Any) -> Any:
        if isinstance(value, list):
            return _all_finite(value, info.field_name)
        if isinstance(value, StdHist):
            _all_finite(value.edges, "std_hist.edges")
        return value


class EpochIn(BaseModel):
    """``PUT /api/v1/runs/{id}/epochs/{epoch}``. Metric values: finite numbers or null (null = not
    finite / not available; the SDK sends NaN and +-Inf as null)."""

    model_config = ConfigDict(extra="forbid")

    attempt: Attempt
    metrics: dict[str, float | None] = Field(default_factory=dict, max_length=256)
    stats: CollapseStatsIn | None = None
    layers: dict[LayerName, CollapseStatsIn] = Field(default_factory=dict, max_length=MAX_LAYERS)

    @field_validator("metrics")
    @classmethod
    def _metric_keys(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for key, v in value.items():
            if not re.match(KEY_PATTERN, key):
                raise ValueError(f"metrics key {key!r} must match {KEY_PATTERN}")
            if v is not None and not math.isfinite(v):
                raise ValueError(f"metrics.{key} is {v}; send a finite number, or null")
        return value


class EpochPublic(BaseModel):
    epoch: int
    attempt: int
    metrics: dict[str, float | None]
    stats: CollapseStatsIn | None
    recorded_at: datetime
    layers: dict[str, CollapseStatsIn] = Field(default_factory=dict)  # {layer: stats}; empty if none


class MetricPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(..., pattern=KEY_PATTERN)
    step: int = Field(..., ge=0, le=2**53)
    value: float = Field(..., allow_inf_nan=False)  # checked in pydantic-core: ~1000 points per batch


class MetricBatchIn(BaseModel):
    """``POST /api/v1/runs/{id}/metrics``: at most 1000 points per call."""

    model_config = ConfigDict(extra="forbid")

    attempt: Attempt
    points: list[MetricPoint] = Field(..., min_length=1, max_length=MAX_METRIC_POINTS)


# The server's answers about series and log lines, and the log batch body, live in contract_reads.py,
# re-exported here so that one import serves every wire model.
from collapsewatch.contract_reads import LogBatchIn as LogBatchIn  # noqa: E402
from collapsewatch.contract_reads import LogLinePublic as LogLinePublic  # noqa: E402
from collapsewatch.contract_reads import MetricBatchPublic as MetricBatchPublic  # noqa: E402
from collapsewatch.contract_reads import SeriesPoint as SeriesPoint  # noqa: E402
from collapsewatch.contract_reads import SeriesPublic as SeriesPublic  # noqa: E402
