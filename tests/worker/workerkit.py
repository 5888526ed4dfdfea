"""The live server handle of the worker tests (imported as ``workerkit``; see conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.settings import Settings


@dataclass
class LiveServer:
    url: str
    settings: Settings
    user_token: str
    worker_token: str
    http: httpx.Client

    def post_ok(self, path: str, **kwargs: Any) -> Any:
        response = self.http.post(path, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data
