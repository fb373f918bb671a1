"""`script/bench http --keep DIR`: OPAC searches end to end over HTTP, as browsers and the cross-search ask.

`script/bench search` times `opac.search.search` inside the benchmark's own process: query analysis, the engine and
the page's PostgreSQL query, but not the web server, the framework or the page's rendering. This one starts the
OPAC itself (`shoka run opac`, uvicorn, on the catalogue kept in DIR by `script/bench search --keep DIR`) with one
process and then with `SHOKA_OPAC_WORKERS=2`, and sends the bench's query mix over HTTP: the HTML result page
(`/search?…`) and the JSON API (`/api/v1/search?…`), one client and 16 back to back, each client a thread with its
own keep-alive connection. The clients run on the same machine and take their share of its cores, so the figures
are an upper bound of what the server alone would take. "server CPU" is the OPAC's processes' CPU a request.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from bench import Sample, pct, pg_cpu_seconds, query_mix

PATHS = ("/search", "/api/v1/search")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _drive(port: int, path: str, queries: list[tuple[str, dict[str, str]]], clients: int) -> tuple[float, list[float]]:
    """Send `queries` split over `clients` threads, back to back; (seconds, latencies in seconds)."""
    per = len(queries) // clients
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        gate.wait()
        for _, params in queries[k * per:(k + 1) * per]:
            t0 = time.perf_counter()
            conn.request("GET", f"{path}?{urllib.parse.urlencode(params)}")
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - t0)
            if response.status != 200:
                with lock:
                    failures.append(f"{response.status} {path} {params}")
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} searches failed, e.g. {failures[0]}")
    return time.perf_counter() - started, latencies


def _start_opac(workdir: Path, workers: int, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SHOKA_DATA_DIR": str(workdir), "SHOKA_OPAC_WORKERS": str(workers),
           "SHOKA_OPAC_PORT": str(port)}
    code = "import sys; from api.cli import main; sys.exit(main(['run', 'opac']))"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the OPAC did not start within 2 minutes")


def bench_http(url: str, workdir: Path, *, seed: int, queries: int, clients: int) -> None:
    from api import migrate
    from api.runtime.postgres import OPAC_ROLE
    from api.runtime.valkey import EmbeddedValkey

    kept = workdir / "samples.json"
    if not kept.exists():
        raise SystemExit(f"no catalogue in {workdir}: build one first with `script/bench search --keep {workdir}`")
    samples = [Sample(**s) for s in json.loads(kept.read_text())]
    if not os.environ.get("DATABASE_URL"):
        migrate.ensure_opac_login(url, OPAC_ROLE)
    valkey = EmbeddedValkey(workdir)
    started_valkey = valkey.ensure_running()
    rows: list[tuple[int, str, int, int, float, list[float], float]] = []
    try:
        for workers in (1, 2):
            port = _free_port()
            opac = _start_opac(workdir, workers, port)
            try:
                _drive(port, "/search", query_mix(samples, seed + 1000, 400), 4)  # warm both processes' engines
                for n, path in enumerate(PATHS):
                    for k, many in enumerate((1, clients)):
                        mix = query_mix(samples, seed + 10 * workers + 2 * n + k, queries if many > 1 else queries // 4)
                        cpu0 = pg_cpu_seconds(opac.pid)  # a process tree's CPU
                        seconds, latencies = _drive(port, path, mix, many)
                        rows.append((workers, path, many, len(latencies), seconds, latencies,
                                     (pg_cpu_seconds(opac.pid) - cpu0) / len(latencies)))
                        print(f"  {workers} process(es), {path}, {many} client(s) done", file=sys.stderr)
            finally:
                opac.terminate()
                opac.wait(timeout=60)
    finally:
        if started_valkey:
            valkey.stop()
    print(f"\nMachine: {os.cpu_count()} cores; the OPAC (uvicorn) and the clients share them; "
          f"{len(samples):,} sample records of the kept catalogue in {workdir}.\n")
    print("| OPAC processes | path            | clients |      n |   q/s |  p50 ms |  p95 ms |  p99 ms | "
          "server CPU ms |")
    print("|----------------|-----------------|---------|--------|-------|---------|---------|---------|"
          "---------------|")
    for workers, path, many, n, seconds, latencies, cpu in rows:
        ms = [x * 1000 for x in latencies]
        print(f"| {workers:>14} | {path:<15} | {many:>7} | {n:>6} | {n / seconds:>5.0f} | "
              f"{statistics.median(ms):>7.1f} | {pct(ms, 95):>7.1f} | {pct(ms, 99):>7.1f} | {cpu * 1000:>13.2f} |")
