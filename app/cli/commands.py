"""Server-side CLI commands (``collapsewatch up|serve|beat|db|token|user|demo``).

Module-level imports: stdlib only (and :mod:`app.cli.common`, which is). Every command that opens the
database takes ``--data DIR`` and turns an unreachable database into one line (collapsewatch/cli.py
prints it; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys

from app.cli.common import DATA_DIR_VAR, data_arg, reaching_database, sqlite_path, use_data_dir


def db_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["upgrade", "downgrade"], help="apply (or revert) migrations")
    parser.add_argument("revision", nargs="?", default=None, help="target (default: head / base)")
    data_arg(parser)


def db(args: argparse.Namespace) -> int:
    from app.db import make_engine
    from app.migrate import downgrade, upgrade
    from app.settings import get_settings

    use_data_dir(args)
    settings = get_settings()
    engine = make_engine(settings)
    try:
        with reaching_database(settings):
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
    parser.add_argument(
        "--file",
        default=None,
        metavar="PATH",
        help="write the token to PATH (mode 0600) instead of printing it, keeping a still-valid token "
        "of the same kind already there (docker-compose's worker-token service runs this on every start)",
    )
    data_arg(parser)


def token(args: argparse.Namespace) -> int:
    """Print ONLY the new token on stdout (so `export COLLAPSEWATCH_TOKEN=$(collapsewatch token create)`
    works), or write it to ``--file``."""
    from pathlib import Path

    from app.auth.api_tokens import create_token, ensure_admin
    from app.auth.token_file import ensure_token_file
    from app.db import Database
    from app.migrate import upgrade
    from app.settings import get_settings

    use_data_dir(args)
    settings = get_settings()
    database = Database(settings)
    kind = "worker" if args.worker else "user"
    name = args.name or f"{kind} token"
    new_file = sqlite_path(settings.database_url)
    if new_file is not None and new_file.exists():
        new_file = None
    try:
        with reaching_database(settings):
            upgrade(database.engine)
            if new_file is not None:
                print(
                    f"note: there was no database at {new_file}: created it. A server started from "
                    "another folder will not know this token: run this where `collapsewatch up` runs, "
                    f"or pass the same --data DIR (${DATA_DIR_VAR}) to both",
                    file=sys.stderr,
                )
            if args.file:
                _, created = ensure_token_file(
                    database=database,
                    path=Path(args.file),
                    admin_email=settings.admin_email,
                    kind=kind,
                    name=name,
                )
                print(f"{kind} token {'written to' if created else 'kept in'} {args.file}", file=sys.stderr)
                return 0
            with database.transaction() as session:
                admin = ensure_admin(session=session, email=settings.admin_email)
                new = create_token(session=session, user=admin, name=name, kind=kind)
    finally:
        database.dispose()
    print(new.token)
    return 0


def serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    data_arg(parser)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.cli.up import check_services, default_public_url
    from app.jobs.embedded import GRACEFUL_SHUTDOWN_S
    from app.settings import get_settings

    use_data_dir(args)
    default_public_url(args.host, args.port)
    # One line if the database cannot be reached. A broker that is down is no reason not to serve:
    # submitted runs stay queued and the sweeper re-sends them once it is back.
    check_services(get_settings(), broker=False)

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
    data_arg(parser)


def up(args: argparse.Namespace) -> int:
    """Migrate, then serve with one embedded worker (see app/jobs/embedded.py)."""
    from app.cli.up import run_up

    use_data_dir(args)
    return run_up(host=args.host, port=args.port, gpus=args.gpus, worker=not args.no_worker)


def beat_args(parser: argparse.ArgumentParser) -> None:
    data_arg(parser)


def beat(args: argparse.Namespace) -> int:
    """Run the reaper/sweeper loop without serving (leader-locked: safe next to the web servers)."""
    from app.cli.up import run_beat

    use_data_dir(args)
    return run_beat()


def demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help="the server (default: $COLLAPSEWATCH_URL, else $COLLAPSEWATCH_PUBLIC_URL, else http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--token", default=None, help="an API token (default: $COLLAPSEWATCH_TOKEN, else a new local one)"
    )
    parser.add_argument("--project", default="demo", help="project for the demo runs (default: demo)")
    parser.add_argument(
        "--quick", action="store_true", help="the small variant (16 short runs: under a minute on 2 cores)"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="print the URLs and return (no reports are written)"
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the runs")
    data_arg(parser)


def _progress_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def demo(args: argparse.Namespace) -> int:
    """Submit the seed's claims as sweeps (app/demo/experiments.py), print their compare URLs, follow the runs
    showing progress, then save one report per claim whose notes state the measured numbers."""
    import os
    import time

    from app.cli.demo import local_token
    from app.cli.demo_client import DemoClient, ServerRefused, finish_reports
    from app.demo.experiments import compare_url, experiments, new_batch, run_count
    from collapsewatch.cli import CommandError

    use_data_dir(args)
    if args.url is None:
        from app.settings import get_settings

        args.url = os.environ.get("COLLAPSEWATCH_URL") or get_settings().public_url
    token = args.token or os.environ.get("COLLAPSEWATCH_TOKEN") or local_token()
    batch = new_batch()
    items = experiments(quick=args.quick, project=args.project, batch=batch)
    client = DemoClient(args.url, token)
    began = time.monotonic()
    try:
        try:
            submitted = client.submit(items)
        except ServerRefused as exc:  # 401, 403, 422: the server is there and said no
            hint = (
                "the token was refused: pass --token or $COLLAPSEWATCH_TOKEN (`collapsewatch token create` "
                "where the server runs makes one)"
                if exc.status in (401, 403)
                else "see the message above"
            )
            raise CommandError(f"could not submit to {args.url}: {exc} ({hint})") from exc
        except Exception as exc:  # connection refused, a wrong address
            raise CommandError(
                f"could not submit to {args.url}: {exc} "
                "(is `collapsewatch up` running? --url or $COLLAPSEWATCH_URL names another server)"
            ) from exc
        variant = "quick" if args.quick else "full"
        print(f"demo {batch} ({variant}): {run_count(items)} runs in project {args.project!r}", flush=True)
        for item in submitted:
            print(f"{item.experiment.title}: {len(item.run_ids)} runs (sweep {item.sweep_id})")
            print(f"  {compare_url(args.url, item.sweep_id, item.experiment.view)}", flush=True)
        if args.no_wait:
            return 0
        try:
            ended = client.wait(submitted, timeout=args.timeout, progress=_progress_line)
        except KeyboardInterrupt:
            print("stopped following; the runs go on (see the URLs above)", file=sys.stderr)
            return 0
        except TimeoutError as exc:
            raise CommandError(str(exc)) from exc
        trained = time.monotonic() - began
        failed = {status: n for status, n in ended.items() if status != "succeeded"}
        print(
            f"demo runs ended: {ended.get('succeeded', 0)} succeeded"
            + "".join(f", {n} {s}" for s, n in failed.items()),
            flush=True,
        )
        if not ended.get("succeeded"):
            return 1
        for finding, url in finish_reports(client, batch, submitted):
            print(f"report {finding.key}: {url}\n  {finding.verdict}", flush=True)
        total = time.monotonic() - began
        print(f"demo {batch} done: runs finished after {trained:.0f} s, reports written after {total:.0f} s")
        return 1 if failed else 0
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
    data_arg(parser)


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        return None  # no password: the account cannot sign in (an invitation never sets one)
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
        print(f"collapsewatch user create: error: {exc}", file=sys.stderr)
        return 2
    use_data_dir(args)
    settings = get_settings()
    database = Database(settings)
    try:
        with reaching_database(settings):
            upgrade(database.engine)
            with database.transaction() as session:
                created = create_user(
                    session=session, email=args.email, password=password, is_admin=args.admin
                )
                user_id, email = created.id, created.email
    except DomainError as exc:
        print(f"collapsewatch user create: error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        database.dispose()
    role = "admin" if args.admin else "user"
    print(f"created {role} {email} (id {user_id})", file=sys.stderr)
    print(user_id)
    return 0
