"""``collapsewatch sync [PATH ...]``: upload offline runs (:mod:`collapsewatch.sdk.offline`).

Idempotent and resumable: the server returns the same run for a run's ``client_id``, and ``sync.json``
in each run directory records, per server, how far its ``writes.jsonl`` was delivered (updated after
each write), so a second sync sends nothing and an interrupted one (even by kill -9) resumes where it
stopped. Every write is idempotent on the server besides, so a write sent twice changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from collapsewatch.contract import RunCreate
from collapsewatch.sdk.client import Client
from collapsewatch.sdk.errors import ApiError, CollapsewatchError, ServerUnavailable
from collapsewatch.sdk.heartbeat import Heartbeat, heartbeat_interval
from collapsewatch.sdk.offline import (
    RUN_FILE,
    SYNC_FILE,
    WRITES_FILE,
    default_root,
    find_runs,
    lock,
    read_writes,
    write_json,
)
from collapsewatch.sdk.spool import log_rejection

log = logging.getLogger("collapsewatch.sync")


@dataclass
class Outcome:
    """What syncing one run did: ``state`` is synced, already (nothing to send), busy or failed."""

    path: Path
    state: str
    run_id: int | None = None
    sent: int = 0
    message: str = ""


def sync_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", type=Path,
        help="offline run directories, or folders holding them (default: every run not yet synced "
        "under $COLLAPSEWATCH_DIR, else ./collapsewatch)",
    )  # fmt: skip
    parser.add_argument(
        "--url", help="the server (default: $COLLAPSEWATCH_URL, else http://127.0.0.1:8000); the API "
        "token comes from $COLLAPSEWATCH_TOKEN",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def sync(args: argparse.Namespace) -> int:
    """The ``sync`` command: 0 when every run is on the server, 1 otherwise (each problem on one line)."""
    paths: list[Path] = args.paths or [default_root()]
    runs = find_runs(paths)
    if not runs:
        print(f"collapsewatch sync: no offline runs under {', '.join(map(str, paths))}", file=sys.stderr)
        return 0 if not args.paths else 1
    token = os.environ.get("COLLAPSEWATCH_TOKEN", "")
    if not token:
        print("collapsewatch sync: set COLLAPSEWATCH_TOKEN to an API token of the server (create one "
              "there with `collapsewatch token create`)", file=sys.stderr)  # fmt: skip
        return 2
    try:
        client = Client(
            args.url or os.environ.get("COLLAPSEWATCH_URL", "http://127.0.0.1:8000"), token, max_retries=3
        )
    except ValueError as exc:
        print(f"collapsewatch sync: {exc}", file=sys.stderr)
        return 2
    failed = skipped = 0
    with client:
        for path in runs:
            outcome = sync_run(client, path, progress=not args.quiet, skip_synced=not args.paths)
            failed += outcome.state in ("failed", "busy")
            skipped += outcome.state == "skipped"
            if outcome.state != "skipped":
                print(describe(client, outcome), file=sys.stderr if outcome.state == "failed" else sys.stdout)
            if outcome.state == "failed" and "unreachable" in outcome.message:
                break  # the next runs would fail the same way
    if skipped == len(runs):
        print(f"collapsewatch sync: the {skipped} offline run(s) under {paths[0]} are already synced")
    return 1 if failed else 0


def describe(client: Client, outcome: Outcome) -> str:
    where = f"{client.url}/runs/{outcome.run_id}" if outcome.run_id is not None else client.url
    if outcome.state == "synced":
        return f"synced {outcome.path} -> {where} ({outcome.sent} writes){outcome.message}"
    if outcome.state == "already":
        return f"already synced {outcome.path} -> {where}"
    return f"collapsewatch sync: {outcome.path}: {outcome.message}"


def sync_run(client: Client, path: Path, *, progress: bool = True, skip_synced: bool = False) -> Outcome:
    """Upload one offline run to ``client``'s server, resuming a sync that was interrupted."""
    fd = os.open(path / WRITES_FILE, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        if not lock(fd):
            return Outcome(path, "busy", message="still being written or synced by another process; skipped")
        return _sync_locked(client, path, progress=progress, skip_synced=skip_synced)
    finally:
        os.close(fd)


def _sync_locked(client: Client, path: Path, *, progress: bool, skip_synced: bool) -> Outcome:
    states = _read_states(path)
    state = states.get(client.url, {})
    entries, end = read_writes(path)
    offset = int(state.get("offset", 0))
    if state.get("run_id") is not None and offset >= end:
        return Outcome(path, "skipped" if skip_synced else "already", run_id=int(state["run_id"]))
    try:
        body = RunCreate.model_validate_json((path / RUN_FILE).read_text())
        info = client.create_run(body)  # the same run again for this client_id
    except (ValueError, OSError) as exc:
        return Outcome(path, "failed", message=f"{RUN_FILE} is not readable: {exc}")
    except ServerUnavailable as exc:
        return Outcome(path, "failed", message=f"the server is unreachable: {exc}")
    except ApiError as exc:
        return Outcome(path, "failed", message=f"the server refused the run: {exc.message}")
    state = {"run_id": info.id, "offset": offset if state.get("run_id") == info.id else 0}
    finished = info.status in ("succeeded", "failed", "cancelled")  # it reached the server whole
    if finished:  # before (this directory's sync.json was lost, or the directory was copied)
        state["offset"] = end
    states[client.url] = state
    write_json(path / SYNC_FILE, states)
    if finished:
        return Outcome(path, "already", run_id=info.id)
    todo = [(entry, stop) for entry, stop in entries if stop > state["offset"]]
    heartbeat = Heartbeat(client, info.id, info.attempt, heartbeat_interval(info.lease_seconds))
    try:
        heartbeat.beat()  # a sync interrupted long enough ago finds its run `crashed`: revive it
        sent = _send_all(client, path, info.id, info.attempt, todo, states, progress=progress)
    except ServerUnavailable as exc:
        return Outcome(path, "failed", run_id=info.id, message=f"the server became unreachable: {exc}")
    finally:
        heartbeat.stop()
    note = (
        ""
        if any(entry.get("kind") == "finish" for entry, _ in entries)
        else (
            "; it never finished, so the server marks it crashed once its lease runs out "
            f"(continue it with cw.init(id={info.id}, resume=True))"
        )
    )
    return Outcome(path, "synced", run_id=info.id, sent=sent, message=note)


def _send_all(
    client: Client,
    path: Path,
    run_id: int,
    attempt: int,
    todo: list[tuple[dict[str, Any], int]],
    states: dict[str, Any],
    *,
    progress: bool,
) -> int:
    bar = tqdm(total=len(todo), desc=path.name, unit="write", disable=not progress or not todo, leave=False)
    sent = 0
    with bar:
        for entry, stop in todo:
            entry = {**entry, "run": run_id, "body": {**entry["body"], "attempt": attempt}}
            try:
                client.send_entry(entry)
            except ServerUnavailable:
                raise
            except CollapsewatchError as exc:
                log_rejection(entry, exc)  # refused for good (4xx): the server says why; go on
            sent += 1
            states[client.url]["offset"] = stop
            write_json(path / SYNC_FILE, states)
            bar.update()
    return sent


def _read_states(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / SYNC_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
