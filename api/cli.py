"""The `shoka` command. Every subcommand works on the same data directory whether or not
`shoka serve` is running; failures print a plain sentence, never a stack trace."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.config import ConfigError, Settings, load_settings, process_count
from api.errors import ShokaError
from api.runtime.datadir import DataDirError
from api.runtime.services import database_available


def _print(msg: str) -> None:
    print(msg, flush=True)


# -- serve and its processes -----------------------------------------------------------------

def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from api.runtime.supervisor import serve

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return serve(settings, logging.getLogger("shoka.serve"))


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """One process of the system, as compose.yaml runs them: staff, opac, worker or scheduler."""
    from api.runtime import services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from api.web import AccessLogWithoutQuery

    logging.getLogger("uvicorn.access").addFilter(AccessLogWithoutQuery())
    proxy = {"proxy_headers": True, "forwarded_allow_ips": os.environ.get("SHOKA_TRUSTED_PROXIES", "127.0.0.1")}
    if args.process == "staff":
        import uvicorn

        from api.app import create_staff_app
        from api.runtime.http import NoDelayH11Protocol

        app = create_staff_app(settings, services.database_url(settings), services.redis_url(settings))
        uvicorn.run(app, host=settings.host, port=settings.staff_port, log_level="info", http=NoDelayH11Protocol,
                    **proxy)  # type: ignore[arg-type]
    elif args.process == "opac":
        import uvicorn

        from api.runtime.http import NoDelayH11Protocol

        workers = opac_workers()
        if workers > 1:  # searches are CPU-bound: one process per core, each with its own engine and pool
            uvicorn.run("api.cli:opac_app", factory=True, workers=workers, host=settings.host,
                        port=settings.opac_port, log_level="info", http=NoDelayH11Protocol,
                        **proxy)  # type: ignore[arg-type]
        else:
            uvicorn.run(opac_app(settings), host=settings.host, port=settings.opac_port, log_level="info",
                        http=NoDelayH11Protocol, **proxy)  # type: ignore[arg-type]
    elif args.process == "worker":
        from workers.schedule import run_worker

        run_worker(services.redis_url(settings))
    else:
        from workers.schedule import run_scheduler

        run_scheduler(services.redis_url(settings))
    return 0


def opac_workers() -> int:
    """OPAC processes: SHOKA_OPAC_WORKERS, else one per core."""
    return process_count("SHOKA_OPAC_WORKERS")


def opac_app(settings: Settings | None = None) -> Any:
    """The OPAC app; uvicorn calls this as a factory in each worker process when there are several."""
    from api.runtime import services
    from api.web import AccessLogWithoutQuery
    from opac.app import create_opac_app

    settings = settings or load_settings()
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogWithoutQuery) for f in access.filters):  # a worker process starts bare
        access.addFilter(AccessLogWithoutQuery())
    return create_opac_app(settings, services.opac_database_url(settings), services.redis_url(settings))


# -- database ------------------------------------------------------------------------------

def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from api import migrate
    from api.runtime.postgres import OPAC_ROLE

    with database_available(settings, current_schema=False) as url:
        before, after = migrate.upgrade(url)
        if settings.embedded_postgres:
            migrate.ensure_opac_login(url, OPAC_ROLE)
    _print(f"Database is at revision {after}" + (f" (was {before or 'empty'})." if before != after else
                                                 " (already current)."))
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from api import demo

    with database_available(settings) as url:
        _print(demo.load(url))
        _print(demo.load_catalogue(settings, url))
        _print(demo.load_circulation(settings, url))
    return 0


# -- staff accounts --------------------------------------------------------------------------

def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password again: "):
            raise ShokaError("password_mismatch", "パスワードが一致しません。", "The passwords do not match.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_staff(settings: Settings, args: argparse.Namespace) -> int:
    from api import db
    from api.audit import Actor
    from api.auth import service

    with database_available(settings) as url, db.connect(url) as conn:
        actor = Actor.cli()
        if args.staff_cmd == "create":
            service.create_account(conn, actor, args.name, _read_password(), display_name=args.display_name or "",
                                   roles=args.role or [], branch=args.branch)
            _print(f"Created staff account {args.name} with role(s) {', '.join(args.role or []) or 'none'}.")
        elif args.staff_cmd == "list":
            for row in service.list_accounts(conn):
                state = "active" if row["active"] else "inactive"
                _print(f"{row['username']:<20} {row['display_name']:<16} {row['branch'] or '-':<10} "
                       f"{','.join(row['roles']) or '-':<24} {state}")
        elif args.staff_cmd == "unlock":
            service.unlock_account(conn, actor, args.name)
            _print(f"Unlocked {args.name}.")
        elif args.staff_cmd == "password":
            service.update_account(conn, actor, args.name, password=_read_password())
            _print(f"Password of {args.name} changed; their sessions were closed.")
        elif args.staff_cmd == "assignments":
            text = Path(args.file).read_bytes().decode("utf-8-sig")
            report = service.import_assignments(conn, actor, text, dry_run=args.dry_run)
            _print(f"{'Would apply' if args.dry_run else 'Applied'} {len(report.applied)} row(s); "
                   f"rejected {len(report.rejected)}.")
            for line, reason in report.rejected:
                _print(f"  line {line}: {reason}")
            return 1 if report.rejected else 0
    return 0


# -- audit log --------------------------------------------------------------------------------

def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from api import db
    from api.audit import service

    with database_available(settings) as url, db.connect(url) as conn:
        if args.audit_cmd == "verify":
            checked, broken = service.verify(conn)
            if broken:
                _print(f"BROKEN: the audit log chain breaks at row {broken.row_id}: {broken.reason}. "
                       f"{checked} row(s) before it verified.")
                return 2
            _print(f"OK: {checked} audit log row(s) verified; the chain is intact.")
        else:
            removed = service.purge_expired(conn)
            _print(f"Removed {removed} audit log row(s) older than {service.RETENTION_YEARS} years.")
    return 0


# -- catalogue -----------------------------------------------------------------------------------

def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """Import records; print each rejected record's position and reason; exit 1 if any were rejected."""
    from api import db
    from api.audit import Actor
    from api.catalog.importer import ImportReport, run_import

    files = [Path(f) for f in args.files]
    for f in files:
        if not f.is_file():
            raise ShokaError("file_not_found", f"ファイル「{f}」がありません。", f"No such file: {f}")
    if args.kind == "marc":
        from api.catalog.marc_import import ProfileError, load_profile, read_marc

        try:
            load_profile(args.profile)
        except ProfileError as exc:
            raise ShokaError("unknown_profile", f"プロファイルを読み込めません: {exc}", str(exc)) from None

        def items(f: Path) -> Any:
            return read_marc(f, args.profile, marcxml=args.marcxml, staged=True)
    else:
        from api.catalog.aozora import read_aozora

        def items(f: Path) -> Any:
            return read_aozora(f)

    def progress(r: ImportReport) -> None:
        print(f"  {r.read} records ({r.rate:.0f}/s)", end="\r", flush=True)

    rejected = 0
    with database_available(settings) as url, db.connect(url) as conn:
        for f in files:
            try:
                report = run_import(conn, Actor.cli(), items(f), origin=f.name, progress=progress,
                                    unit="record" if args.kind == "marc" else "line",
                                    outbox=not args.then_reindex)
            except ValueError as exc:  # a CSV whose header lacks required columns: nothing was read
                _print(f"{f}: not imported: {exc}")
                rejected += 1
                continue
            _print(f"\r{f}: {report.read} read, {report.added} added, {report.updated} updated, "
                   f"{len(report.rejected)} rejected, {report.readings_generated} readings generated "
                   f"({report.seconds:.1f} s, {report.rate:.0f} records/s)")
            if report.read == 0 and not report.rejected:
                _print(f"  {f} contains no records.")
            for position, reason in report.rejected:
                _print(f"  rejected at {position}: {reason}")
            rejected += len(report.rejected)
    if args.then_reindex:
        return cmd_reindex(settings, args) or (1 if rejected else 0)
    _print("The search index is updated by the worker within seconds while `shoka serve` runs; "
           "otherwise run `shoka reindex`.")
    return 1 if rejected else 0


def cmd_reindex(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild the whole index in a new generation; searches use the old one until it is done."""
    from api import db
    from indexer.engine import engine_for
    from indexer.sync import rebuild

    engine = engine_for(settings)
    with database_available(settings) as url, db.connect(url) as conn:
        count = rebuild(conn, engine, progress=lambda n: print(f"  {n} records", end="\r", flush=True))
    _print(f"\rReindexed {count} records; searches now use the new index.")
    return 0


# -- doctor -------------------------------------------------------------------------------------

def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from api.runtime.doctor import diagnose

    problems = 0
    for ok, line in diagnose(settings):
        _print(("  ok    " if ok else "  PROBLEM ") + line)
        problems += 0 if ok else 1
    _print("All good." if not problems else f"{problems} problem(s) found.")
    return 0 if not problems else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoka", description="Shoka (書架) integrated library system")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="start the whole system on embedded defaults (Ctrl-C stops it)")
    run = sub.add_parser("run", help="run one process (used by serve and compose.yaml)")
    run.add_argument("process", choices=["staff", "opac", "worker", "scheduler"])
    sub.add_parser("migrate", help="bring the database schema up to date")
    demo = sub.add_parser("demo", help="demo data")
    demo.add_argument("demo_cmd", choices=["load"])
    staff = sub.add_parser("staff", help="staff accounts")
    ssub = staff.add_subparsers(dest="staff_cmd", required=True, metavar="ACTION")
    create = ssub.add_parser("create", help="create an account (password from stdin)")
    create.add_argument("name")
    create.add_argument("--role", action="append", help="role code, e.g. admin or counter (repeatable)")
    create.add_argument("--branch", help="home branch code")
    create.add_argument("--display-name")
    ssub.add_parser("list", help="list accounts")
    unlock = ssub.add_parser("unlock", help="clear a lockout")
    unlock.add_argument("name")
    pw = ssub.add_parser("password", help="set a password (from stdin)")
    pw.add_argument("name")
    assign = ssub.add_parser("assignments", help="year-end assignment changes from a CSV")
    assign.add_argument("file")
    assign.add_argument("--dry-run", action="store_true")
    audit = sub.add_parser("audit", help="audit log (操作ログ)")
    audit.add_argument("audit_cmd", choices=["verify", "purge"])
    imp = sub.add_parser("import", help="import bibliographic records (MARC, MARCXML, Aozora Bunko CSV)")
    isub = imp.add_subparsers(dest="kind", required=True, metavar="KIND")
    marc = isub.add_parser("marc", help="ISO 2709 or MARCXML files")
    marc.add_argument("files", nargs="+")
    marc.add_argument("--profile", default="ndl-marc21",
                      help="mapping profile: ndl-marc21, jpmarc-unimarc, marc21, trc-t or your own")
    marc.add_argument("--marcxml", action="store_true", help="the files are MARCXML")
    aozora = isub.add_parser("aozora", help="Aozora Bunko index CSV (extended or older list format)")
    aozora.add_argument("files", nargs="+")
    for kind in (marc, aozora):
        kind.add_argument("--then-reindex", action="store_true",
                          help="bulk load: write no per-record index changes, rebuild the whole index afterwards")
    sub.add_parser("reindex", help="rebuild the search index (search keeps answering meanwhile)")
    sub.add_parser("doctor", help="report what runs, where the data is and what is misconfigured")
    return p


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve, "run": cmd_run, "migrate": cmd_migrate, "demo": cmd_demo, "staff": cmd_staff,
    "audit": cmd_audit, "doctor": cmd_doctor, "import": cmd_import, "reindex": cmd_reindex,
}


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except (ConfigError, DataDirError) as exc:
        print(f"shoka: {exc}", file=sys.stderr)
        return 1
    except ShokaError as exc:
        print(f"shoka: {exc.message_en} ({exc.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import psycopg
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
            exc = exc.orig  # migrations run through SQLAlchemy, which wraps psycopg's error
        if isinstance(exc, psycopg.OperationalError):
            print(f"shoka: cannot reach the database: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        if isinstance(exc, psycopg.Error):
            print(f"shoka: the database refused the command: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
