"""Benchmarks that print a table. Run through script/bench; figures go to docs/benchmarks.md.

  audit   audit-log appends (1 and 20 concurrent writers), chain verification, session lookup
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import db, migrate
from api.audit import Actor, record
from api.audit import service as audit
from api.auth import service as auth
from api.runtime.postgres import EmbeddedPostgres


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(name: str, n: int, seconds: float, lat: list[float]) -> str:
    ms = [x * 1000 for x in lat]
    return (f"| {name:<38} | {n:>7} | {n / seconds:>9.0f} | {statistics.median(ms):>7.2f} | {pct(ms, 95):>7.2f} "
            f"| {pct(ms, 99):>7.2f} |")


def concurrent(url: str, writers: int, per_writer: int, work: Callable[..., None]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(writers + 1)

    def run() -> None:
        mine = []
        with db.connect(url) as conn:
            start_gate.wait()
            for i in range(per_writer):
                t0 = time.perf_counter()
                work(conn, i)
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(writers)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies


def bench_audit(url: str, scale: int) -> None:
    actor = Actor("bench", "127.0.0.1", None)

    def append(conn, i: int) -> None:
        with conn.transaction():
            record(conn, actor, "patron.view", "patron", str(i), {"fields": ["name", "address"]})

    print(f"Machine: {os.cpu_count()} cores; PostgreSQL embedded; {scale} operations per writer.\n")
    print("| operation                              |       n |   ops/s |  p50 ms |  p95 ms |  p99 ms |")
    print("|----------------------------------------|---------|---------|---------|---------|---------|")
    secs, lat = concurrent(url, 1, scale, append)
    print(row("audit append, 1 writer", scale, secs, lat))
    per = max(1, scale // 4)
    secs, lat = concurrent(url, 20, per, append)
    print(row("audit append, 20 concurrent writers", 20 * per, secs, lat))

    with db.connect(url) as conn:
        total = conn.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"]  # type: ignore[index]
        t0 = time.perf_counter()
        checked, broken = audit.verify(conn)
        secs = time.perf_counter() - t0
        assert broken is None and checked == total
        print(row("chain verify (whole log)", checked, secs, [secs]))

        with conn.transaction():
            conn.execute("INSERT INTO branch (code, name) VALUES ('main', '中央図書館') ON CONFLICT DO NOTHING")
        if not conn.execute("SELECT 1 FROM staff_account WHERE username = 'bench'").fetchone():
            auth.create_account(conn, Actor.cli(), "bench", "bench-password-1", roles=["counter"])
        session = auth.open_session(conn, auth.authenticate(conn, "bench", "bench-password-1", "127.0.0.1"),
                                    "api", "127.0.0.1")

    def lookup(conn, i: int) -> None:
        auth.resolve_session(conn, session.token, "api")

    secs, lat = concurrent(url, 20, per, lookup)
    print(row("token lookup + permissions, 20 clients", 20 * per, secs, lat))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["audit"])
    parser.add_argument("--scale", type=int, default=2000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if url:
        bench_audit(url, args.scale)
        return
    with tempfile.TemporaryDirectory(prefix="shoka-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp))
        pg.ensure_running()
        try:
            migrate.upgrade(pg.url())
            bench_audit(pg.url(), args.scale)
        finally:
            db.close_all()
            pg.stop()


if __name__ == "__main__":
    main()
