"""The runs-table and compare queries on both databases (SQLite file and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_fakes import Seeder
from sqlalchemy import create_engine, text

from app.auth.api_tokens import ensure_admin
from app.compare.view import CompareQuery, build_compare
from app.db import Database
from app.migrate import upgrade
from app.models import import_all_models
from app.runs.table import TableQuery, runs_table
from app.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Seeder]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'table.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
        engine = create_engine(url)
        upgrade(engine)
        names = ", ".join(f'"{t.name}"' for t in import_all_models().sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        engine.dispose()
    db = Database(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
    upgrade(db.engine)
    with db.transaction() as session:
        admin_id = ensure_admin(session=session, email="admin@localhost").id
    yield Seeder(db, admin_id)
    db.dispose()


def test_runs_table_filters_sorts_by_summary_and_pages(seeded: Seeder) -> None:
    ids = seeded.jobs(sweep={"regularizer": ["none", "svmax"], "lr": [0.1, 0.2, 0.3]}, tags=["t"])
    for i, run_id in enumerate(ids):
        seeded.claim(run_id)
        seeded.epoch(run_id, 0, rho=0.1 * (i + 1))
    unscored = seeded.jobs(spec={"objective": "triplet"})[0]  # no summary: sorts last either way
    with seeded.db.session(write=False) as session:
        page = runs_table(session=session, query=TableQuery(sort="-sv_position"), page_size=4)
        assert [r.id for r in page.runs] == list(reversed(ids))[:4] and page.total == 7 and page.pages == 2
        last = runs_table(session=session, query=TableQuery(sort="sv_position", page=2), page_size=4)
        assert [r.id for r in last.runs][-1] == unscored
        svmax = runs_table(session=session, query=TableQuery(regularizer="svmax", tag="t"))
        assert {r.config["regularizer"] for r in svmax.runs} == {"svmax"} and svmax.total == 3
        triplet = runs_table(session=session, query=TableQuery(objective="triplet"))
        assert [r.id for r in triplet.runs] == [unscored]


def test_build_compare_groups_a_sweep_with_bands_and_sweep_lines(seeded: Seeder) -> None:
    ids = seeded.jobs(sweep={"regularizer": ["none", "svmax"], "batch_size": [16, 64]}, seeds=[0, 1])
    for run_id in ids:
        seeded.claim(run_id)
        for epoch in range(3):
            seeded.epoch(run_id, epoch, rho=0.5, acc=0.1 * run_id)
    with seeded.db.session(write=False) as session:
        sweep_id = runs_table(session=session, query=TableQuery()).runs[0].sweep_id
        assert sweep_id is not None
        query = CompareQuery(sweeps=[sweep_id], group=["regularizer"], x="batch_size", metric="best_val_acc")
        data = build_compare(session=session, query=query)
    assert [g.label for g in data.groups] == ["regularizer=none", "regularizer=svmax"]
    assert all(b.x == [0, 1, 2] and b.n == [4, 4, 4] for b in data.bands)
    assert [line.label for line in data.sweep] == ["regularizer=none", "regularizer=svmax"]
    assert all(line.x == [16, 64] and line.n == [2, 2] for line in data.sweep)
    assert data.hist_epoch == 2 and set(data.hists) == set(ids)
    assert {row.key for row in data.diff if row.differs} == {"regularizer", "batch_size", "seed"}


def test_compare_query_round_trips_through_its_url() -> None:
    from urllib.parse import parse_qs, urlsplit

    query = CompareQuery(
        runs=[3, 1], sweeps=["s1"], stat="effective_rank", group=["lr", "regularizer"], epoch=4
    )
    params = parse_qs(urlsplit(query.url()).query)
    parsed, problems = CompareQuery.from_params(params)
    assert problems == {} and parsed == query
