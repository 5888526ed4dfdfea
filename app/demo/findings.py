"""The demo's numbers: from the finished runs of each experiment to a verdict and report notes.

Pure functions over :class:`RunResult` (a run's config, summary and final epoch record), so the
``collapsewatch demo`` command (which reads them over the HTTP API) and the browser's "Reproduce the
paper" button (which reads them from the database) compute the same notes.
"""

# The notes are Markdown for people: they write rho, s-bar and the times sign in Unicode, as the pages do.
# ruff: noqa: RUF001

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

LAYER_VIEW = "fc2"
"""The hidden layer whose curves the per-layer report's chart shows (its compare view's ``layer=``)."""


@dataclass(frozen=True)
class RunResult:
    id: int
    status: str
    config: dict[str, Any]
    summary: dict[str, Any]
    last_epoch: int | None
    stats: dict[str, Any] | None  # the final epoch's default statistics
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # the final epoch's per-layer ones

    @classmethod
    def from_wire(cls, run: dict[str, Any], final: dict[str, Any] | None) -> RunResult:
        """From ``RunPublic`` and the final ``EpochPublic`` as JSON dicts."""
        return cls(
            id=int(run["id"]),
            status=str(run["status"]),
            config=dict(run.get("config") or {}),
            summary=dict(run.get("summary") or {}),
            last_epoch=run.get("last_epoch"),
            stats=(final or {}).get("stats"),
            layers=dict((final or {}).get("layers") or {}),
        )


@dataclass(frozen=True)
class Finding:
    key: str
    holds: bool | None  # None: a study, not a claim
    verdict: str
    notes: str  # Markdown
    numbers: dict[str, Any]


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        if self.n == 0:
            return "—"
        whole = self.mean.is_integer() and self.std.is_integer()  # counts (dead dimensions)
        mean = f"{self.mean:.0f}" if whole else f"{self.mean:.3f}"
        return f"{mean} ± {self.std:.3f}" if self.n > 1 and not (whole and self.std == 0) else mean

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n else math.inf


def summarize(values: Iterable[float | None]) -> Summary:
    found = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not found:
        return Summary(math.nan, math.nan, 0)
    return Summary(statistics.fmean(found), statistics.stdev(found) if len(found) > 1 else 0.0, len(found))


def _by(runs: Sequence[RunResult], key: str) -> dict[Any, list[RunResult]]:
    groups: dict[Any, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.config.get(key), []).append(run)
    return dict(sorted(groups.items(), key=lambda kv: (str(type(kv[0])), kv[0] if kv[0] is not None else 0)))


def _stat(name: str) -> Callable[[RunResult], float | None]:
    return lambda run: (run.stats or {}).get(name)


def _median_std(stats: dict[str, Any] | None) -> float | None:
    values = (stats or {}).get("dim_std")
    return statistics.median(values) if values else None


def _setup(runs: Sequence[RunResult], swept: str) -> str:
    seeds = sorted({int(r.config.get("seed") or 0) for r in runs})
    failed = [r.id for r in runs if r.status != "succeeded"]
    seed_list = ", ".join(map(str, seeds))
    text = f"{len(runs)} runs ({swept}; seeds {seed_list}), digits, MLP, d = {_cfg(runs, 'embedding_dim')}."
    if failed:
        text += f" Not succeeded: runs {', '.join(map(str, failed))} (their last recorded numbers are used)."
    return text


def _cfg(runs: Sequence[RunResult], key: str) -> Any:
    values = sorted({str(r.config.get(key)) for r in runs})
    return values[0] if len(values) == 1 else "/".join(values)


def claim_a(runs: Sequence[RunResult]) -> Finding:
    """SVMax raises s_mu and rho over the baseline (at every batch size)."""
    rows, numbers, wins = [], {}, []
    for bs, group in _by(runs, "batch_size").items():
        base = [r for r in group if r.config.get("regularizer") == "none"]
        svm = [r for r in group if r.config.get("regularizer") == "svmax"]
        s0, s1 = summarize(map(_stat("mean_sv"), base)), summarize(map(_stat("mean_sv"), svm))
        r0, r1 = summarize(map(_stat("sv_position"), base)), summarize(map(_stat("sv_position"), svm))
        upper = summarize(map(_stat("sv_upper"), group))
        wins.append(s1.mean > s0.mean and r1.mean > r0.mean)
        numbers[str(bs)] = {"baseline_mean_sv": s0.mean, "svmax_mean_sv": s1.mean,
                            "baseline_rho": r0.mean, "svmax_rho": r1.mean, "upper": upper.mean}  # fmt: skip
        rows.append(f"| {bs} | {s0} | {s1} | {r0} | {r1} | {upper.mean:.3f} |")
    holds = bool(wins) and all(wins)
    verdict = (
        "SVMax raises s̄ and ρ over the baseline at every batch size: the claim holds."
        if holds
        else "SVMax does not raise s̄ and ρ at every batch size here: the claim does not hold in these runs."
    )
    notes = "\n".join([
        "**Claim (a)** (Taha et al. 2021): SVMax spreads the embedding, so its mean singular value s̄ "
        "(and its position ρ in [L, U]) sits above the baseline's.",
        "",
        f"Setup: {_setup(runs, 'regularizer none/svmax × batch size')} Contrastive loss, lr "
        f"{_cfg(runs, 'lr')}, {_cfg(runs, 'epochs')} epochs; statistics of the final epoch on the "
        f"held-out probe set (mean ± std over seeds).",
        "",
        "| batch size | baseline s̄ | SVMax s̄ | baseline ρ | SVMax ρ | U (upper bound) |",
        "|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"**Verdict:** {verdict}",
    ])  # fmt: skip
    return Finding("claim-a", holds, verdict, notes, numbers)


def claim_b(runs: Sequence[RunResult]) -> Finding:
    """recall@1 vs lr: does SVMax's advantage grow with the learning rate?"""
    rows, lrs, gaps, ses, numbers = [], [], [], [], {}
    for lr, group in _by(runs, "lr").items():
        base = [r for r in group if r.config.get("regularizer") == "none"]
        svm = [r for r in group if r.config.get("regularizer") == "svmax"]
        b = summarize(r.summary.get("best_recall_at_1") for r in base)
        s = summarize(r.summary.get("best_recall_at_1") for r in svm)
        eb, es = summarize(r.last_epoch for r in base), summarize(r.last_epoch for r in svm)
        gap = s.mean - b.mean
        lrs.append(lr)
        gaps.append(gap)
        ses.append(math.hypot(b.se, s.se))
        numbers[str(lr)] = {"baseline": b.mean, "svmax": s.mean, "gap": gap, "baseline_std": b.std,
                            "svmax_std": s.std, "n": min(b.n, s.n)}  # fmt: skip
        rows.append(f"| {lr:g} | {b} | {s} | {gap:+.3f} | {eb.mean:.1f} / {es.mean:.1f} |")
    holds, verdict = _growth_verdict(lrs, gaps, ses)
    capped = [
        r.id for r in runs if r.last_epoch is not None and r.last_epoch >= int(r.config.get("epochs") or 0)
    ]
    if capped:
        ids = ", ".join(map(str, capped))
        which = f"Runs {ids}" if len(capped) > 1 else f"Run {ids}"
        verdict += f" {which} reached the epoch cap before their recall stopped improving."
    notes = "\n".join([
        "**Claim (b)** (Taha et al. 2021): SVMax's recall@1 advantage over the baseline grows with the "
        "learning rate (plain metric learning degrades at large rates; at small ones both converge alike).",
        "",
        f"Setup: {_setup(runs, 'regularizer none/svmax × lr')} Contrastive loss, batch "
        f"{_cfg(runs, 'batch_size')}, SGD with momentum; every run trained until its validation "
        f"recall@1 stopped improving for {_cfg(runs, 'early_stop_patience')} epochs (at most "
        f"{_cfg(runs, 'epochs')}). recall@1 = the run's best validation recall@1; mean ± std over seeds.",
        "",
        "| lr | baseline recall@1 | SVMax recall@1 | advantage | epochs trained (baseline / SVMax) |",
        "|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"**Verdict:** {verdict}",
        "",
        "The figure below (the sweep plot) draws the best recall@1 against lr, one line per "
        "regularizer, with the seeds' standard deviation as error bars.",
    ])  # fmt: skip
    return Finding("claim-b", holds, verdict, notes, numbers | {"gaps": gaps})


def _growth_verdict(lrs: list[Any], gaps: list[float], ses: list[float]) -> tuple[bool | None, str]:
    """Grows = no step down beyond twice its standard error, and the last gap above the first by more
    than twice theirs."""
    if len(gaps) < 2 or any(math.isnan(g) for g in gaps):
        return None, "Not enough finished runs to judge the claim."
    span = f"from {gaps[0]:+.3f} at lr {lrs[0]:g} to {gaps[-1]:+.3f} at lr {lrs[-1]:g}"
    steps = list(zip(itertools.pairwise(gaps), itertools.pairwise(ses), strict=True))
    steady = all(b - a > -2 * math.hypot(sa, sb) for (a, b), (sa, sb) in steps)
    beyond_noise = gaps[-1] - gaps[0] > 2 * math.hypot(ses[0], ses[-1])
    if steady and beyond_noise:
        return (
            True,
            f"These numbers show the paper's claim: SVMax's advantage grows with the learning rate, {span}.",
        )
    if gaps[-1] == max(gaps) and gaps[-1] > gaps[0]:
        why = (
            "it falls between neighbouring learning rates by more than the seeds' noise"
            if not steady
            else "the growth is within twice its standard error (the seeds disagree)"
        )
        return False, (
            f"Partly: SVMax's advantage is largest at the largest learning rate ({span}), but {why}, "
            "so these numbers do not firmly show the paper's claim."
        )
    return False, f"These numbers do not show the paper's claim: the advantage goes {span} without growing."


def claim_c(runs: Sequence[RunResult]) -> Finding:
    """VICReg with mu = 0 collapses, with mu = 25 it does not."""
    rows, numbers = [], {}
    for mu, group in _by(runs, "vicreg_std_coeff").items():
        dead = summarize(map(_stat("dead_dims"), group))
        rank = summarize(map(_stat("effective_rank"), group))
        rho = summarize(map(_stat("sv_position"), group))
        med = summarize(_median_std(r.stats) for r in group)
        proj = summarize(_median_std(r.layers.get("projector")) for r in group)
        proj_dead = summarize((r.layers.get("projector") or {}).get("dead_dims") for r in group)
        recall = summarize(r.summary.get("best_recall_at_1") for r in group)
        numbers[str(mu)] = {"dead_dims": dead.mean, "effective_rank": rank.mean, "rho": rho.mean,
                            "median_std": med.mean, "projector_median_std": proj.mean,
                            "projector_dead_dims": proj_dead.mean, "recall": recall.mean}  # fmt: skip
        rows.append(f"| {mu:g} | {dead} | {rank} | {rho} | {med} | {proj} | {proj_dead} | {recall} |")
    off, on = numbers.get("0.0"), numbers.get("25.0")
    holds: bool | None = None
    verdict = "Both arms are needed (mu = 0 and mu = 25) to judge the claim."
    if off and on:
        rank_falls = off["effective_rank"] < 0.5 * on["effective_rank"]
        std_falls = off["projector_median_std"] < 0.1 * on["projector_median_std"]
        holds = rank_falls or std_falls
        verdict = (
            f"Without the variance term the embedding's RankMe is {off['effective_rank']:.2f} against "
            f"{on['effective_rank']:.2f} with it, and the projector output's median per-dimension std "
            f"{off['projector_median_std']:.4f} against {on['projector_median_std']:.4f}"
            + (
                ": mu = 0 collapses and mu = 25 does not — the claim holds."
                if holds
                else ": no clear collapse here."
            )
        )
    notes = "\n".join([
        "**Claim (c)** (Bardes, Ponce, LeCun 2022): VICReg's variance term (weight mu) is what prevents "
        "collapse; with mu = 0 the embeddings collapse.",
        "",
        f"Setup: {_setup(runs, 'vicreg_std_coeff mu = 0 / 25')} Self-supervised VICReg (lambda = 25, "
        f"nu = 1) on two noisy, masked views, {_cfg(runs, 'epochs')} epochs, lr {_cfg(runs, 'lr')}; "
        "final-epoch statistics on the probe set. The VICReg loss acts on the projector's output "
        "(recorded as layer `projector`); the embedding is the encoder's output below it.",
        "",
        "| mu | dead dims (embedding) | RankMe (embedding) | ρ (embedding) | median std (embedding) "
        "| median std (projector) | dead dims (projector) | best recall@1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"**Verdict:** {verdict}",
    ])  # fmt: skip
    return Finding("claim-c", holds, verdict, notes, numbers)


def layer_study(runs: Sequence[RunResult]) -> Finding:
    """SVMax on the last layer vs on every layer: each layer's final rho."""
    arms = dict(sorted(_by(runs, "reg_layers").items(), key=lambda kv: kv[0] == "all"))  # "all" last
    names: list[str] = []
    for run in runs:
        names.extend(n for n in run.layers if n not in names)
    numbers: dict[str, Any] = {}
    header = "| layer | " + " | ".join(f"ρ, reg_layers = {arm}" for arm in arms) + " |"
    rows = [header, "|---|" + "---:|" * len(arms)]
    for name in names:
        cells = []
        for arm, group in arms.items():
            rho = summarize((r.layers.get(name) or {}).get("sv_position") for r in group)
            numbers.setdefault(str(arm), {})[name] = rho.mean
            cells.append(str(rho))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    recall = {
        str(arm): summarize(r.summary.get("best_recall_at_1") for r in group) for arm, group in arms.items()
    }
    rows.append("| best recall@1 | " + " | ".join(str(v) for v in recall.values()) + " |")
    last, every = numbers.get("embedding", {}), numbers.get("all", {})
    moved = [f"{n} {last[n]:.2f} → {every[n]:.2f}" for n in names if n in last and n in every]
    verdict = (
        "Regularizing every layer instead of the last changes each layer's ρ as follows: "
        + ", ".join(moved)
        + f"; best recall@1 {recall.get('embedding', '—')} → {recall.get('all', '—')}."
        if moved
        else "Not enough finished runs for the per-layer picture."
    )
    notes = "\n".join([
        "**Per-layer collapse** (the seed's open question): what happens when SVMax is applied to every "
        "layer, as weight decay is, rather than to the embedding only?",
        "",
        f"Setup: {_setup(runs, 'reg_layers embedding / all')} Contrastive loss with SVMax (lambda "
        f"{_cfg(runs, 'reg_lambda')} per layer), lr {_cfg(runs, 'lr')}, {_cfg(runs, 'epochs')} epochs; "
        "the statistics of every layer (fc1, fc2: 256 wide; embedding) on the probe set at the final epoch.",
        "",
        *rows,
        "",
        f"**Picture:** {verdict} The charts below show ρ of layer {LAYER_VIEW} over epochs per arm (the "
        "compare view's `layer=`); each run's page has the layer × epoch heatmap and a layer selector.",
    ])  # fmt: skip
    return Finding("layers", None, verdict, notes, numbers)


FINDINGS: dict[str, Callable[[Sequence[RunResult]], Finding]] = {
    "claim-a": claim_a,
    "claim-b": claim_b,
    "claim-c": claim_c,
    "layers": layer_study,
}
