"""Helpers shared by the JSON API's routers."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def model_response(model: BaseModel) -> Response:
    """``model`` as the JSON body, serialised on the route's own thread.

    FastAPI re-validates what a sync route returns on a second trip to the thread pool
    (``serialize_response``); under load every trip waits for the GIL. The ingestion routes that
    workers call every epoch return their already-validated model this way instead; their
    ``response_model`` still documents the body.
    """
    return Response(model.model_dump_json(), media_type="application/json")
