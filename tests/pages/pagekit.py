"""Helpers for the dashboard tests (imported as ``pagekit``; a unique name, unlike ``conftest``)."""

from __future__ import annotations

from dataclasses import dataclass

from dashboard_fakes import Recorder, Seeder
from fastapi.testclient import TestClient

from app.db import Database


@dataclass
class Pages:
    client: TestClient
    seed: Seeder
    recorder: Recorder
    db: Database

    def csrf(self, path: str = "/runs") -> str:
        html = self.client.get(path).text
        marker = 'name="csrf-token" content="'
        start = html.index(marker) + len(marker)
        return html[start : html.index('"', start)]
