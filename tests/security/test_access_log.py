"""The server's access log (uvicorn) never shows a share-link token: it is the credential."""

from __future__ import annotations

import httpx

from tests.queue.harness import Stack


def test_access_log_redacts_share_link_tokens(live_stack: tuple[Stack, list[int], str]) -> None:
    server, _runs, share_path = live_stack
    response = httpx.get(server.url + share_path, timeout=30)
    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    token = share_path.rsplit("/", 1)[1]
    log = (server.root / "server.log").read_text(errors="replace")
    assert "GET /s/[redacted]" in log
    assert token not in log
