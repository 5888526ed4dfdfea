"""PyTorch Lightning: log scalars and per-epoch collapse statistics to collapsewatch.

    import collapsewatch.integrations.lightning as cwl

    logger = cwl.CollapsewatchLogger(project="my-ssl", config={"lr": 0.05})
    stats = cwl.CollapseStatsCallback(probe_x, layer="encoder")    # a fixed probe batch
    trainer = lightning.Trainer(max_epochs=20, logger=logger, callbacks=[stats])

:class:`CollapsewatchLogger` sends what ``self.log(...)`` records as scalars (keyed by global step),
merges hyperparameters into the run's config, and ends the run when ``fit`` ends (``succeeded`` or
``failed``). :class:`CollapseStatsCallback` runs the probe batch through the model after every training
epoch (eval mode, no gradients), captures the named layer's output with a forward hook and logs its
collapse statistics as epoch ``current_epoch + 1`` (the workers' numbering), with the epoch's logged
metrics. Both accept any ``cw.init`` option (``mode="offline"``, ``url=``, ...).

Works with ``lightning`` (``lightning.pytorch``) or, failing that, ``pytorch_lightning``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # pragma: no cover - the older distribution name
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
        from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment  # type: ignore[assignment]
        from pytorch_lightning.utilities import rank_zero_only
    except ImportError as exc:
        raise ImportError(
            "collapsewatch.integrations.lightning needs Lightning: pip install 'collapsewatch[lightning]'"
        ) from exc

from collapsewatch.contract import KEY_PATTERN
from collapsewatch.sdk.run import Run
from collapsewatch.sdk.start import init

__all__ = ["CollapseStatsCallback", "CollapsewatchLogger"]
_KEY = re.compile(KEY_PATTERN)
_BAD = re.compile(r"[^A-Za-z0-9_.\-/]")


def metric_key(name: str) -> str:
    """A Lightning metric name as a collapsewatch key (other characters become ``_``)."""
    key = _BAD.sub("_", name)[:128]
    return key if _KEY.match(key) else f"_{key}"[:128]


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The one-number entries of ``metrics`` (floats, ints, 0-d tensors), with collapsewatch keys."""
    found: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        found[metric_key(name)] = float(value)
    return found


class CollapsewatchLogger(Logger):
    """A Lightning logger writing to a collapsewatch run, created on first use with ``cw.init(project,
    config=..., name=..., tags=..., **init_options)``, or the ``run`` you pass (then you finish it)."""

    def __init__(
        self,
        project: str = "default",
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        run: Run | None = None,
        **init_options: Any,
    ) -> None:
        super().__init__()
        self._project = project
        self._init: dict[str, Any] = {"name": name, "tags": tags, **init_options}
        self._config: dict[str, Any] = dict(config or {})
        self._run = run
        self._owns_run = run is None

    @property
    def name(self) -> str:
        return self._project

    @property
    def version(self) -> str:
        run = self._run
        return "" if run is None or run.id is None else str(run.id)

    @property
    @rank_zero_experiment
    def experiment(self) -> Run:
        """The collapsewatch run (created now if it does not exist yet)."""
        if self._run is None:
            self._run = init(self._project, self._config, **self._init)
        return self._run

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | argparse.Namespace, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters (``save_hyperparameters()``) are merged into the run's config."""
        values = vars(params) if isinstance(params, argparse.Namespace) else dict(params)
        if self._run is None:
            self._config.update(values)
        else:
            self._run.update_config(values)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = scalars(metrics)
        if values:
            self.experiment.log(values, step=step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End of ``fit``: finish the run this logger started; flush one you passed in."""
        if self._run is None:
            return
        if self._owns_run:
            self._run.finish("succeeded" if status == "success" else "failed")
        else:
            self._run.flush()


class CollapseStatsCallback(pl.Callback):
    """After every ``every_n_epochs`` training epochs, the collapse statistics of ``layer``'s output
    (a dotted submodule name, e.g. ``"encoder"`` or ``"backbone.fc"``; None: the model's own output)
    on the fixed ``probe`` batch (a tensor, or a batch whose first element is the input), logged to
    ``run`` or to the trainer's :class:`CollapsewatchLogger`."""

    def __init__(
        self, probe: Any, layer: str | None = None, *, every_n_epochs: int = 1, run: Run | None = None
    ) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs: {every_n_epochs!r} must be >= 1")
        self.probe = probe[0] if isinstance(probe, list | tuple) else probe
        if not isinstance(self.probe, torch.Tensor):
            raise TypeError(
                f"probe: expected a tensor or a batch starting with one, got {type(probe).__name__}"
            )
        self.layer = layer
        self.every_n_epochs = every_n_epochs
        self.run = run

    def embeddings(self, pl_module: pl.LightningModule) -> torch.Tensor:
        """``layer``'s output on the probe batch (eval mode, no gradients), flattened to ``b x d``."""
        module = pl_module.get_submodule(self.layer) if self.layer else pl_module
        captured: list[Any] = []
        handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
        training = pl_module.training
        try:
            pl_module.eval()
            with torch.no_grad():
                pl_module(self.probe.to(pl_module.device))
        finally:
            handle.remove()
            pl_module.train(training)
        if not captured:
            raise RuntimeError(
                f"layer {self.layer!r} was not called by the model's forward on the probe batch"
            )
        out = captured[0][0] if isinstance(captured[0], tuple | list) else captured[0]
        return out.detach().flatten(1).cpu()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs or not trainer.is_global_zero:
            return
        run = self.run or self._logger_run(trainer)
        run.log_embeddings(self.embeddings(pl_module), epoch=epoch, metrics=scalars(trainer.callback_metrics))

    @staticmethod
    def _logger_run(trainer: pl.Trainer) -> Run:
        for logger in trainer.loggers:
            if isinstance(logger, CollapsewatchLogger):
                return logger.experiment
        raise RuntimeError("CollapseStatsCallback needs a CollapsewatchLogger on the trainer, or run=")
