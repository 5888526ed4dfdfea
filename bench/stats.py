"""Fast paths of collapsewatch.regularizers against their direct forms, and collapse_stats overhead.

    python -m bench.stats [--quick] [--threads N] [--repeats R] [--clock wall|cpu] [--plain-loop]

Tables (CPU, float32, forward + backward, median of R timed runs after one warm-up):
1. mean_singular_value's Gram-eigenvalue path vs torch.linalg.svdvals(E).mean() on full-rank
   L2-normalised batches: ratio, max relative error of the value and of the gradient over 3 seeds,
   and the fast path's value at exact collapse (rank 1) relative to the lower bound L.
2. vicreg_loss with the O(n^2 d) covariance vs the direct d x d form: ratio, max abs/rel difference.
3. collapse_stats on a 1024-sample probe set as a fraction of one training epoch on digits
   (worker.training.engine's train_epoch when importable, else a plain MLP/SGD loop written here).
Targets: >= 4x at (256, 2048) and >= 8x at (1024, 8192) within 2e-3 relative; VICReg >= 3x at
(256, 2048) with the same value to 1e-5; collapse_stats < 5 % of an epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from collapsewatch.regularizers import (
    CovMethod,
    mean_singular_value,
    svmax_bounds,
    use_gram_path,
    vicreg_loss,
)
from collapsewatch.stats import collapse_stats

SHAPES = [(256, 2048), (512, 2048), (1024, 8192)]
PROBE_SIZE = 1024
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def median_seconds(fn: Callable[[], object], repeats: int, budget_s: float = 60.0) -> float:
    """Median time of ``fn`` over ``repeats`` runs after one warm-up, on the clock chosen with
    ``--clock`` (at least 3 runs; stops early once ``budget_s`` is spent)."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < 3 or spent < budget_s):
        began = _clock()
        fn()
        times.append(_clock() - began)
        spent += times[-1]
    return statistics.median(times)


def _msv_fast(e: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = e.clone().requires_grad_()
    value = mean_singular_value(x)
    value.backward()
    assert x.grad is not None
    return float(value.detach()), x.grad


def _msv_svd(e: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = e.clone().requires_grad_()
    value = torch.linalg.svdvals(x).mean()
    value.backward()
    assert x.grad is not None
    return float(value.detach()), x.grad


def bench_mean_sv(shapes: list[tuple[int, int]], repeats: int) -> None:
    print("\n## mean_singular_value: Gram fast path vs torch.linalg.svdvals (forward + backward)")
    print(f"{'b x d':>12} {'path':>5} {'svdvals ms':>11} {'fast ms':>9} {'ratio':>7} "
          f"{'max rel err':>12} {'grad rel err':>13} {'rank-1 value / L - 1':>21}")  # fmt: skip
    for b, d in shapes:
        gen = torch.Generator().manual_seed(b * d)
        batches = [F.normalize(torch.randn(b, d, generator=gen), dim=1) for _ in range(3)]
        t_svd = median_seconds(partial(_msv_svd, batches[0]), repeats)
        t_fast = median_seconds(partial(_msv_fast, batches[0]), repeats)
        err = grad_err = 0.0
        for e in batches:
            (v_fast, g_fast), (v_svd, g_svd) = _msv_fast(e), _msv_svd(e)
            err = max(err, abs(v_fast - v_svd) / v_svd)
            grad_err = max(grad_err, float((g_fast - g_svd).norm() / g_svd.norm()))
        sign = torch.where(torch.rand(b, 1, generator=gen) < 0.5, -1.0, 1.0)
        rank1 = sign * F.normalize(torch.randn(1, d, generator=gen), dim=1)
        v1, g1 = _msv_fast(rank1)
        finite = "" if bool(torch.isfinite(g1).all()) else " (grad NOT finite)"
        path = "gram" if use_gram_path(b, d) else "svd"
        print(
            f"{f'{b} x {d}':>12} {path:>5} {t_svd * 1e3:11.1f} {t_fast * 1e3:9.1f} {t_svd / t_fast:6.1f}x "
            f"{err:12.1e} {grad_err:13.1e} {v1 / svmax_bounds(b, d)[0] - 1:+21.1e}{finite}"
        )


def _vicreg_step(za: torch.Tensor, zb: torch.Tensor, method: CovMethod) -> float:
    a, b = za.clone().requires_grad_(), zb.clone().requires_grad_()
    loss = vicreg_loss(a, b, cov_method=method).total
    loss.backward()
    return float(loss.detach())


def bench_vicreg(shapes: list[tuple[int, int]], repeats: int) -> None:
    print("\n## vicreg_loss: O(n^2 d) Gram covariance vs the direct d x d form (forward + backward)")
    print(
        f"{'n x d':>12} {'direct ms':>10} {'fast ms':>9} {'ratio':>7} {'max abs diff':>13} "
        f"{'max rel diff':>13} {'fast vs float64':>16}"
    )
    for n, d in shapes:
        gen = torch.Generator().manual_seed(n + d)
        pairs = []
        for _ in range(3):
            za = torch.randn(n, d, generator=gen) @ (torch.eye(d) + 0.05 * torch.randn(d, d, generator=gen))
            pairs.append((za, za + 0.1 * torch.randn(n, d, generator=gen)))

        t_direct = median_seconds(partial(_vicreg_step, *pairs[0], "direct"), repeats)
        t_fast = median_seconds(partial(_vicreg_step, *pairs[0], "gram"), repeats)
        abs_diff = rel_diff = err64 = 0.0
        for a, b in pairs:
            fast, direct = _vicreg_step(a, b, "gram"), _vicreg_step(a, b, "direct")
            ref64 = float(vicreg_loss(a.double(), b.double(), cov_method="direct").total)
            abs_diff = max(abs_diff, abs(fast - direct))
            rel_diff = max(rel_diff, abs(fast - direct) / abs(direct))
            err64 = max(err64, abs(fast - ref64) / abs(ref64))
        print(
            f"{f'{n} x {d}':>12} {t_direct * 1e3:10.1f} {t_fast * 1e3:9.1f} {t_direct / t_fast:6.1f}x "
            f"{abs_diff:13.1e} {rel_diff:13.1e} {err64:16.1e}"
        )


def _engine_epoch(d: int) -> tuple[Callable[[], object], Callable[[], object], torch.Tensor]:
    """(one training epoch, one full engine epoch = train + evaluate, a 1024-row probe embedding)."""
    from collapsewatch.contract import JobSpec
    from worker.training.data import load_splits
    from worker.training.engine import make_optimizer, seed_everything, train_epoch
    from worker.training.evaluate import evaluate
    from worker.training.models import build_model, embed_all

    spec = JobSpec(dataset="digits", model="mlp", embedding_dim=d, batch_size=128, optimizer="sgd")
    splits = load_splits(spec)
    generator = seed_everything(0)
    model = build_model(spec, splits.input_shape, splits.n_classes)
    optimizer = make_optimizer(spec, model)
    names = ("x_train", "y_train", "x_val", "y_val", "x_probe")
    data = {name: torch.from_numpy(getattr(splits, name)) for name in names}

    def epoch() -> object:
        return train_epoch(spec, model, optimizer, data["x_train"], data["y_train"], generator)

    def full_epoch() -> object:
        epoch()
        return evaluate(model, data, splits.n_classes, dead_threshold=spec.dead_threshold)

    rows = torch.cat([data["x_train"], data["x_val"]])[:PROBE_SIZE]
    return epoch, full_epoch, embed_all(model, rows)


def _plain_epoch(d: int) -> tuple[Callable[[], object], None, torch.Tensor]:
    """A plain loop equivalent to the engine's default: MLP 64-256-256-d + linear head, SGD, batch 128."""
    from sklearn.datasets import load_digits

    x_np, y_np = load_digits(return_X_y=True)
    x = torch.tensor(x_np, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-8)
    y = torch.tensor(y_np)
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, d), torch.nn.ReLU(),
    )  # fmt: skip
    head = torch.nn.Linear(d, 10)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    n_train = round(0.7 * len(x))

    def epoch() -> object:
        for idx in torch.randperm(n_train).split(128):
            loss = F.cross_entropy(head(encoder(x[idx])), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss

    with torch.no_grad():
        probe = encoder(x[:PROBE_SIZE])
    return epoch, None, probe


def bench_overhead(dims: list[int], repeats: int, plain: bool) -> None:
    source = "plain MLP/SGD loop in bench/stats.py"
    builder: Callable[[int], tuple[Callable[[], object], Callable[[], object] | None, torch.Tensor]]
    builder = _plain_epoch
    if not plain:
        try:
            import worker.training.engine  # noqa: F401

            builder, source = _engine_epoch, "worker.training.engine.train_epoch"
        except ImportError as exc:
            source += f" (engine not importable: {exc})"
    print(f"\n## collapse_stats on a {PROBE_SIZE}-sample probe set vs one epoch on digits (batch 128, SGD)")
    print(f"epoch timed with: {source}")
    print(
        f"{'d':>6} {'stats ms':>9} {'train epoch ms':>15} {'fraction':>9} "
        f"{'train+eval ms':>14} {'fraction':>9}"
    )
    for d in dims:
        epoch, full_epoch, probe = builder(d)
        t_stats = median_seconds(partial(collapse_stats, probe), repeats)
        t_epoch = median_seconds(epoch, repeats)
        line = f"{d:6d} {t_stats * 1e3:9.2f} {t_epoch * 1e3:15.1f} {t_stats / t_epoch:9.1%}"
        if full_epoch is not None:
            t_full = median_seconds(full_epoch, repeats)
            line += f" {t_full * 1e3:14.1f} {t_stats / t_full:9.1%}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stats", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats, skip the (1024, 8192) shape")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 7)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall (default) or cpu = process CPU time, steadier on a shared machine (use with --threads 1)",
    )
    parser.add_argument("--plain-loop", action="store_true", help="time the plain loop, not the engine")
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.repeats is not None and args.repeats < 3):
        parser.error("--threads must be >= 1 and --repeats >= 3")
    torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCKS[args.clock]
    repeats = args.repeats or (3 if args.quick else 7)
    shapes = SHAPES[:2] if args.quick else SHAPES
    print(
        f"# bench.stats  torch {torch.__version__}  threads={torch.get_num_threads()}  "
        f"cpus={os.cpu_count()}  load avg={os.getloadavg()[0]:.2f}  repeats={repeats} "
        f"(median, after 1 warm-up)  clock={args.clock}  float32 CPU"
    )
    began = time.perf_counter()
    bench_mean_sv(shapes, repeats)
    bench_vicreg(shapes, repeats)
    bench_overhead([32, 128], repeats, args.plain_loop)
    print(f"\n(total {time.perf_counter() - began:.0f} s; load avg at the end {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
