"""Fixtures for the queue tests: real servers, workers and brokers (see ``harness``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.queue.harness import Stack


@pytest.fixture(scope="module")
def redis_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server and one CPU worker on the machine's Redis (a unique queue prefix per stack)."""
    stack = Stack(tmp_path_factory.mktemp("redis-stack"), broker_url=redis_url)
    try:
        stack.start_server()
        stack.start_worker()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def sqlite_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server on the embedded SQLite broker; the test starts (and kills) its own workers."""
    stack = Stack(tmp_path_factory.mktemp("sqlite-stack"))
    try:
        stack.start_server()
        yield stack
    finally:
        stack.close()
