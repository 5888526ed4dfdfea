"""The Lightning integration: a tiny LightningModule trained on CPU for two epochs against a real
server; both epochs arrive with collapse statistics of the hooked layer, and the scalars too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from collapsewatch.integrations.lightning import CollapseStatsCallback, CollapsewatchLogger  # noqa: E402
from collapsewatch.sdk import Client  # noqa: E402
from collapsewatch.stats import collapse_stats  # noqa: E402
from tests.collapsewatch.sdk.livekit import LiveServer, admin_token, server_settings  # noqa: E402


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    settings = server_settings(tmp_path)
    token = admin_token(settings)
    server = LiveServer(settings)
    server.start()
    yield server, token
    server.stop()


def test_lightning_logger_and_callback_store_both_epochs_with_statistics(
    live: tuple[LiveServer, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, token = live
    monkeypatch.setenv("COLLAPSEWATCH_SPOOL_DIR", str(tmp_path / "spool"))
    torch.manual_seed(0)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    probe = x[:32]
    logger = CollapsewatchLogger(project="lightning", config={"batch_size": 16}, url=server.url, token=token)
    callback = CollapseStatsCallback(probe, layer="encoder")
    model = Tiny()
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=logger, callbacks=[callback], log_every_n_steps=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, loader)

    run_id = int(logger.version)
    with Client(server.url, token) as client:
        info = client.get_run(run_id)
        epochs = client.list_epochs(run_id)
        params = {"run": run_id, "key": "train_loss_step", "max_points": 100, "source": "metric"}
        (steps,) = client.request("GET", "/api/v1/series", params=params).json()
    assert info.status == "succeeded" and info.config == {"batch_size": 16, "lr": 0.1}
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(e.stats is not None and e.metrics.get("train_loss_epoch") is not None for e in epochs)
    with torch.no_grad():  # the last epoch's statistics are the trained encoder's on the probe
        expected = collapse_stats(model.encoder(probe).double())
    assert epochs[-1].stats is not None
    assert epochs[-1].stats.mean_sv == pytest.approx(expected["mean_sv"], rel=1e-9)
    assert steps["total"] == 8  # 4 batches x 2 epochs, one point per step


def test_stats_callback_without_a_collapsewatch_logger_says_what_it_needs() -> None:
    callback = CollapseStatsCallback(torch.randn(4, 6), layer="encoder")
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False)
    with pytest.raises(RuntimeError, match="needs a CollapsewatchLogger"):
        callback.on_train_epoch_end(trainer, Tiny())
