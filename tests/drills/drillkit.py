"""Machinery for the fault drills: a private PostgreSQL server the drill may stop and start.

Imported as ``drillkit`` (a unique module name). The machine's PostgreSQL (127.0.0.1:5432) is shared
with the other tests and is never touched: each drill gets its own cluster in a temp directory on a
free port (``initdb`` + ``pg_ctl`` from /usr/lib/postgresql/*/bin, run as the ``postgres`` user when
the tests run as root, since ``initdb`` refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.queue.harness import free_port

STATS = {
    "mean_sv": 0.5, "sv_lower": 0.125, "sv_upper": 1.0, "sv_position": 0.43,
    "singular_values": [1.5, 0.25], "effective_rank": 1.7, "dim_std": [0.1, 0.3],
    "std_hist": {"edges": [0.0, 1.0, 2.0], "counts": [2, 0]}, "dead_dims": 0,
    "cov_offdiag": 0.01, "l2_std": 0.2,
}  # fmt: skip


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster (trust auth, no fsync) on 127.0.0.1:``port``."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cw-drill-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "pg.log"), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
