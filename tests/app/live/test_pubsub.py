"""The in-process and Redis brokers: thread-safe publish, fan-out, all-runs channel, lag flag."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from app.live.pubsub import (
    ALL_RUNS,
    QUEUE_SIZE,
    Event,
    InProcessBroker,
    RedisBroker,
    decode,
    encode,
    make_broker,
)


async def _next(queue: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(queue.get(), 10)


def test_publish_when_called_from_other_thread_reaches_subscriber_in_order() -> None:
    broker = InProcessBroker()

    async def scenario() -> list[Event]:
        async with broker.subscribe(7) as sub:

            def writer() -> None:
                for i in range(1, 6):
                    broker.publish(7, "epoch", {"epoch": i, "event_id": 100 + i})

            thread = threading.Thread(target=writer)
            thread.start()
            got = [await _next(sub.queue) for _ in range(5)]
            thread.join()
            return got

    got = asyncio.run(scenario())
    assert [(e.run_id, e.type, e.id, e.data) for e in got] == [
        (7, "epoch", 100 + i, {"epoch": i}) for i in range(1, 6)
    ]


def test_publish_when_status_also_reaches_all_runs_subscribers_but_epochs_do_not() -> None:
    broker = InProcessBroker()

    async def scenario() -> tuple[list[Event], bool, int]:
        async with broker.subscribe(ALL_RUNS) as everyone, broker.subscribe(3) as other_run:
            broker.publish(1, "epoch", {"epoch": 0, "event_id": 1})
            broker.publish(2, "status", {"status": "running", "event_id": 2})
            broker.publish(1, "status", {"status": "succeeded", "event_id": 3})
            got = [await _next(everyone.queue), await _next(everyone.queue)]
            await asyncio.sleep(0.05)
            return got, other_run.queue.empty(), broker.hub.count()

    got, other_empty, subscribed = asyncio.run(scenario())
    assert [(e.run_id, e.payload["status"]) for e in got] == [(2, "running"), (1, "succeeded")]
    assert other_empty and subscribed == 2
    assert broker.hub.count() == 0  # leaving the block unsubscribes


def test_publish_when_queue_full_flags_subscriber_lagged() -> None:
    broker = InProcessBroker()

    async def scenario() -> tuple[bool, int]:
        async with broker.subscribe(1) as sub:
            for i in range(QUEUE_SIZE + 5):
                broker.publish(1, "log", {"line": str(i), "event_id": i + 1})
            await asyncio.sleep(0.1)
            size = sub.queue.qsize()
            sub.drain()
            return sub.lagged, size

    lagged, size = asyncio.run(scenario())
    assert lagged and size == QUEUE_SIZE


def test_publish_when_no_subscribers_does_nothing_and_does_not_raise() -> None:
    InProcessBroker().publish(1, "status", {"status": "running", "event_id": 1})


def test_encode_decode_when_round_trip_keeps_event() -> None:
    event = Event(4, "epoch", {"epoch": 2, "metrics": {"val_acc": 0.5}, "event_id": 9})
    assert decode(encode(event)) == event


@pytest.mark.redis
def test_make_broker_when_redis_url_set_returns_redis_broker(redis_url: str) -> None:
    assert type(make_broker(None)) is InProcessBroker
    assert isinstance(make_broker(redis_url), RedisBroker)


@pytest.mark.redis
def test_redis_broker_when_two_processes_share_redis_delivers_across(redis_url: str) -> None:
    prefix = f"cwtest-{uuid.uuid4().hex[:8]}"
    writer, reader = RedisBroker(redis_url, prefix=prefix), RedisBroker(redis_url, prefix=prefix)

    async def scenario() -> tuple[list[Event], list[Event]]:
        async with reader.subscribe(5) as run_sub, reader.subscribe(ALL_RUNS) as all_sub:
            assert not run_sub.lagged and not all_sub.lagged  # Redis confirmed the subscriptions
            # publish from a worker thread, as the sync routes do
            await asyncio.to_thread(writer.publish, 5, "epoch", {"epoch": 0, "event_id": 11})
            await asyncio.to_thread(writer.publish, 6, "epoch", {"epoch": 0, "event_id": 12})
            await asyncio.to_thread(writer.publish, 5, "status", {"status": "succeeded", "event_id": 13})
            run_events = [await _next(run_sub.queue), await _next(run_sub.queue)]
            all_events = [await _next(all_sub.queue)]
        await reader.aclose()
        return run_events, all_events

    try:
        run_events, all_events = asyncio.run(scenario())
    finally:
        writer._sync.close()
    assert [(e.run_id, e.type, e.id) for e in run_events] == [(5, "epoch", 11), (5, "status", 13)]
    assert [(e.run_id, e.payload["status"], e.id) for e in all_events] == [(5, "succeeded", 13)]


@pytest.mark.redis
def test_redis_broker_when_redis_unreachable_delivers_locally_and_flags_lag() -> None:
    broker = RedisBroker("redis://127.0.0.1:9/0", ready_timeout_s=0.3, reconnect_s=0.1)

    async def scenario() -> tuple[bool, list[Event]]:
        async with broker.subscribe(1) as sub:
            lagged = sub.lagged  # Redis never confirmed: the stream will re-read the database
            for i in (1, 2):  # the first fails over to local delivery, the second skips Redis
                await asyncio.to_thread(broker.publish, 1, "status", {"status": "running", "event_id": i})
            got = [await _next(sub.queue), await _next(sub.queue)]
        await broker.aclose()
        return lagged, got

    lagged, got = asyncio.run(scenario())
    assert lagged and [e.id for e in got] == [1, 2]
