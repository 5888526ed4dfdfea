"""The SDK's on-disk spool and its background outbox (no network: ``send`` is a plain function)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from collapsewatch.sdk.outbox import Outbox
from collapsewatch.sdk.spool import Entry, Spool, leftover_files, replay_file


class Down(Exception):
    """Stands for "server unreachable" (retryable)."""


class Refused(Exception):
    """Stands for a 4xx answer (not retryable)."""


def entries(n: int, start: int = 0) -> list[Entry]:
    return [{"kind": "epoch", "run": 1, "epoch": i, "body": {"i": i}} for i in range(start, start + n)]


def replay(path: Path, sent: list[Entry], fail_after: int | None = None) -> tuple[int, int]:
    def send(entry: Entry) -> None:
        if fail_after is not None and len(sent) >= fail_after:
            raise Down("still down")
        sent.append(entry)

    return replay_file(path, send, retryable=(Down,), on_rejected=lambda e, x: None)


def test_replay_resends_appended_entries_in_order_then_deletes_the_file(tmp_path: Path) -> None:
    spool = Spool.new(tmp_path, 1)
    for entry in entries(5):
        spool.append(entry)
    spool.release()
    sent: list[Entry] = []
    assert replay(spool.path, sent) == (5, 0)
    assert sent == entries(5)
    assert list(tmp_path.iterdir()) == []


def test_acquire_cuts_a_torn_last_line(tmp_path: Path) -> None:
    spool = Spool.new(tmp_path, 1)
    for entry in entries(3):
        spool.append(entry)
    spool.release()
    with spool.path.open("ab") as fh:  # a crash in the middle of the fourth write
        fh.write(b'{"kind": "epoch", "run": 1, "ep')
    sent: list[Entry] = []
    assert replay(spool.path, sent, fail_after=3) == (3, 0)
    assert sent == entries(3)


def test_append_after_a_torn_line_keeps_later_entries_readable(tmp_path: Path) -> None:
    spool = Spool.new(tmp_path, 1)
    spool.append(entries(1)[0])
    spool.release()
    with spool.path.open("ab") as fh:
        fh.write(b'{"kind": "ep')
    again = Spool(spool.path)
    assert again.acquire()
    again.append(entries(1, start=1)[0])
    again.release()
    sent: list[Entry] = []
    replay(spool.path, sent)
    assert sent == entries(2)


def test_replay_stops_at_the_first_retryable_failure_and_resumes_after_it(tmp_path: Path) -> None:
    spool = Spool.new(tmp_path, 1)
    for entry in entries(6):
        spool.append(entry)
    spool.release()
    sent: list[Entry] = []
    assert replay(spool.path, sent, fail_after=2) == (2, 4)
    assert spool.path.exists()
    assert replay(spool.path, sent) == (4, 0)
    assert sent == entries(6)  # each entry exactly once, in order
    assert not spool.path.exists()


def test_replay_drops_refused_entries_and_reports_them(tmp_path: Path) -> None:
    spool = Spool.new(tmp_path, 1)
    for entry in entries(3):
        spool.append(entry)
    spool.release()
    refused: list[Entry] = []

    def send(entry: Entry) -> None:
        if entry["epoch"] == 1:
            raise Refused("HTTP 422")

    result = replay_file(spool.path, send, retryable=(Down,), on_rejected=lambda e, x: refused.append(e))
    assert result == (3, 0)
    assert refused == [entries(3)[1]]


def test_replay_skips_a_file_held_by_a_live_writer(tmp_path: Path) -> None:
    live = Spool.new(tmp_path, 7)
    live.append(entries(1)[0])
    sent: list[Entry] = []
    assert replay(live.path, sent) == (0, 1)
    assert sent == []
    live.release()
    assert replay(live.path, sent) == (1, 0)


def test_leftover_files_lists_only_spool_journals(tmp_path: Path) -> None:
    spool = Spool.new(tmp_path, 3)
    spool.append(entries(2)[0])
    spool.append(entries(2)[1])
    spool.pop()  # writes the .offset sidecar
    spool.release()
    assert leftover_files(tmp_path) == [spool.path]
    assert leftover_files(tmp_path / "missing") == []


def test_spool_keeps_entries_in_memory_when_the_directory_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    spool = Spool.new(blocker, 1)  # its parent is a file: every disk write fails
    spool.append(entries(1)[0])
    assert len(spool) == 1 and spool.peek() == entries(1)[0]
    spool.pop()
    assert len(spool) == 0


class FlakySender:
    """Fails (retryable) while ``down`` is set; records what was delivered."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.delivered: list[Entry] = []
        self.attempts = 0

    def __call__(self, entry: Entry) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise Down("connection refused")
        self.delivered.append(entry)


def make_outbox(tmp_path: Path, send: Any, **kwargs: Any) -> Outbox:
    options: dict[str, Any] = {"backoff": 0.01, "backoff_max": 0.05, "on_rejected": lambda e, x: None}
    return Outbox(send, Spool.new(tmp_path, 1), retryable=(Down,), **(options | kwargs))


def test_outbox_delivers_in_order_while_the_server_is_up(tmp_path: Path) -> None:
    sender = FlakySender()
    outbox = make_outbox(tmp_path, sender)
    for entry in entries(50):
        outbox.put(entry)
    assert outbox.close(timeout=10)
    assert sender.delivered == entries(50)
    assert list(tmp_path.iterdir()) == []


def test_outbox_spools_during_an_outage_and_resends_everything_once_in_order(tmp_path: Path) -> None:
    sender = FlakySender()
    outbox = make_outbox(tmp_path, sender)
    sender.down.set()
    for entry in entries(30):
        outbox.put(entry)
    assert not outbox.flush(timeout=0.3)
    assert outbox.spool.path.exists()
    assert sender.delivered == []
    sender.down.clear()
    for entry in entries(10, start=30):
        outbox.put(entry)
    assert outbox.close(timeout=10)
    assert sender.delivered == entries(40)
    assert not outbox.spool.path.exists()


def test_outbox_close_leaves_the_spool_on_disk_when_the_server_stays_down(tmp_path: Path) -> None:
    sender = FlakySender()
    sender.down.set()
    outbox = make_outbox(tmp_path, sender)
    for entry in entries(5):
        outbox.put(entry)
    assert not outbox.close(timeout=0.2)
    sender.down.clear()
    sent: list[Entry] = []
    assert replay(outbox.spool.path, sent) == (5, 0)
    assert sent == entries(5)


def test_outbox_drops_refused_writes_and_keeps_going(tmp_path: Path) -> None:
    refused: list[Entry] = []
    delivered: list[Entry] = []

    def send(entry: Entry) -> None:
        if entry["epoch"] == 2:
            raise Refused("HTTP 422: metrics.x is not finite")
        delivered.append(entry)

    outbox = make_outbox(tmp_path, send, on_rejected=lambda e, x: refused.append(e))
    for entry in entries(4):
        outbox.put(entry)
    assert outbox.close(timeout=10)
    assert refused == [entries(4)[2]]
    assert delivered == [e for e in entries(4) if e["epoch"] != 2]


def test_outbox_calls_tick_from_its_thread(tmp_path: Path) -> None:
    ticked = threading.Event()
    outbox = make_outbox(tmp_path, FlakySender(), tick=ticked.set, tick_interval=0.01)
    assert ticked.wait(timeout=10)
    assert outbox.close(timeout=10)


@pytest.mark.parametrize("crash_at", [0, 2])
def test_replay_after_a_crash_resends_undelivered_entries_only(tmp_path: Path, crash_at: int) -> None:
    spool = Spool.new(tmp_path, 1)
    for entry in entries(4):
        spool.append(entry)
    for _ in range(crash_at):
        spool.pop()
    spool.release()  # the process dies here without deleting anything
    sent: list[Entry] = []
    assert replay(spool.path, sent) == (4 - crash_at, 0)
    assert sent == entries(4)[crash_at:]
