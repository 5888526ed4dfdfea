"""The ``collapsewatch demo`` command's HTTP side: submit the experiments, wait for their runs while
printing progress, read the results, and save one report per experiment (``POST /api/v1/reports``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.demo.experiments import Experiment, report_title, view_query
from app.demo.findings import FINDINGS, Finding, RunResult
from collapsewatch.contract import TERMINAL_STATUSES


@dataclass
class Submitted:
    experiment: Experiment
    sweep_id: str
    run_ids: list[int]


class ServerRefused(RuntimeError):
    """The server answered with an error status (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DemoClient:
    """The server's API with a user token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ServerRefused(
                f"{method} {path}: the server answered {response.status_code}: {response.text[:300]}",
                response.status_code,
            )
        return response.json()

    def submit(self, items: list[Experiment]) -> list[Submitted]:
        done = []
        for item in items:
            created = self._json("POST", "/api/v1/jobs", json=item.submit)
            done.append(Submitted(item, str(created[0]["sweep_id"]), [int(r["id"]) for r in created]))
        return done

    def runs(self, sweep_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json(
            "GET", "/api/v1/runs", params={"sweep": sweep_id, "limit": 500}
        )
        return found

    def wait(
        self,
        submitted: list[Submitted],
        *,
        poll: float = 3.0,
        timeout: float = 3600.0,
        progress: Callable[[str], None] = print,
    ) -> dict[str, int]:
        """Poll until every run has finished (or ``timeout`` s), reporting each change of the counts;
        returns ``{status: count}`` of the finished runs."""
        total = sum(len(s.run_ids) for s in submitted)
        began, last = time.monotonic(), ""
        while True:
            statuses = [r["status"] for s in submitted for r in self.runs(s.sweep_id)]
            finished = sum(status in TERMINAL_STATUSES for status in statuses)
            running = statuses.count("running")
            line = f"{finished}/{total} runs finished, {running} running"
            if line != last:
                progress(f"[{time.monotonic() - began:6.0f} s] {line}")
                last = line
            if finished >= total:
                ended = [status for status in statuses if status in TERMINAL_STATUSES]
                return {status: ended.count(status) for status in sorted(set(ended))}
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"demo: {total - finished} runs still unfinished after {timeout:.0f} s")
            time.sleep(poll)

    def results(self, sweep_id: str) -> list[RunResult]:
        """Each run of the sweep with its final epoch record."""
        results = []
        for run in self.runs(sweep_id):
            final = None
            if run.get("last_epoch") is not None:
                records = self._json(
                    "GET", f"/api/v1/runs/{run['id']}/epochs", params={"since": run["last_epoch"]}
                )
                final = records[-1] if records else None
            results.append(RunResult.from_wire(run, final))
        return sorted(results, key=lambda r: r.id)

    def report(self, *, project: str, title: str, notes: str, query: str) -> str:
        body = {"project": project, "title": title, "notes": notes, "pinned": True, "query": query}
        created = self._json("POST", "/api/v1/reports", json=body)
        return f"{self.base_url}{created['url']}"


def finish_reports(client: DemoClient, batch: str, submitted: list[Submitted]) -> list[tuple[Finding, str]]:
    """Compute each experiment's finding and save it as a pinned report; (finding, report URL)."""
    saved = []
    for item in submitted:
        finding = FINDINGS[item.experiment.key](client.results(item.sweep_id))
        url = client.report(
            project=item.experiment.submit["project"],
            title=report_title(batch, item.experiment),
            notes=finding.notes,
            query=view_query(item.sweep_id, item.experiment.view),
        )
        saved.append((finding, url))
    return saved
