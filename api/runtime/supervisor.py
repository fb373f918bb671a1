"""`shoka serve`: start the embedded services and the four processes, keep them up, stop them in order.

Processes: staff console + API (:8001), OPAC (:8000), one RQ worker, the scheduler. Each is a child
started in its own session with a parent-death signal, so Ctrl-C reaches only this supervisor
(which stops them in order) and a kill -9 of the supervisor takes the children with it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from types import FrameType

from api import migrate
from api.config import Settings
from api.runtime.datadir import DataDirError, ServeInfo, ServeLock, load_secrets, prepare
from api.runtime.postgres import OPAC_ROLE, EmbeddedPostgres
from api.runtime.process import die_with_parent, port_free, port_listener
from api.runtime.valkey import EmbeddedValkey

log = logging.getLogger("shoka.serve")
RESTART_LIMIT = 5  # restarts of one child within RESTART_WINDOW before serve gives up
RESTART_WINDOW = 60.0


@dataclass
class Child:
    name: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        logfile = open(self.env["SHOKA_DATA_DIR"] + f"/logs/{self.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "run", self.name],
            env=self.env, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
        logfile.close()

    def stop(self, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Stop(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def check_ports(settings: Settings) -> None:
    for name, port in (("SHOKA_OPAC_PORT", settings.opac_port), ("SHOKA_STAFF_PORT", settings.staff_port)):
        if not port_free(settings.host, port):
            who = port_listener(port)
            raise DataDirError(
                f"Port {port} on {settings.host} is already in use{' by ' + who if who else ''}. "
                f"Stop that program, or choose another port with {name}=NNNN.")
    if settings.opac_port == settings.staff_port:
        raise DataDirError(f"SHOKA_OPAC_PORT and SHOKA_STAFF_PORT are both {settings.opac_port}; they must differ.")


def _wait_http(url: str, timeout: float, children: list[Child]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.process is not None and c.process.poll() is not None for c in children):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback URL
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def serve(settings: Settings, out: logging.Logger | None = None) -> int:
    say = (out or log).info
    prepare(settings.data_dir)
    lock = ServeLock(settings.data_dir)
    check_ports(settings)
    lock.acquire(ServeInfo(os.getpid(), time.time(), settings.opac_port, settings.staff_port))
    pg = EmbeddedPostgres(settings.data_dir) if settings.embedded_postgres else None
    valkey = EmbeddedValkey(settings.data_dir) if settings.embedded_valkey else None
    children: list[Child] = []
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if pg is not None:
            say("starting PostgreSQL (embedded) ...")
            pg.ensure_running()
            db_url, opac_url = pg.url(), pg.url(OPAC_ROLE)
            # The embedded cluster belongs to this data directory, so serve keeps its schema current.
            before, after = migrate.upgrade(db_url)
            if before != after:
                say(f"database migrated {before or 'empty'} → {after}")
            migrate.ensure_opac_login(db_url, OPAC_ROLE)
        else:
            db_url = settings.database_url or ""
            opac_url = settings.opac_database_url or ""
            if not opac_url:
                raise DataDirError("OPAC_DATABASE_URL must be set when DATABASE_URL is set "
                                   "(the OPAC uses its own read-only role).")
            if migrate.pending(db_url):
                raise DataDirError("The database schema is not current. Run `shoka migrate` first.")
        if valkey is not None:
            say("starting Valkey (embedded) ...")
            valkey.ensure_running()
            redis_url = valkey.url()
        else:
            redis_url = settings.redis_url or ""

        base = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "OPAC_DATABASE_URL", "REDIS_URL", "SHOKA_SERVICE_TOKEN")}
        base.update(SHOKA_DATA_DIR=str(settings.data_dir), REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
        internal = {**base, "DATABASE_URL": db_url}
        # The OPAC's channel to the internal API (My Library): both web apps share the service token.
        staff_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        channel = {"SHOKA_SERVICE_TOKEN": settings.service_token or load_secrets(settings.data_dir)["service_token"],
                   "SHOKA_INTERNAL_URL": os.environ.get("SHOKA_INTERNAL_URL")
                   or f"http://{staff_host}:{settings.staff_port}"}
        # The OPAC gets only its read-only role: no credential that could reach patron tables.
        public = {**base, **channel, "OPAC_DATABASE_URL": opac_url}
        children = [Child("staff", {**internal, **channel}), Child("opac", public), Child("worker", internal),
                    Child("scheduler", internal)]
        for child in children:
            child.start()
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        ok = _wait_http(f"http://{host}:{settings.staff_port}/healthz", 60, children) and \
            _wait_http(f"http://{host}:{settings.opac_port}/healthz", 60, children)
        if not ok:
            raise DataDirError(f"The web apps did not start; see the logs in {settings.log_dir}.")
        say("")
        say("Shoka is running.")
        say(f"  OPAC (public):       http://{host}:{settings.opac_port}/")
        say(f"  Staff console + API: http://{host}:{settings.staff_port}/")
        say(f"  Data directory:      {settings.data_dir}")
        say("Press Ctrl-C to stop.")
        while True:
            time.sleep(1)
            for child in children:
                if child.process is not None and child.process.poll() is not None:
                    now = time.monotonic()
                    child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW] + [now]
                    if len(child.restarts) > RESTART_LIMIT:
                        raise DataDirError(f"The {child.name} process keeps failing; see "
                                           f"{settings.log_dir}/{child.name}.log.")
                    log.warning("%s exited with %s; restarting", child.name, child.process.returncode)
                    child.start()
    except Stop:
        say("stopping ...")
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        # Ignore further Ctrl-C while shutting down so the database is always stopped cleanly.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for child in reversed(children):
                child.stop()
            if valkey is not None:
                valkey.stop()
            if pg is not None:
                pg.stop()
        finally:
            lock.release()
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
        say("stopped.")
