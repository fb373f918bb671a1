"""The data directory: one place for the database, Valkey, the index, logs and secrets."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class DataDirError(Exception):
    """The data directory cannot be used; the message says why and what to do."""


def prepare(data_dir: Path) -> Path:
    """Create the data directory if needed and check that it is a writable directory."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirError(f"The data directory {data_dir} exists but is not a directory. "
                           "Move the file away or set SHOKA_DATA_DIR to another path.")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "logs").mkdir(exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise DataDirError(f"The data directory {data_dir} is not writable: {exc.strerror}.") from None
    return data_dir


def load_secrets(data_dir: Path) -> dict[str, str]:
    """Passwords for the embedded services, generated once and kept in secrets.json (mode 0600)."""
    path = data_dir / "secrets.json"
    # service_token: the OPAC's key to the internal API (My Library); only the two web apps get it.
    wanted = ("postgres_password", "opac_password", "valkey_password", "service_token")
    with locked(data_dir / ".secrets.lock"):
        values: dict[str, str] = {}
        if path.exists():
            try:
                values = json.loads(path.read_text())
                if not isinstance(values, dict):
                    raise ValueError("not an object")
            except (ValueError, OSError) as exc:
                raise DataDirError(
                    f"{path} is damaged ({exc}). Restore it from a backup; without it the embedded "
                    "database cannot be opened. See docs/operations.md, 'Recovering secrets'.") from None
        missing = [k for k in wanted if not values.get(k)]
        if missing:
            if "postgres_password" in missing and (data_dir / "postgres" / "initialized").exists():
                # New passwords would not open the existing cluster: never generate them here.
                raise DataDirError(
                    f"{path} is missing or has no postgres_password, but the database in {data_dir / 'postgres'} "
                    "exists. Restore secrets.json from a backup (docs/operations.md, 'Recovering secrets').")
            for key in missing:
                values[key] = secrets.token_urlsafe(24)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(values, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        return values


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """A blocking inter-process lock (flock), released when the holder exits, even by kill -9."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class ServeInfo:
    pid: int
    started_at: float
    opac_port: int
    staff_port: int


class ServeLock:
    """Held by `shoka serve` for its lifetime, so a second serve on the same data refuses to start.

    flock is released by the kernel when the process dies, so a kill -9 never leaves a stale lock.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "serve.lock"
        self._fh: IO[str] | None = None

    def acquire(self, info: ServeInfo) -> None:
        fh = open(self.path, "a+")  # noqa: SIM115 - kept open while serving
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            other = self.holder()
            who = f" (pid {other.pid}, started {time.strftime('%Y-%m-%d %H:%M', time.localtime(other.started_at))})" \
                if other else ""
            raise DataDirError(
                f"Shoka is already running on the data directory {self.path.parent}{who}. "
                "Stop it first (Ctrl-C in its terminal), or set SHOKA_DATA_DIR to use another directory.") from None
        fh.seek(0)
        fh.truncate()
        json.dump(info.__dict__, fh)
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def holder(self) -> ServeInfo | None:
        """Who holds the lock now, or None when no serve is running."""
        if not self.path.exists():
            return None
        with open(self.path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                try:
                    return ServeInfo(**json.loads(fh.read() or "{}"))
                except (ValueError, TypeError):
                    return ServeInfo(pid=0, started_at=0, opac_port=0, staff_port=0)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return None
