"""The compare view's query string (app/compare/query.py): parsing, problems, and the URL back."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from app.compare.query import CompareQuery, _meta, _plain, _text


def _parse(url: str) -> tuple[CompareQuery, dict[str, str]]:
    return CompareQuery.from_params(parse_qs(urlsplit(url).query, keep_blank_values=True))


def test_compare_query_round_trips_every_view_setting_through_its_url() -> None:
    query = CompareQuery(
        runs=[3, 1],
        sweeps=["s1"],
        stat="train_loss",
        group=["lr", "regularizer"],
        xaxis="time",
        smooth=0.6,
        logy=True,
        x="lr",
        metric="best_val_acc",
        line=["regularizer"],
        epoch=4,
    )
    url = query.url()
    assert "group=lr%2Cregularizer" in url and "smooth=0.6" in url and "logy=1" in url and "xaxis=time" in url
    parsed, problems = _parse(url)
    assert problems == {} and parsed == query


def test_compare_query_group_absent_is_automatic_and_dash_is_none() -> None:
    assert _parse("/compare?sweep=s")[0].group is None
    assert _parse("/compare?sweep=s&group=")[0].group is None
    assert _parse("/compare?sweep=s&group=-")[0].group == []
    assert _parse("/compare?group=-&group=regularizer&group=lr")[0].group == ["regularizer", "lr"]
    assert CompareQuery(group=[]).url() == "/compare?stat=mean_sv&group=-&metric=mean_sv"
    assert "group" not in CompareQuery().url()


def test_compare_query_defaults_leave_raw_linear_curves_out_of_the_url() -> None:
    query, problems = _parse("/compare?runs=1&smooth=0&logy=0")
    assert problems == {} and query.smooth == 0.0 and query.logy is False and query.xaxis is None
    assert query.url() == "/compare?runs=1&stat=mean_sv&metric=mean_sv"


def test_compare_query_reports_bad_values_by_parameter_and_keeps_the_rest() -> None:
    query, problems = _parse("/compare?runs=1,abc&run=2&epoch=late&smooth=1.5&logy=maybe&xaxis=iteration")
    assert query.runs == [1, 2] and query.epoch is None
    assert query.smooth == 0.0 and query.logy is False and query.xaxis is None
    assert set(problems) == {"runs", "epoch", "smooth", "logy", "xaxis"}
    assert "'abc' is not a run id" in problems["runs"]
    assert "from 0 (raw curves) to 0.99" in problems["smooth"]
    assert "epoch, step, time" in problems["xaxis"]
    assert _parse("/compare?smooth=nan")[1]["smooth"]


def test_compare_query_takes_a_new_parameter_from_one_field() -> None:
    @dataclass(frozen=True)
    class WithLayer(CompareQuery):
        layer: str = field(default="", metadata=_meta(_text, _plain))

    parsed, problems = WithLayer.from_params({"layer": ["fc2"], "group": ["regularizer"]})
    assert problems == {} and parsed.layer == "fc2" and parsed.group == ["regularizer"]
    assert "layer=fc2" in parsed.url() and "layer" not in parsed.url(layer="")
