"""Per-layer collapse in the engine: named layers, hooks on the probe set, the regularizer on each
listed layer, and early stopping on validation recall@1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from collapsewatch.contract import EpochIn, JobSpec
from collapsewatch.layers import layer_names, spec_layers
from worker.training.checkpoint import MemoryCheckpoint
from worker.training.config import SpecError, build_spec
from worker.training.engine import EarlyStop, train, train_epoch
from worker.training.models import build_model, embed_layers
from worker.training.records import EpochRecord

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(**values: Any) -> list[EpochRecord]:
    records: list[EpochRecord] = []
    train(build_spec(values), on_epoch=records.append, device="cpu")
    return records


@pytest.mark.parametrize(
    ("model", "objective", "shape", "widths"),
    [
        ("mlp", "contrastive", (64,), {"fc1": 256, "fc2": 256, "embedding": 16}),
        ("cnn", "vicreg", (1, 8, 8), {"conv1": 32, "conv2": 64, "embedding": 16, "projector": 64}),
    ],
)
def test_named_layers_when_probed_capture_batch_by_width_outputs(
    model: str, objective: str, shape: tuple[int, ...], widths: dict[str, int]
) -> None:
    spec = JobSpec(model=model, objective=objective, embedding_dim=16)
    net = build_model(spec, shape, 10)
    assert list(net.named_layers()) == list(layer_names(model, objective)) == list(widths)
    x = torch.randn(37, *shape)
    embedding, outputs = embed_layers(net, x, list(widths))
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {
        n: (37, w) for n, w in widths.items()
    }
    assert torch.equal(outputs["embedding"], embedding)
    # the hook's output is the layer itself: the embedding hook equals the encoder's output
    with torch.no_grad(), net.capture(["embedding"]) as captured:
        again = net.embed(x)
    assert torch.equal(captured["embedding"][0], again)


def test_capture_when_layer_unknown_names_the_layers_that_exist() -> None:
    net = build_model(JobSpec(), (64,), 10)
    with pytest.raises(ValueError, match="fc1"), net.capture(["conv1"]):
        pass


def test_train_with_stats_layers_records_each_layers_statistics_every_epoch() -> None:
    records = _run(objective="contrastive", epochs=2, stats_layers="all", embedding_dim=16)
    for record in records:
        assert list(record.layers) == ["fc1", "fc2", "embedding"]
        assert record.layers["embedding"] == record.stats
        assert (
            len(record.layers["fc1"]["dim_std"]) == 256 and len(record.layers["embedding"]["dim_std"]) == 16
        )
        body = EpochIn.model_validate(record.to_json(attempt=1))  # the wire form accepts it
        assert set(body.layers) == {"fc1", "fc2", "embedding"}


def test_train_without_stats_layers_sends_no_layers_key() -> None:
    (record,) = _run(objective="contrastive", epochs=1)
    assert record.layers == {} and "layers" not in record.to_json()


def _gradients_after_one_batch(reg_layers: str, regularizer: str = "svmax") -> dict[str, float]:
    """Per-parameter gradient norms of the regularizer alone (the objective's weight is ~0)."""
    spec = JobSpec(
        objective="cross_entropy", regularizer=regularizer, reg_layers=reg_layers, batch_size=32, epochs=1
    )
    torch.manual_seed(0)
    net = build_model(spec, (64,), 10)
    net.head.weight.data.zero_()  # type: ignore[union-attr]  # CE gradient only reaches the head
    net.head.bias.data.zero_()  # type: ignore[union-attr]
    norms: dict[str, float] = {}

    class Recorder(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:  # record instead of stepping
            for name, p in net.named_parameters():
                norms[name] = 0.0 if p.grad is None else float(p.grad.norm())
            return None

    x = torch.randn(32, 64)
    y = torch.zeros(32, dtype=torch.long)  # one class: the head's CE gradient w.r.t. E is zero too
    train_epoch(spec, net, Recorder(net.parameters(), lr=0.0), x, y, torch.Generator().manual_seed(0))
    return norms


def test_regularizer_on_listed_layers_only_reaches_layers_at_or_below_them() -> None:
    # encoder: 0 = Linear(64->256) (fc1), 2 = Linear(256->256) (fc2), 4 = Linear(256->d) (embedding)
    fc1_only = _gradients_after_one_batch("fc1")
    assert fc1_only["encoder.0.weight"] > 0
    assert fc1_only["encoder.2.weight"] == 0 and fc1_only["encoder.4.weight"] == 0
    every = _gradients_after_one_batch("all")
    assert all(every[f"encoder.{i}.weight"] > 0 for i in (0, 2, 4))
    # with every layer regularized, fc1 receives more than from the embedding's term alone
    last = _gradients_after_one_batch("")
    assert last["encoder.4.weight"] > 0
    assert every["encoder.0.weight"] != pytest.approx(last["encoder.0.weight"], rel=1e-3)


def test_regularizer_none_ignores_reg_layers() -> None:
    norms = _gradients_after_one_batch("all", regularizer="none")
    assert all(norms[f"encoder.{i}.weight"] == 0 for i in (0, 2, 4))


def test_train_with_reg_layers_all_spreads_hidden_layers_and_logs_each_term() -> None:
    common = {"objective": "contrastive", "regularizer": "svmax", "epochs": 2, "stats_layers": "all"}
    last = _run(**common, reg_layers="embedding")[-1]
    every = _run(**common, reg_layers="all")[-1]
    assert every.layers["fc2"]["sv_position"] > last.layers["fc2"]["sv_position"]
    assert {"reg_loss/fc1", "reg_loss/fc2", "reg_loss/embedding"} <= set(every.metrics)
    assert not any(k.startswith("reg_loss/") for k in last.metrics)


def test_spec_when_layer_unknown_names_field_and_allowed_layers() -> None:
    with pytest.raises(SpecError, match=r"reg_layers: unknown layer\(s\) 'conv9'.*fc1, fc2, embedding"):
        build_spec({"reg_layers": "conv9"})
    with pytest.raises(SpecError, match=r"stats_layers.*projector"):
        build_spec({"stats_layers": "projector"})  # only for vicreg
    spec = build_spec({"stats_layers": "embedding+fc1", "reg_layers": "all"})
    assert (spec.stats_layers, spec.reg_layers) == ("fc1,embedding", "all")  # canonical, network order
    assert spec_layers(spec) == (["fc1", "embedding"], ["fc1", "fc2", "embedding"])
    assert spec_layers(build_spec({})) == ([], ["embedding"])  # default: today's behaviour


def test_early_stop_counts_epochs_without_a_better_recall() -> None:
    early = EarlyStop(patience=2)
    for epoch, value in enumerate([0.5, 0.6, 0.6, 0.55], start=1):
        early.update(epoch, value)
    assert early.done and (early.best, early.best_epoch, early.bad) == (0.6, 2, 2)
    again = EarlyStop(patience=2)
    again.restore(early.state())
    assert again.done and again.best == 0.6
    assert not EarlyStop(patience=0).done


def test_train_with_patience_stops_when_recall_stops_improving_and_resume_stays_stopped() -> None:
    spec = build_spec({"objective": "contrastive", "lr": 0.5, "epochs": 40, "early_stop_patience": 2})
    records: list[EpochRecord] = []
    store = MemoryCheckpoint()
    result = train(spec, on_epoch=records.append, checkpoint=store, device="cpu")
    assert result.early_stopped and not result.stopped and result.last_epoch < 40
    recalls = [r.metrics["recall_at_1"] for r in records]
    best = max(recalls)  # type: ignore[type-var]
    assert recalls.index(best) == len(recalls) - 3  # the best, then 2 epochs that were no better
    assert max(store.saved) == result.last_epoch  # checkpointed where it stopped
    resumed = train(spec, on_epoch=records.append, resume=store.saved[result.last_epoch], device="cpu")
    assert resumed.early_stopped and resumed.records == []
