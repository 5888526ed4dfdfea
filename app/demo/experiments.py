"""``collapsewatch demo``: the seed's three claims (plus the per-layer study) on digits, as sweeps.

Experiments (each one sweep; every run tagged ``demo``, ``demo:<batch>`` and its experiment key):

- ``claim-a`` SVMax raises s_mu and rho over the baseline: contrastive loss, s_mu on the held-out probe
  set against batch size, without and with SVMax (the compare page draws the upper bound U).
- ``claim-b`` recall@1 against the learning rate over a 100x grid, without and with SVMax, 5 seeds,
  each run trained until its validation recall@1 stops improving (``early_stop_patience``); the
  paper's claim is that SVMax's advantage grows with the learning rate (5 seeds: a large rate makes
  some baseline seeds fail, so fewer seeds leave the comparison to chance).
- ``claim-c`` VICReg with its variance term off (mu = 0) against mu = 25: the projector output's
  per-dimension std falls toward 0 and the embedding's RankMe falls (collapse) only without it.
- ``layers`` SVMax on the last layer only against every layer (``reg_layers``), statistics of every
  layer recorded (``stats_layers=all``).

``quick`` shrinks every grid (fewer seeds and epochs) to fit about two CPU minutes; the full demo
fits about fifteen on two cores. After the runs finish, :mod:`app.demo.findings` computes the
numbers and each experiment becomes a saved report whose notes state them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from app.demo.findings import LAYER_VIEW

BASE_SPEC: dict[str, Any] = {
    "dataset": "digits",
    "model": "mlp",
    "objective": "contrastive",
    "embedding_dim": 32,
    "reg_lambda": 1.0,
    "svmax_bounded": True,
    "optimizer": "sgd",
    "device": "auto",
    "probe_size": 512,
    "checkpoint_every": 5,
}
DEMO_TAG = "demo"
REPORT_PREFIX = "Demo"
BATCH_PREFIX = "demo:"


@dataclass(frozen=True)
class Experiment:
    key: str  # claim-a | claim-b | claim-c | layers
    title: str
    submit: dict[str, Any]
    view: dict[str, str]


def new_batch() -> str:
    """A short id naming one demo submission (its runs carry the tag ``demo:<batch>``)."""
    return secrets.token_hex(4)


def batch_tag(batch: str) -> str:
    return BATCH_PREFIX + batch


def experiments(*, quick: bool = False, project: str = "demo", batch: str = "") -> list[Experiment]:
    """The demo's sweeps (``quick``: the two-minute variant)."""
    tags = [DEMO_TAG, batch_tag(batch)] if batch else [DEMO_TAG]
    seeds2 = [0] if quick else [0, 1]

    def submit(
        key: str, name: str, spec: dict[str, Any], sweep: dict[str, list[Any]], seeds: list[int]
    ) -> dict[str, Any]:
        return {
            "project": project,
            "name": f"demo: {name}",
            "tags": [*tags, key],
            "spec": BASE_SPEC | spec,
            "sweep": sweep,
            "seeds": seeds,
        }

    claim_a = Experiment(
        key="claim-a",
        title="(a) SVMax raises the mean singular value s_mu and its position rho over the baseline",
        submit=submit(
            "claim-a",
            "s_mu vs batch size",
            {"epochs": 3 if quick else 8, "lr": 0.1},
            {"regularizer": ["none", "svmax"], "batch_size": [64, 256] if quick else [32, 128, 512]},
            seeds2,
        ),
        view={"stat": "mean_sv", "group": "regularizer,batch_size", "x": "batch_size", "metric": "mean_sv",
              "line": "regularizer"},
    )  # fmt: skip
    claim_b = Experiment(
        key="claim-b",
        title="(b) SVMax's recall@1 against the learning rate, trained to early stopping",
        submit=submit(
            "claim-b",
            "recall@1 vs lr",
            {"epochs": 12 if quick else 60, "batch_size": 64, "early_stop_patience": 2 if quick else 4},
            {"regularizer": ["none", "svmax"], "lr": [0.01, 1.0] if quick else [0.01, 0.1, 1.0]},
            [0, 1] if quick else [0, 1, 2, 3, 4],
        ),
        view={"stat": "recall_at_1", "group": "regularizer,lr", "x": "lr", "metric": "best_recall_at_1",
              "line": "regularizer"},
    )  # fmt: skip
    claim_c = Experiment(
        key="claim-c",
        title="(c) VICReg without its variance term (mu = 0) collapses, with it (mu = 25) it does not",
        submit=submit(
            "claim-c",
            "VICReg mu=0 vs mu=25",
            {"objective": "vicreg", "epochs": 5 if quick else 15, "lr": 0.05, "batch_size": 128,
             "stats_layers": "projector"},
            {"vicreg_std_coeff": [0.0, 25.0]},
            seeds2,
        ),
        view={"stat": "effective_rank", "group": "vicreg_std_coeff", "x": "vicreg_std_coeff",
              "metric": "effective_rank", "line": "objective"},
    )  # fmt: skip
    layers = Experiment(
        key="layers",
        title="Per-layer collapse: SVMax on the last layer vs on every layer",
        submit=submit(
            "layers",
            "SVMax last layer vs every layer",
            {"regularizer": "svmax", "epochs": 3 if quick else 10, "lr": 0.1, "batch_size": 64,
             "stats_layers": "all"},
            {"reg_layers": ["embedding", "all"]},
            seeds2,
        ),
        view={"stat": "sv_position", "group": "reg_layers", "layer": LAYER_VIEW, "metric": "sv_position",
              "line": "reg_layers"},
    )  # fmt: skip
    return [claim_a, claim_b, claim_c, layers]


def run_count(items: list[Experiment]) -> int:
    """How many runs the experiments make (grid x seeds)."""
    total = 0
    for item in items:
        grid = 1
        for values in item.submit["sweep"].values():
            grid *= len(values)
        total += grid * len(item.submit["seeds"])
    return total


def view_query(sweep_id: str, view: dict[str, str]) -> str:
    """The compare page's query string for one experiment's sweep."""
    return urlencode({"sweep": sweep_id} | view)


def compare_url(base_url: str, sweep_id: str, view: dict[str, str]) -> str:
    return f"{base_url.rstrip('/')}/compare?" + view_query(sweep_id, view)


def report_title(batch: str, experiment: Experiment) -> str:
    """The title of one experiment's report (it names the batch, so the reports are found again)."""
    return f"{REPORT_PREFIX} {batch}: {experiment.title}"[:200]
