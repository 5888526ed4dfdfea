"""Server-side CLI commands (``collapsewatch db|token|serve``). Module-level imports: stdlib only."""

from __future__ import annotations

import argparse
import sys


def db_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "downgrade"], help="apply (or revert) migrations")
    parser.add_argument("revision", nargs="?", default=None, help="target (default: head / base)")


def db(args: argparse.Namespace) -> int:
    from app.db import make_engine
    from app.migrate import downgrade, upgrade
    from app.settings import get_settings

    engine = make_engine(get_settings())
    try:
        if args.action == "upgrade":
            upgrade(engine, args.revision or "head")
        else:
            downgrade(engine, args.revision or "base")
    finally:
        engine.dispose()
    print(f"database {args.action} done", file=sys.stderr)
    return 0


def token_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create"], help="create a token for the local admin")
    parser.add_argument("--worker", action="store_true", help="a worker token (ingestion routes only)")
    parser.add_argument("--name", default=None, help="a label shown in token lists")


def token(args: argparse.Namespace) -> int:
    """Print ONLY the new token on stdout (so `export CW_TOKEN=$(collapsewatch token create)` works)."""
    from app.auth.api_tokens import create_token, ensure_admin
    from app.db import Database
    from app.migrate import upgrade
    from app.settings import get_settings

    settings = get_settings()
    database = Database(settings)
    try:
        upgrade(database.engine)
        kind = "worker" if args.worker else "user"
        with database.transaction() as session:
            admin = ensure_admin(session=session, email=settings.admin_email)
            new = create_token(session=session, user=admin, name=args.name or f"{kind} token", kind=kind)
    finally:
        database.dispose()
    print(new.token)
    return 0


def serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.jobs.embedded import GRACEFUL_SHUTDOWN_S

    # open SSE streams never end by themselves: give them GRACEFUL_SHUTDOWN_S, then close them
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        proxy_headers=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return 0


def up_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--gpus", default="auto", help="the embedded worker's GPUs: auto (default), none, or indices like 0,1"
    )
    parser.add_argument("--no-worker", action="store_true", help="serve only (workers run elsewhere)")


def up(args: argparse.Namespace) -> int:
    """Migrate, then serve with one embedded worker (see app/embedded.py)."""
    from app.jobs.embedded import run_up

    return run_up(host=args.host, port=args.port, gpus=args.gpus, worker=not args.no_worker)


def beat_args(parser: argparse.ArgumentParser) -> None:
    return None


def beat(args: argparse.Namespace) -> int:
    """Run the reaper/sweeper loop without serving (leader-locked: safe next to the web servers)."""
    from app.jobs.embedded import run_beat

    return run_beat()


def demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="the server (default: PUBLIC_URL, http://127.0.0.1:8000)")
    parser.add_argument(
        "--token", default=None, help="an API token (default: $COLLAPSEWATCH_TOKEN, else a new local one)"
    )
    parser.add_argument("--project", default="demo", help="project for the demo runs (default: demo)")
    parser.add_argument("--quick", action="store_true", help="the small variant (about 2 CPU minutes)")
    parser.add_argument("--no-wait", action="store_true", help="submit and exit (no reports written)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the runs")


def demo(args: argparse.Namespace) -> int:
    """Submit the seed's claims as sweeps (app/cli/demo.py), wait for them showing progress, then
    save one report per claim whose notes state the measured numbers."""
    import os
    import time

    from app.cli.demo import compare_url, experiments, local_token, new_batch, run_count
    from app.cli.demo_client import DemoClient, finish_reports

    if args.url is None:
        from app.settings import get_settings

        args.url = get_settings().public_url
    token = args.token or os.environ.get("COLLAPSEWATCH_TOKEN") or local_token()
    batch = new_batch()
    items = experiments(quick=args.quick, project=args.project, batch=batch)
    client = DemoClient(args.url, token)
    began = time.monotonic()
    try:
        try:
            submitted = client.submit(items)
        except Exception as exc:  # connection refused, 401, 422: say what happened and how to fix it
            print(
                f"demo: could not submit to {args.url}: {exc}\nIs `collapsewatch up` running?",
                file=sys.stderr,
            )
            return 1
        variant = "quick" if args.quick else "full"
        print(f"demo {batch} ({variant}): {run_count(items)} runs in project {args.project!r}", flush=True)
        for item in submitted:
            print(f"{item.experiment.title}: {len(item.run_ids)} runs (sweep {item.sweep_id})")
            print(f"  {compare_url(args.url, item.sweep_id, item.experiment.view)}", flush=True)
        if args.no_wait:
            return 0
        try:
            client.wait(submitted, timeout=args.timeout, progress=lambda line: print(line, flush=True))
        except TimeoutError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        trained = time.monotonic() - began
        for finding, url in finish_reports(client, batch, submitted):
            print(f"report {finding.key}: {url}\n  {finding.verdict}", flush=True)
        total = time.monotonic() - began
        print(f"demo {batch} done: runs finished after {trained:.0f} s, reports written after {total:.0f} s")
        return 0
    finally:
        client.close()


def user_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create"], help="create an account")
    parser.add_argument("email", help="the new user's email (their sign-in name)")
    parser.add_argument("--admin", action="store_true", help="an admin (may do everything; the first user)")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (first line); otherwise prompt twice, or none if not a terminal",
    )


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        return None  # no password: the user signs in after an invitation or a later password set
    import getpass

    first = getpass.getpass("Password (10+ characters): ")
    if first != getpass.getpass("Repeat it: "):
        raise ValueError("the two passwords differ")
    return first


def user(args: argparse.Namespace) -> int:
    """Create a user (Argon2id password hash); prints the new user's id on stdout."""
    from app.auth.accounts import create_user
    from app.db import Database
    from app.errors import DomainError
    from app.migrate import upgrade
    from app.settings import get_settings

    try:
        password = _read_password(args)
    except ValueError as exc:
        print(f"user create: {exc}", file=sys.stderr)
        return 2
    database = Database(get_settings())
    try:
        upgrade(database.engine)
        with database.transaction() as session:
            created = create_user(session=session, email=args.email, password=password, is_admin=args.admin)
            user_id, email = created.id, created.email
    except DomainError as exc:
        print(f"user create: {exc.message}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    role = "admin" if args.admin else "user"
    print(f"created {role} {email} (id {user_id})", file=sys.stderr)
    print(user_id)
    return 0
