"""`shoka serve` as a user runs it: start, refuse a second start, stop with Ctrl-C, restart,
survive kill -9, and keep every row throughout. Starts real processes, so it takes a minute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.runtime.postgres import EmbeddedPostgres
from api.runtime.process import find_free_port, pid_alive
from api.runtime.valkey import EmbeddedValkey

pytestmark = pytest.mark.slow
ADMIN_PASSWORD = "serve-test-admin-pw"


class Serve:
    def __init__(self, data_dir: Path, opac_port: int, staff_port: int) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "OPAC_DATABASE_URL", "REDIS_URL", "OPENSEARCH_URL", "SEARCH_URL")}
        self.env.update(SHOKA_DATA_DIR=str(data_dir), SHOKA_OPAC_PORT=str(opac_port),
                        SHOKA_STAFF_PORT=str(staff_port), PYTHONUNBUFFERED="1")
        self.opac = f"http://127.0.0.1:{opac_port}"
        self.staff = f"http://127.0.0.1:{staff_port}"
        self.proc: subprocess.Popen[str] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-serve.log"

    def cli(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env or self.env, input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        out = open(self.log, "a")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], env=self.env,
                                     stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if "Shoka is running." in self.log.read_text()[offset:]:
                return
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        pytest.fail("serve did not start in 180 s:\n" + self.log.read_text()[-3000:])

    def interrupt(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=90)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def token(self) -> str:
        req = urllib.request.Request(self.staff + "/api/v1/auth/token", method="POST",
                                     data=json.dumps({"username": "boss", "password": ADMIN_PASSWORD}).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.load(resp)["access_token"])

    def get(self, url: str, token: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def logins(self) -> int:
        status, body = self.get(self.staff + "/api/v1/audit?action=auth.token_issued", self.token())
        assert status == 200, body
        return int(json.loads(body)["total"]) - 1  # minus the token just issued to ask


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path / "var", find_free_port("127.0.0.1", 18000), find_free_port("127.0.0.1", 18100))
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
    # Leave nothing running whatever happened above.
    pg, vk = EmbeddedPostgres(s.data_dir), EmbeddedValkey(s.data_dir)
    if pg.running_port():
        pg.stop()
    if vk.running_port():
        pid = int(vk.pidfile.read_text())
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


def test_serve_lifecycle_keeps_data(serve: Serve) -> None:
    # Commands work on the data directory before anything runs (a temporary database is started).
    created = serve.cli("staff", "create", "boss", "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert EmbeddedPostgres(serve.data_dir).running_port() is None  # and stopped again

    serve.start()
    assert serve.get(serve.opac + "/healthz")[0] == 200
    status, body = serve.get(serve.staff + "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    serve.token()
    # Commands also work while serve runs, on the same database.
    assert serve.cli("demo", "load").returncode == 0
    assert "中央図書館" in serve.get(serve.opac + "/")[1]
    doctor = serve.cli("doctor")
    assert doctor.returncode == 0 and "is running" in doctor.stdout, doctor.stdout

    # A second serve on the same data directory refuses, and the first keeps running.
    second = subprocess.run([sys.executable, "-m", "api.cli", "serve"], env=serve.env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert second.returncode == 1
    assert "already" in second.stderr and "Traceback" not in second.stderr
    assert serve.get(serve.staff + "/healthz")[0] == 200

    # Ctrl-C stops everything cleanly.
    assert serve.interrupt() == 0
    assert EmbeddedPostgres(serve.data_dir).running_port() is None
    assert EmbeddedValkey(serve.data_dir).running_port() is None

    # A restart reuses the data.
    serve.start()
    assert serve.logins() == 1

    # kill -9, then start again: it recovers by itself and nothing is lost.
    serve.kill9()
    time.sleep(1)
    serve.start()
    assert serve.logins() == 2
    verify = serve.cli("audit", "verify")
    assert verify.returncode == 0 and "intact" in verify.stdout
    assert serve.interrupt() == 0


def test_port_taken_and_bad_settings_get_clear_messages(serve: Serve, tmp_path: Path) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", int(serve.env["SHOKA_STAFF_PORT"])))
        blocker.listen()
        result = subprocess.run([sys.executable, "-m", "api.cli", "serve"], env=serve.env, capture_output=True,
                                text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"Port {serve.env['SHOKA_STAFF_PORT']}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr

    bad = serve.cli("doctor", env={**serve.env, "SHOKA_OPAC_PORT": "eighty"})
    assert bad.returncode == 1 and "SHOKA_OPAC_PORT" in bad.stderr and "eighty" in bad.stderr

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = serve.cli("migrate", env={**serve.env, "SHOKA_DATA_DIR": str(not_a_dir)})
    assert result.returncode == 1 and "not a directory" in result.stderr and "Traceback" not in result.stderr
