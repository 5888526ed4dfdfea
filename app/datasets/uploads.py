"""Accepting an upload: check the received file, keep it under a generated name, record it.

Shared by the JSON API and the job form. The caller opens the transaction that records the dataset
(``record``); if that fails the stored file is removed again, so nothing is half-written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.datasets.files import DatasetFiles, Received
from app.datasets.validate import inspect_npz

T = TypeVar("T")


def accept_upload(
    received: Received, *, files: DatasetFiles, record: Callable[[str, dict[str, Any]], T]
) -> T:
    """Check ``received`` (:class:`app.datasets.validate.InvalidDataset` if refused), move it into the
    store and call ``record(storage_name, summary)``; the file is removed on any failure."""
    try:
        summary = inspect_npz(received.path, max_array_bytes=files.max_bytes)
        storage_name = files.keep(received)
    except BaseException:
        files.discard(received)
        raise
    try:
        return record(storage_name, summary)
    except BaseException:
        files.remove(storage_name)
        raise
