"""`shoka doctor`: what runs, where the data is, and what is misconfigured, in plain words."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator

from api.config import Settings
from api.runtime.datadir import ServeLock
from api.runtime.postgres import OPAC_ROLE, EmbeddedPostgres
from api.runtime.process import port_free, port_listener
from api.runtime.valkey import EmbeddedValkey

Finding = tuple[bool, str]


def diagnose(settings: Settings) -> Iterator[Finding]:
    data = settings.data_dir
    if not data.exists():
        yield True, f"Data directory {data} does not exist yet; `shoka serve` or `shoka migrate` creates it."
        return
    if not data.is_dir():
        yield False, f"{data} is a file, not a directory. Move it away or set SHOKA_DATA_DIR."
        return
    yield os.access(data, os.W_OK), f"Data directory: {data}" + ("" if os.access(data, os.W_OK) else
                                                                 " (NOT writable)")
    secrets_file = data / "secrets.json"
    if secrets_file.exists():
        mode = stat.S_IMODE(secrets_file.stat().st_mode)
        yield mode & 0o077 == 0, f"secrets.json permissions {oct(mode)}" + (
            "" if mode & 0o077 == 0 else " — readable by others; run chmod 600 on it")

    holder = ServeLock(data).holder()
    if holder:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.started_at))
        yield True, (f"`shoka serve` is running (pid {holder.pid}, since {since}); OPAC on port "
                     f"{holder.opac_port}, staff console on port {holder.staff_port}.")
    elif settings.embedded_postgres:
        # Only the single-machine mode runs serve; in a container the app itself owns its port.
        yield True, "`shoka serve` is not running on this data directory."
        for name, port in (("OPAC", settings.opac_port), ("staff console", settings.staff_port)):
            if not port_free(settings.host, port):
                who = port_listener(port)
                yield False, (f"Port {port} for the {name} is taken{' by ' + who if who else ''}; "
                              "serve would not start. Stop it or change the port.")

    db_url = None
    if settings.embedded_postgres:
        pg = EmbeddedPostgres(data)
        pg_port = pg.running_port()
        if not pg.marker.exists():
            yield True, "Embedded PostgreSQL: not created yet (created on first start)."
        elif pg_port:
            yield True, f"Embedded PostgreSQL: running on 127.0.0.1:{pg_port}, data in {pg.pgdata}."
            db_url = pg.url()
        else:
            yield True, f"Embedded PostgreSQL: stopped (data in {pg.pgdata})."
    else:
        db_url = settings.database_url
        yield True, "PostgreSQL: external (DATABASE_URL)."
        if not settings.opac_database_url:
            yield False, "OPAC_DATABASE_URL is not set; the OPAC needs its own read-only role."
    if db_url:
        yield from _check_database(settings, db_url)

    if settings.embedded_valkey:
        vport = EmbeddedValkey(data).running_port()
        yield True, (f"Embedded Valkey: running on 127.0.0.1:{vport}." if vport else
                     "Embedded Valkey: stopped (starts with `shoka serve`).")
    else:
        try:
            import redis

            redis.Redis.from_url(settings.redis_url or "", socket_timeout=2).ping()
            yield True, "Valkey/Redis: external (REDIS_URL), answers."
        except Exception as exc:  # any failure is the finding
            yield False, f"Valkey/Redis at REDIS_URL does not answer: {exc}"

    from indexer.engine import SearchUnavailable, engine_for

    engine = engine_for(settings)
    try:
        yield True, f"Search ({engine.name}): {engine.ping()}."
    except SearchUnavailable as exc:
        yield False, f"Search ({engine.name}): {exc}"


def _check_database(settings: Settings, url: str) -> Iterator[Finding]:
    import psycopg

    from api import migrate

    try:
        current, head = migrate.current(url), migrate.head()
    except Exception as exc:  # any failure is the finding
        yield False, f"Cannot query the database: {str(exc).splitlines()[0]}"
        return
    if current == head:
        yield True, f"Database schema is current (revision {head})."
    else:
        yield False, f"Database schema is at {current or 'nothing'}, code expects {head}: run `shoka migrate`."
    if settings.embedded_postgres:
        opac_url = EmbeddedPostgres(settings.data_dir).url(OPAC_ROLE)
    else:
        opac_url = settings.opac_database_url or ""
    if not opac_url or current is None:
        return
    try:
        with psycopg.connect(opac_url, connect_timeout=3) as conn:
            try:
                conn.execute("SELECT 1 FROM staff_account LIMIT 1")
                yield False, "The OPAC's database role can read staff accounts: it must not. See docs/operations.md."
            except psycopg.errors.InsufficientPrivilege:
                yield True, "The OPAC's database role cannot read staff or patron data."
    except psycopg.OperationalError as exc:
        yield False, f"The OPAC's database role cannot connect: {str(exc).strip().splitlines()[0]}"
