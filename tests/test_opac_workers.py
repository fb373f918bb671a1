"""The OPAC runs as several processes (one per core by default, SHOKA_OPAC_WORKERS to choose), and each
worker keeps the access log free of query strings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.cli import opac_workers
from api.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_worker_count_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOKA_OPAC_WORKERS", raising=False)
    assert opac_workers() == (os.cpu_count() or 1)
    for value, expected in (("1", 1), ("3", 3), (" 2 ", 2)):
        monkeypatch.setenv("SHOKA_OPAC_WORKERS", value)
        assert opac_workers() == expected
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("SHOKA_OPAC_WORKERS", bad)
        with pytest.raises(ConfigError, match="SHOKA_OPAC_WORKERS"):
            opac_workers()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def test_two_worker_processes_answer_and_log_no_query(seeded: object, opac_db_url: str, redis_url: str,
                                                      tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SHOKA_OPAC_WORKERS": "2", "OPAC_DATABASE_URL": opac_db_url, "REDIS_URL": redis_url,
           "SHOKA_DATA_DIR": str(tmp_path), "SHOKA_OPAC_PORT": str(port), "SHOKA_HOST": "127.0.0.1",
           "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    log = tmp_path / "opac.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "run", "opac"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        for _ in range(6):
            assert httpx.get(f"http://127.0.0.1:{port}/api/v1/search", params={"q": "ひみつの本"},
                             timeout=10).status_code == 200
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers  # uvicorn's two workers (a resource tracker may be there too)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "GET /api/v1/search?…" in text
    assert "ひみつ" not in text and "%E3%81%B2" not in text
