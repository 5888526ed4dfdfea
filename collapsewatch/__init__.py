"""collapsewatch: log collapse statistics (SVMax, VICReg, RankMe) from your own training loop.

    import collapsewatch as cw

    with cw.init(project="my-ssl", config={"lr": 0.05}) as run:
        for epoch in range(1, 21):
            run.log({"loss": train_one_epoch()}, step=epoch)
            run.log_embeddings(model(probe_x), epoch=epoch)

``cw.stats`` and ``cw.regularizers`` hold the math (torch is imported only when they are used).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from collapsewatch._version import __version__
from collapsewatch.sdk import Client, Run, init

__all__ = ["Client", "Run", "__version__", "init", "regularizers", "stats"]


def __getattr__(name: str) -> Any:
    """``cw.stats`` / ``cw.regularizers`` on first use (they import torch)."""
    if name in ("stats", "regularizers"):
        return import_module(f"collapsewatch.{name}")
    raise AttributeError(f"module 'collapsewatch' has no attribute {name!r}")
