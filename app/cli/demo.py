"""``collapsewatch demo``: the seed's two experiments on digits, submitted as sweeps through the API.

1. Mean singular value s_mu (on the held-out probe set) against batch size, without and with SVMax,
   contrastive loss; the compare page draws the upper bound U as a line (SVMax runs should sit higher).
2. recall@1 against learning rate, without and with SVMax, contrastive loss (the gap should widen
   at large learning rates).

Both are small enough for a few CPU minutes; the command prints the compare-page URL of each, then
follows the runs with a progress bar until they end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

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
}


@dataclass(frozen=True)
class Experiment:
    title: str
    submit: dict[str, Any]
    view: dict[str, str]


def experiments(*, epochs: int = 5, seeds: int = 2, project: str = "demo") -> list[Experiment]:
    seed_list = list(range(seeds))
    by_batch = Experiment(
        title="Mean singular value vs batch size, with and without SVMax (contrastive)",
        submit={
            "project": project,
            "name": "demo: s_mu vs batch size",
            "tags": ["demo", "batch-size"],
            "spec": BASE_SPEC | {"epochs": epochs, "lr": 0.05},
            "sweep": {"regularizer": ["none", "svmax"], "batch_size": [16, 64, 256]},
            "seeds": seed_list,
        },
        view={
            "stat": "mean_sv",
            "group": "regularizer,batch_size",
            "x": "batch_size",
            "metric": "mean_sv",
            "line": "regularizer",
        },
    )
    by_lr = Experiment(
        title="recall@1 vs learning rate, with and without SVMax (contrastive)",
        submit={
            "project": project,
            "name": "demo: recall@1 vs lr",
            "tags": ["demo", "learning-rate"],
            "spec": BASE_SPEC | {"epochs": epochs, "batch_size": 64},
            "sweep": {"regularizer": ["none", "svmax"], "lr": [0.001, 0.01, 0.1, 0.5]},
            "seeds": seed_list,
        },
        view={
            "stat": "recall_at_1",
            "group": "regularizer,lr",
            "x": "lr",
            "metric": "best_recall_at_1",
            "line": "regularizer",
        },
    )
    return [by_batch, by_lr]


def compare_url(base_url: str, sweep_id: str, view: dict[str, str]) -> str:
    return f"{base_url.rstrip('/')}/compare?" + urlencode({"sweep": sweep_id} | view)


def submit_all(
    *, base_url: str, token: str, items: list[Experiment], timeout: float = 30.0
) -> list[tuple[Experiment, str, int]]:
    """POST each experiment to ``/api/v1/jobs``; returns (experiment, sweep id, run count)."""
    import httpx

    done: list[tuple[Experiment, str, int]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout) as client:
        for item in items:
            response = client.post("/api/v1/jobs", json=item.submit)
            if response.status_code != 201:
                raise RuntimeError(
                    f"{item.title}: the server answered {response.status_code}: {response.text}"
                )
            created = response.json()
            done.append((item, str(created[0]["sweep_id"]), len(created)))
    return done


def follow(
    *, base_url: str, token: str, sweeps: list[str], poll_s: float = 2.0, timeout: float = 30.0
) -> dict[str, int]:
    """Poll the sweeps' runs with a progress bar (runs ended / all) until every run has ended;
    returns ``{status: count}`` of the ended runs."""
    import time

    import httpx
    from tqdm import tqdm

    from collapsewatch.contract import TERMINAL_STATUSES

    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout) as client,
        tqdm(desc="demo runs", unit="run", total=0, dynamic_ncols=True) as bar,
    ):
        while True:
            statuses: list[str] = []
            for sweep in sweeps:
                response = client.get("/api/v1/runs", params={"sweep": sweep, "limit": 500})
                response.raise_for_status()
                statuses += [str(run["status"]) for run in response.json()]
            ended = [status for status in statuses if status in TERMINAL_STATUSES]
            bar.total = len(statuses)
            bar.n = len(ended)
            bar.set_postfix(running=statuses.count("running"), queued=statuses.count("queued"))
            bar.refresh()
            if statuses and len(ended) == len(statuses):
                return {status: ended.count(status) for status in sorted(set(ended))}
            time.sleep(poll_s)


def local_token() -> str:
    """A new user token for the local admin, written straight to the configured database (the
    embedded set-up: the same machine and settings as ``collapsewatch up``)."""
    from app.auth.api_tokens import create_token, ensure_admin
    from app.cli.common import reaching_database
    from app.db import Database
    from app.migrate import upgrade
    from app.settings import get_settings

    settings = get_settings()
    db = Database(settings)
    try:
        with reaching_database(settings):
            upgrade(db.engine)
            with db.transaction() as session:
                admin = ensure_admin(session=session, email=settings.admin_email)
                return create_token(session=session, user=admin, name="demo").token
    finally:
        db.dispose()
