"""Stored epochs turned back into ``EpochPublic`` (``app.series.epochs.epoch_public``)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

from apikit import STATS

from app.models import Epoch
from app.series.epochs import epoch_public
from collapsewatch.contract import EpochPublic


def test_epoch_public_when_dumped_emits_no_serialization_warning_and_round_trips() -> None:
    row = Epoch(
        run_id=1,
        epoch=3,
        attempt=2,
        metrics={"loss": 0.5, "lr": None},
        recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        **{k: v for k, v in STATS.items() if k not in ("std_hist",)},
        std_hist=STATS["std_hist"],
    )
    record = epoch_public(row)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PydanticSerializationUnexpectedValue would raise here
        dumped = record.model_dump(mode="json")
        text = record.model_dump_json()
    assert dumped["stats"] == STATS
    assert EpochPublic.model_validate_json(text) == EpochPublic.model_validate(dumped)
