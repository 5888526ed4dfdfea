"""The training loop: one job spec in, one :class:`EpochRecord` per epoch out (through ``on_epoch``).

No HTTP here: the queue worker wires ``on_epoch``, ``should_stop`` and ``checkpoint`` to the server;
the CLI wires them to JSON lines and a file.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from collapsewatch.contract import JobSpec
from collapsewatch.layers import spec_layers
from worker.training import checkpoint as ckpt
from worker.training.checkpoint import CheckpointIO
from worker.training.data import DataSource, Splits, load_splits
from worker.training.device import device_info, resolve_device
from worker.training.evaluate import evaluate
from worker.training.models import Network, build_model
from worker.training.objectives import layers_regularizer, objective_loss
from worker.training.records import EpochRecord

SGD_MOMENTUM = 0.9
# Keys that may differ between the run that wrote a checkpoint and the one resuming from it.
RESUMABLE_CHANGES = frozenset({"epochs", "device", "checkpoint_every", "stats_layers"})
EARLY_STOP_METRIC = "recall_at_1"


class TrainingDiverged(RuntimeError):
    """The loss or the embeddings became NaN/Inf; the epoch's record was already handed out."""


@dataclass
class TrainResult:
    records: list[EpochRecord]  # the epochs run by this call (after ``start_epoch``)
    start_epoch: int  # 1-based first epoch this call ran (k + 1 after resuming from epoch k)
    last_epoch: int  # the last finished epoch (0 if none)
    stopped: bool  # True when ``should_stop`` ended the run early
    device: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    early_stopped: bool = False  # True when validation recall@1 stopped improving (a normal end)


@dataclass
class EarlyStop:
    """Validation recall@1 patience: ``bad`` epochs in a row without beating ``best``."""

    patience: int
    best: float | None = None
    best_epoch: int = 0
    bad: int = 0

    def update(self, epoch: int, value: float | None) -> None:
        if value is not None and (self.best is None or value > self.best):
            self.best, self.best_epoch, self.bad = value, epoch, 0
        else:
            self.bad += 1

    @property
    def done(self) -> bool:
        return self.patience > 0 and self.bad >= self.patience

    def state(self) -> dict[str, Any]:
        return {
            "best": -1.0 if self.best is None else self.best,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
        }

    def restore(self, state: dict[str, Any]) -> None:
        best = float(state.get("best", -1.0))
        self.best = None if best < 0 else best
        self.best_epoch, self.bad = int(state.get("best_epoch", 0)), int(state.get("bad", 0))


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; return the CPU generator used for shuffling and augmentation."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(spec: JobSpec, model: Network) -> torch.optim.Optimizer:
    """SGD (momentum :data:`SGD_MOMENTUM`) or Adam, constant learning rate ``spec.lr``."""
    if spec.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=spec.lr, momentum=SGD_MOMENTUM, weight_decay=spec.weight_decay
    )


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A seeded shuffle cut into batches; a last batch of one row is dropped (batch statistics need 2)."""
    order = torch.randperm(n, generator=generator)
    parts = list(order.split(batch_size))
    return [p for p in parts if len(p) >= 2]


def train_epoch(
    spec: JobSpec,
    model: Network,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    generator: torch.Generator,
) -> tuple[dict[str, float], bool]:
    """One pass over the shuffled training rows: (row-weighted mean of each loss term, diverged).

    The regularizer applies to each layer of ``spec.reg_layers`` (the embedding when empty); with
    more than one layer each layer's term is also recorded as ``reg_loss/<layer>``.
    Stops at the first batch whose loss or regularized outputs are not finite (then ``train_loss``
    is NaN)."""
    model.train()
    sums: dict[str, float] = {}
    seen = 0
    _, reg_names = spec_layers(spec)
    if spec.regularizer == "none":
        reg_names = ["embedding"]  # nothing to regularize: no hooks
    hooked = [name for name in reg_names if name != "embedding"]
    for idx in batches(len(x_train), spec.batch_size, generator):
        idx = idx.to(x_train.device)
        with model.capture(hooked) as captured:
            loss, embedding, parts = objective_loss(spec, model, x_train[idx], y_train[idx], generator)
        outputs = {n: embedding if n == "embedding" else torch.cat(captured[n]) for n in reg_names}
        finite = all(bool(torch.isfinite(e).all()) for e in (embedding, *outputs.values()))
        reg, per_layer = layers_regularizer(spec, outputs) if finite else (None, {})
        total = loss if reg is None else loss + reg
        if not bool(torch.isfinite(total)) or not finite:
            return {"train_loss": float("nan")}, True
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        terms = {"train_loss": total, "objective_loss": loss, **parts}
        if reg is not None:
            terms["reg_loss"] = reg
            if len(per_layer) > 1:
                terms |= {f"reg_loss/{name}": term for name, term in per_layer.items()}
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * len(idx)
        seen += len(idx)
    return {key: value / max(seen, 1) for key, value in sums.items()}, False


def _tensors(splits: Splits, device: torch.device) -> dict[str, torch.Tensor]:
    names = ("x_train", "y_train", "x_val", "y_val", "x_probe")
    return {name: torch.from_numpy(getattr(splits, name)).to(device) for name in names}


def _check_resume(state: dict[str, Any], spec: JobSpec) -> int:
    stored = state["spec"]
    # a key the checkpoint's writer did not know yet had its default then
    changed = sorted(
        k
        for k, v in spec.model_dump().items()
        if k not in RESUMABLE_CHANGES and stored.get(k, JobSpec.model_fields[k].default) != v
    )
    if changed:
        raise ValueError(f"resume: the checkpoint was written with different settings for {changed}")
    epoch = int(state["epoch"])
    if epoch > spec.epochs:
        raise ValueError(f"resume: the checkpoint is at epoch {epoch}, past epochs={spec.epochs}")
    return epoch


def train(
    spec: JobSpec,
    *,
    on_epoch: Callable[[EpochRecord], None],
    should_stop: Callable[[], bool] | None = None,
    checkpoint: CheckpointIO | None = None,
    resume: bytes | None = None,
    device: str | None = None,
    data_file: DataSource | None = None,
) -> TrainResult:
    """Train ``spec`` for ``spec.epochs`` epochs (continuing after the checkpoint ``resume`` if given).

    Each epoch: ``should_stop()`` (True ends the run cooperatively, ``stopped=True``), one pass over the
    training rows, evaluation, ``on_epoch(record)``, then a checkpoint every ``spec.checkpoint_every``
    epochs and after the last one (and after the last finished epoch when stopped). With
    ``spec.early_stop_patience`` = p > 0 the run ends (``early_stopped=True``, a normal end) after p
    epochs in a row without a better validation recall@1, checkpointed there. ``device``
    overrides ``spec.device``; ``data_file`` is the .npz of ``dataset="npz"`` (a path or an open file).
    Data and device problems raise ``ValueError`` (``DataError``) before the first step; a NaN/Inf
    loss raises :class:`TrainingDiverged` after its epoch's record.
    """
    # --- setup: data, device, seeds, model, optimizer, then the checkpoint if resuming ---
    splits = load_splits(spec, data_file)
    dev = resolve_device(device or spec.device)
    generator = seed_everything(spec.seed)
    model = build_model(spec, splits.input_shape, splits.n_classes).to(dev)
    optimizer = make_optimizer(spec, model)
    start = 1
    stats_layers, _ = spec_layers(spec)
    early = EarlyStop(spec.early_stop_patience)
    if resume is not None:
        state = ckpt.load(resume)
        start = _check_resume(state, spec) + 1
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"], generator)
        early.restore(state.get("extra", {}).get("early_stop", {}))
    data = _tensors(splits, dev)
    result = TrainResult([], start, start - 1, False, device_info(dev), list(splits.notes))

    def save(epoch: int) -> None:
        if checkpoint is not None:
            state_bytes = ckpt.dump(
                epoch=epoch,
                spec=spec.model_dump(),
                model=model,
                optimizer=optimizer,
                generator=generator,
                extra={"early_stop": early.state()},
            )
            checkpoint.save(epoch, state_bytes)

    for epoch in range(start, spec.epochs + 1):
        if early.done:  # resumed from the checkpoint written where it stopped
            result.early_stopped = True
            break
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        # --- train one epoch ---
        began = time.perf_counter()
        losses, diverged = train_epoch(spec, model, optimizer, data["x_train"], data["y_train"], generator)
        # --- evaluate on validation and the fixed probe set ---
        eval_began = time.perf_counter()
        scores = evaluate(
            model, data, splits.n_classes, dead_threshold=spec.dead_threshold, stats_layers=stats_layers
        )
        metrics: dict[str, float | None] = {"train_loss": None, "reg_loss": None, **losses}
        metrics |= {
            "val_acc": scores.val_acc,
            "knn_acc": scores.knn_acc,
            "recall_at_1": scores.recall_at_1,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "seconds": time.perf_counter() - began,
            "eval_seconds": time.perf_counter() - eval_began,
        }
        record = EpochRecord(epoch=epoch, metrics=metrics, stats=scores.stats, layers=scores.layers)
        # --- hand the record out, then checkpoint (a crash in between replays this epoch) ---
        on_epoch(record)
        result.records.append(record)
        if diverged:
            raise TrainingDiverged(
                f"training diverged in epoch {epoch}: the loss or the embeddings became NaN/Inf "
                f"(lr={spec.lr}, optimizer={spec.optimizer}); lower lr or add a regularizer"
            )
        result.last_epoch = epoch
        early.update(epoch, getattr(scores, EARLY_STOP_METRIC))
        if early.done:
            result.early_stopped = True
            result.notes.append(
                f"early stop after epoch {epoch}: validation recall@1 peaked at {early.best} in epoch "
                f"{early.best_epoch}, no better in the {early.patience} epochs since"
            )
            save(epoch)
            break
        if epoch % spec.checkpoint_every == 0 or epoch == spec.epochs:
            save(epoch)
    if result.stopped and result.last_epoch >= start and result.last_epoch % spec.checkpoint_every:
        save(result.last_epoch)
    return result
