"""Security headers on pages, API answers, errors and streams; body and upload size limits on every
route that takes a body; checkpoints from the network are never unpickled into objects."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from seckit import all_routes, team_app

from app.auth.api_tokens import create_token, ensure_admin
from app.web.headers import CSP

BODY_LIMIT = 64 * 1024
CHECKPOINT_LIMIT = 256 * 1024
DATASET_LIMIT = 128 * 1024  # dataset uploads enforce MAX_DATASET_BYTES themselves (app/api/datasets.py)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = team_app(
        tmp_path,
        max_body_bytes=BODY_LIMIT,
        max_checkpoint_bytes=CHECKPOINT_LIMIT,
        max_dataset_bytes=DATASET_LIMIT,
    )
    with TestClient(app, follow_redirects=False) as test_client:
        with app.state.db.transaction() as session:
            admin = ensure_admin(session=session, email="admin@localhost")
            token = create_token(session=session, user=admin, name="t").token
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def _assert_hardened(response: object, *, csp: bool = True) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] in ("same-origin", "no-referrer")
    if csp:
        assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_security_headers_on_pages_api_errors_and_redirects(client: TestClient) -> None:
    run = client.post("/api/v1/runs", json={"project": "h"}).json()
    for response in (
        client.get("/login"),
        client.get("/api/v1/runs"),
        client.get("/api/v1/runs/999"),  # 404
        client.get("/runs", headers={"Authorization": ""}),  # 303 to /login
        client.get("/static/cw.css"),
        client.put(f"/api/v1/runs/{run['id']}/epochs/1", content=b"x" * (BODY_LIMIT + 1)),  # 413
    ):
        _assert_hardened(response)
    assert client.get("/login").headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe-eval" not in CSP


def test_downloads_keep_their_headers_without_a_csp_and_docs_need_no_cdn(client: TestClient) -> None:
    run = client.post("/api/v1/runs", json={"project": "h"}).json()
    download = client.get(f"/api/v1/runs/{run['id']}/epochs.csv")
    assert download.headers["content-disposition"].startswith("attachment")
    _assert_hardened(download, csp=False)
    assert "content-security-policy" not in download.headers
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-security-policy"] == CSP
    assert "http" not in docs.text.split("<main>")[0].replace('href="/', "")  # nothing from elsewhere
    assert "<code>PUT /api/v1/runs/{run_id}/epochs/{epoch}</code>" in docs.text
    assert client.get("/redoc").status_code == 404


def test_every_body_route_refuses_an_oversized_body_with_413(client: TestClient) -> None:
    routes = [r for r in all_routes(client.app) if r.method in ("POST", "PUT") and r.path.startswith("/api/")]  # type: ignore[arg-type]
    assert len(routes) > 15
    assert client.post("/api/v1/runs", json={"project": "h"}).json()["id"] == 1  # the routes' run 1
    big = b'{"pad": "' + b"x" * (BODY_LIMIT + 10) + b'"}'
    for route in routes:
        limit_big = big if not route.path.endswith("/checkpoint") else b"\0" * (CHECKPOINT_LIMIT + 1)
        url = route.url + ("?attempt=1&epoch=1" if route.path.endswith("/checkpoint") else "")
        if route.path.endswith("/datasets"):  # an upload: its own, larger limit
            limit_big, url = b"\0" * (DATASET_LIMIT + 1), route.url + "?project=h&name=d"
        response = client.request(
            route.method, url, content=limit_big, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, f"{route}: {response.status_code} {response.text[:200]}"


class _Boom:
    """Unpickling this would run ``marker.write_text`` (arbitrary code, in a real attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "pwned"))  # type: ignore[return-value]


def test_checkpoint_with_a_pickled_object_is_refused_without_running_it(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from worker.training import checkpoint

    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT_VERSION, "evil": _Boom(marker)}, buffer)
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):
        checkpoint.load(buffer.getvalue())
    assert not marker.exists()
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)  # control: the payload is live
    assert marker.read_text() == "pwned"
