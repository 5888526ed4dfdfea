"""The contract's finite-number checks on statistics lists (``collapsewatch.contract``)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from collapsewatch.contract import CollapseStatsIn


def _stats(**changes: object) -> dict[str, object]:
    stats: dict[str, object] = {
        "mean_sv": 1.0, "sv_lower": 0.5, "sv_upper": 2.0, "sv_position": 0.3,
        "singular_values": [2.0, 1.0, 0.5], "effective_rank": 2.5, "dim_std": [0.1, 0.2, 0.3],
        "std_hist": {"edges": [0.0, 1.0, 2.0], "counts": [3, 0]}, "dead_dims": 0, "cov_offdiag": 0.0,
        "l2_std": 0.5,
    }  # fmt: skip
    return stats | changes


@pytest.mark.parametrize("field", ["singular_values", "dim_std"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("position", [0, 2])
def test_a_non_finite_entry_is_refused_and_named(field: str, bad: float, position: int) -> None:
    values = [1.0, 2.0, 3.0]
    values[position] = bad
    with pytest.raises(ValidationError) as caught:
        CollapseStatsIn.model_validate(_stats(**{field: values}))
    assert f"{field}[{position}] is {bad}" in str(caught.value)


def test_finite_entries_whose_sum_overflows_are_accepted() -> None:
    big = [1.7e308, 1.7e308, 1.7e308]
    stats = CollapseStatsIn.model_validate(_stats(singular_values=big, dim_std=big))
    assert stats.singular_values == big and stats.dim_std == big


def test_opposite_infinities_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"dim_std\[0\] is inf"):
        CollapseStatsIn.model_validate(_stats(dim_std=[math.inf, -math.inf, 0.0]))
