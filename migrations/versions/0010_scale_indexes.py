"""Indexes for the dashboard at 10,000 runs (issue 19, ``bench.scale``; plans in docs/performance.md).

PostgreSQL only (SQLite databases are single-user and small; its planner has no GIN or INCLUDE):

- ``ix_epochs_run_stats``: ``(run_id, epoch) INCLUDE`` the chartable statistic columns, so compare
  curves, series and alerts read epochs with index-only scans instead of fetching ~3 KB heap rows
  (the JSON spectra and histograms) per epoch.
- ``ix_runs_tags_gin``: GIN (``jsonb_path_ops``) on ``tags::jsonb``, which the tag filters of the runs
  table and API test with ``@>``.
- ``ix_runs_config_regularizer`` / ``_objective``: the runs table's config filters
  (``config ->> key = value``; a GIN index on the config would recheck, i.e. cast, every match).
- ``ix_runs_summary_<key>_asc|desc``: the runs table's sorts by a collapse-summary value
  (``(summary->>key)::float8`` with NULLS LAST, then id) read 50 rows off an index instead of
  parsing every run's summary JSON.

The names are listed in ``app.migrate.POSTGRES_ONLY_INDEXES`` (the model comparison skips them).

Revision ID: 0010_scale_indexes
Revises: 0008_run_lifecycle
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0010_scale_indexes'
down_revision: str | None = '0008_run_lifecycle'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAT_COLUMNS = ("mean_sv", "sv_lower", "sv_upper", "sv_position", "effective_rank", "dead_dims",
                "cov_offdiag", "l2_std")  # fmt: skip
SUMMARY_SORTS = ("mean_sv", "sv_position", "effective_rank", "dead_dims", "best_val_acc", "best_recall_at_1")


def summary_indexes() -> dict[str, str]:
    """Index name -> its CREATE INDEX body (after ``ON``), both sort directions of each summary key."""
    found = {}
    for key in SUMMARY_SORTS:
        expr = f"((summary ->> '{key}')::double precision)"
        found[f"ix_runs_summary_{key}_asc"] = f"runs ({expr} ASC NULLS LAST, id ASC)"
        found[f"ix_runs_summary_{key}_desc"] = f"runs ({expr} DESC NULLS LAST, id DESC)"
    return found


def indexes() -> dict[str, str]:
    return {
        "ix_epochs_run_stats": f"epochs (run_id, epoch) INCLUDE ({', '.join(STAT_COLUMNS)})",
        "ix_runs_tags_gin": "runs USING gin ((tags::jsonb) jsonb_path_ops)",
        "ix_runs_config_regularizer": "runs ((config ->> 'regularizer'))",
        "ix_runs_config_objective": "runs ((config ->> 'objective'))",
    } | summary_indexes()


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, body in indexes().items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in indexes():
        op.execute(f"DROP INDEX IF EXISTS {name}")
