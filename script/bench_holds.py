"""`script/bench holds`: placing holds (予約), trapping them at check-in, cancelling on the hold shelf and reading
queue positions, with a bestseller carrying 1,000 holds (issue 5, point 7).

The data: the circulation benchmark's database of Nagano's size (script/bench_circulation.py `load`, same
`--scale`), plus
- 15,000 waiting holds at scale 1 on titles with no copy on the shelf (Kumatori places 32,718 holds a year for
  28,659 patrons; at that rate Nagano's 50,000 patrons place about 57,000 a year, so this is about three months'
  worth waiting at once), one to three per title, placed over the last 60 days, picked up at the patron's branch;
- 300 holds placed today on titles with a copy on the shelf (a day's pull list);
- a hold on the hold shelf (確保) for every item the load left on the hold shelf, with deadlines around today;
- the bestseller: one title with 20 copies (12 at 中央, 8 at 南部), all on loan, and 1,000 holds by 1,000
  patrons placed a minute apart, picked up at 中央 (60 %) or 南部 (40 %).
Patrons who place, collect or replenish bestseller holds are "clean" (may borrow: card valid, no block, no
overdue, room under the limits), each used once; a smoke run tops them up with generated patrons.

The measurements (in-process: the service functions on a pooled connection per client, as in the staff app),
each with 1 client, 20 back to back and (writes) 20 pausing 0-200 ms between operations:
- place_hold on the bestseller (each placement cancelled again untimed, so the queue stays at 1,000) and on an
  ordinary title (one with no copy on the shelf, picked at random);
- a check-in that traps a bestseller hold: its copies come back at their home branch (one client cycles through
  the 20 copies; with 20 clients each has its own), so a hold picked up elsewhere starts a transfer; untimed
  after each: the copy reaches the pickup branch if it travels, the patron collects it (check-out: the copy is
  out again) and a new patron joins the end of the queue (it stays at 1,000);
- cancelling a hold on the hold shelf, which hands the copy to the next patron at once (the trap runs inside
  the cancel); untimed after: a copy sent to another branch is received there, and the queue is replenished;
- reading the queue position of a bestseller hold (`position`) and a patron's holds with positions
  (`patron_holds`, My Library);
- the staff pull list (staff/holds.py `pull_list`) for 中央.
`--scale` shrinks the load and the number of operations (0.01 is a smoke run of about 15 seconds); the
bestseller keeps its 1,000 holds.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from bench import latency_row, pct
from bench_circulation import ACTOR, CLIENTS, CpuProbe, Loaded, Op, Run, h, load, refused, run_clients, timed_phase

from api import db
from api.circulation import service as circulation
from api.circulation.service import OVERRIDABLE
from api.errors import ShokaError
from api.holds import service as holds

BESTSELLER_HOLDS = 1_000
BESTSELLER_COPIES = (("chuo", 12), ("minami", 8))
PICKUP_SHARE = (("chuo", 60), ("minami", 40))
WAITING_HOLDS = 15_000          # at scale 1
DAILY_HOLDS = 300               # holds placed today on titles with a copy on the shelf (the pull list), at scale 1
PACE = 0.1                      # mean pause between a paced client's operations (as the circulation benchmark)
TITLE = "ベストセラー（ベンチマーク）"


@dataclass
class Setup:
    record_id: int
    copies: list[tuple[str, str]]              # barcode, home branch code
    patrons: deque[tuple[int, str]]            # fresh clean patrons (id, card), each used once
    titles: list[int]                          # ordinary titles that are out, for placing
    branch_ids: dict[str, int]
    counts: dict[str, int]
    phases: list[tuple[str, int, float]]


def clean_patrons(conn: Any, exclude: int) -> list[tuple[int, str]]:
    rows = conn.execute(f"""
        SELECT p.id, p.card FROM patron p LEFT JOIN loan l ON l.patron_id = p.id AND l.returned_at IS NULL
        WHERE p.category IN ('general', 'child') AND p.expires_on > current_date + 30 AND p.id <> %(heavy)s
          AND NOT EXISTS (SELECT 1 FROM patron_block b WHERE b.patron_id = p.id AND b.lifted_at IS NULL
                            AND b.starts_on <= current_date AND (b.ends_on IS NULL OR b.ends_on >= current_date))
          AND NOT EXISTS (SELECT 1 FROM hold x WHERE x.patron_id = p.id)
        GROUP BY p.id HAVING count(l.id) <= 6 AND count(*) FILTER (WHERE l.due_date < current_date) = 0
        ORDER BY {h('p.id * 23')}, p.id""", {"heavy": exclude}).fetchall()
    return [(int(r["id"]), r["card"]) for r in rows]


def set_up(conn: Any, loaded: Loaded, scale: float, needed_patrons: int) -> Setup:
    ids = loaded.branch_ids
    phases: list[tuple[str, int, float]] = []

    def phase(name: str, sql: str, params: Any = None) -> int:
        return timed_phase(conn, phases, name, sql, params)

    # The patrons the bestseller needs come first (so no background hold gets in their way).
    fresh = clean_patrons(conn, loaded.heavy_id)
    if len(fresh) < needed_patrons:  # a smoke run has few patrons: add clean ones
        extra = needed_patrons - len(fresh)
        phase("patron: extra clean patrons for the holds", """
            INSERT INTO patron (card, name, name_reading, reading_key, category, home_branch_id, expires_on)
            SELECT '18' || lpad(n::text, 8, '0'), '予約 利用者', 'ヨヤク リヨウシャ', 'ヨヤクリヨウシャ', 'general',
                   %(chuo)s, current_date + 365
            FROM generate_series(1, %(n)s) AS n""", {"chuo": ids["chuo"], "n": extra})
        fresh = clean_patrons(conn, loaded.heavy_id)
    fresh = fresh[:needed_patrons]
    reserved = [pid for pid, _ in fresh]

    pickup_case = f"CASE WHEN p.home_branch_id = {ids['idou']} THEN {ids['chuo']} ELSE p.home_branch_id END"
    n_waiting = max(100, round(WAITING_HOLDS * scale))
    phase("hold: waiting holds on titles that are out", f"""
        WITH titles AS (
            SELECT record_id, row_number() OVER (ORDER BY {h('record_id * 31')}, record_id) AS rn
            FROM (SELECT DISTINCT record_id FROM item WHERE status = 'on_loan') AS t
            WHERE NOT EXISTS (SELECT 1 FROM item a WHERE a.record_id = t.record_id AND a.status = 'available')),
        pats AS (
            SELECT p.id, p.home_branch_id, row_number() OVER (ORDER BY {h('p.id * 37')}, p.id) AS rn
            FROM patron p WHERE p.category IN ('general', 'child') AND NOT (p.id = ANY(%(reserved)s))),
        n_pats AS (SELECT count(*) AS n FROM pats),
        wanted AS (
            SELECT t.record_id, g.k, t.rn FROM titles t
            CROSS JOIN LATERAL generate_series(1, 1 + mod({h('t.rn')}, 3)) AS g(k))
        INSERT INTO hold (patron_id, record_id, pickup_branch_id, placed_by, placed_at)
        SELECT p.id, w.record_id, {pickup_case}, 'opac',
               now() - make_interval(mins => mod({h('w.rn * 5 + w.k')}, 86400)::int)
        FROM wanted w CROSS JOIN n_pats JOIN pats p ON p.rn = 1 + mod({h('w.rn * 7 + w.k')}, n_pats.n)
        WHERE w.rn <= %(titles)s
        ON CONFLICT DO NOTHING""", {"reserved": reserved, "titles": n_waiting // 2})
    phase("hold: placed today on titles on the shelf (the day's pull list)", f"""
        WITH titles AS (
            SELECT DISTINCT ON (i.record_id) i.record_id, i.current_branch_id
            FROM item i WHERE i.status = 'available' AND i.branch_id = i.current_branch_id
            ORDER BY i.record_id, i.id),
        picked AS (SELECT t.*, row_number() OVER (ORDER BY {h('t.record_id * 43')}, t.record_id) AS rn FROM titles t),
        pats AS (
            SELECT p.id, row_number() OVER (ORDER BY {h('p.id * 47')}, p.id) AS rn
            FROM patron p WHERE p.category IN ('general', 'child') AND NOT (p.id = ANY(%(reserved)s))),
        n_pats AS (SELECT count(*) AS n FROM pats)
        INSERT INTO hold (patron_id, record_id, pickup_branch_id, placed_by, placed_at)
        SELECT p.id, t.record_id, t.current_branch_id, 'opac', now() - make_interval(mins => mod(t.rn, 600)::int)
        FROM picked t CROSS JOIN n_pats JOIN pats p ON p.rn = 1 + mod({h('t.rn * 5')}, n_pats.n)
        WHERE t.rn <= %(n)s AND t.current_branch_id <> %(idou)s
        ON CONFLICT DO NOTHING""",
          {"reserved": reserved, "n": max(10, round(DAILY_HOLDS * scale)), "idou": ids["idou"]})
    phase("hold: on the hold shelf (the load's on_hold_shelf items)", f"""
        WITH shelf AS (
            SELECT i.id, i.record_id, i.current_branch_id, row_number() OVER (ORDER BY i.id) AS rn
            FROM item i WHERE i.status = 'on_hold_shelf'),
        pats AS (
            SELECT p.id, row_number() OVER (ORDER BY {h('p.id * 41')}, p.id) AS rn
            FROM patron p WHERE p.category IN ('general', 'child') AND NOT (p.id = ANY(%(reserved)s))),
        n_pats AS (SELECT count(*) AS n FROM pats)
        INSERT INTO hold (patron_id, record_id, pickup_branch_id, placed_by, placed_at, status, trapped_item_id,
                          trapped_at, shelved_at, pickup_deadline)
        SELECT p.id, s.record_id, s.current_branch_id, 'opac', now() - interval '20 days', 'on_shelf', s.id,
               now() - make_interval(days => mod(s.rn, 8)::int), now() - make_interval(days => mod(s.rn, 8)::int),
               current_date + 7 - mod(s.rn, 9)::int
        FROM shelf s CROSS JOIN n_pats JOIN pats p ON p.rn = 1 + mod({h('s.rn * 3')}, n_pats.n)
        ON CONFLICT DO NOTHING""", {"reserved": reserved})

    # The bestseller: 20 copies, lent to 20 of the fresh patrons, then 1,000 holds by the next 1,000.
    patrons = deque(fresh)
    t0 = time.perf_counter()
    with conn.transaction():
        record_id = int(conn.execute(
            "INSERT INTO bib_record (source, control_number, title, title_reading, ndc, data) "
            "VALUES ('BENCHHOLD', 'bestseller', %s, 'ベストセラー', '913.6', jsonb_build_object('title', %s::text)) "
            "RETURNING id", (TITLE, TITLE)).fetchone()["id"])
        copies: list[tuple[str, str]] = []
        for code, n in BESTSELLER_COPIES:
            for _ in range(n):
                barcode = f"29{len(copies) + 1:011d}"
                conn.execute("INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, "
                             "call_number) VALUES (%s, %s, %s, %s, 'book', '913.6/ベ')",
                             (record_id, barcode, ids[code], ids[code]))
                copies.append((barcode, code))
    for barcode, code in copies:
        _, card = patrons.popleft()
        circulation.checkout(conn, ACTOR, card, barcode, branch=code, override=list(OVERRIDABLE))
    queue = [patrons.popleft() for _ in range(BESTSELLER_HOLDS)]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO hold (patron_id, record_id, pickup_branch_id, placed_by, placed_at) "
            "VALUES (%s, %s, %s, 'opac', now() - make_interval(mins => %s))",
            [(pid, record_id, ids[pickup_for(k)], BESTSELLER_HOLDS - k) for k, (pid, _) in enumerate(queue)])
    phases.append((f"bestseller: {len(copies)} copies lent, {BESTSELLER_HOLDS:,} holds", BESTSELLER_HOLDS,
                   time.perf_counter() - t0))
    t0 = time.perf_counter()
    conn.execute("VACUUM ANALYZE hold")
    conn.execute("VACUUM ANALYZE item")
    phases.append(("VACUUM ANALYZE hold, item", 0, time.perf_counter() - t0))
    titles = [int(r["record_id"]) for r in conn.execute("""
        SELECT DISTINCT i.record_id FROM item i WHERE i.status = 'on_loan' AND i.record_id <> %s
          AND NOT EXISTS (SELECT 1 FROM item a WHERE a.record_id = i.record_id AND a.status = 'available')
        ORDER BY 1 LIMIT 20000""", (record_id,)).fetchall()]
    random.Random(7).shuffle(titles)
    counts = conn.execute("""SELECT count(*) FILTER (WHERE status = 'placed') AS placed,
                                    count(*) FILTER (WHERE status = 'on_shelf') AS on_shelf,
                                    count(DISTINCT record_id) FILTER (WHERE status = 'placed') AS titles
                             FROM hold""").fetchone()
    return Setup(record_id, copies, patrons, titles, ids, dict(counts), phases)


def pickup_for(k: int) -> str:
    """Pickup branch of the k-th hold: 中央 or 南部, 60/40, by a fixed hash."""
    r = (k * 2654435761) % 100
    acc = 0
    for code, share in PICKUP_SHARE:
        acc += share
        if r < acc:
            return code
    return PICKUP_SHARE[-1][0]


# -- the operations ---------------------------------------------------------------------------------------

class Bench:
    """The operations as run_clients calls them: `do(conn, op)` is timed, `after(conn, op)` is not."""

    def __init__(self, setup: Setup) -> None:
        self.s = setup
        self.lock = threading.Lock()
        self.placed: dict[str, int] = {}       # op key → hold placed by `do`, cancelled by `after`
        self.shelf: dict[str, int] = {}        # copy barcode → its on-shelf hold (cancel runs)
        self.rng = random.Random(11)

    def fresh(self) -> tuple[int, str]:
        return self.s.patrons.popleft()

    def ops_place_bestseller(self, clients: int, per: int) -> list[list[Op]]:
        return [[Op(str(self.s.record_id), pickup_for(self.rng.randrange(1000)), str(self.fresh()[0]))
                 for _ in range(per)] for _ in range(clients)]

    def ops_place_ordinary(self, clients: int, per: int) -> list[list[Op]]:
        return [[Op(str(self.s.titles.pop()), pickup_for(self.rng.randrange(1000)), str(self.fresh()[0]))
                 for _ in range(per)] for _ in range(clients)]

    def place(self, conn: Any, op: Op) -> str | None:
        def call() -> None:
            placed = holds.place_hold(conn, ACTOR, int(op.patron), int(op.item), op.branch, placed_by="bench")
            with self.lock:
                self.placed[op.patron + ":" + op.item] = placed.id
        return refused(call)

    def unplace(self, conn: Any, op: Op) -> str | None:
        with self.lock:
            hold_id = self.placed.pop(op.patron + ":" + op.item, None)
        return None if hold_id is None else refused(lambda: holds.cancel_hold(conn, ACTOR, hold_id, reason="bench"))

    def copy_plans(self, clients: int, per: int) -> list[list[Op]]:
        """Check-ins of bestseller copies at their home branch: one client cycles through all 20 copies; with
        20 clients each has its own copy."""
        if clients == 1:
            return [[Op(*self.s.copies[i % len(self.s.copies)]) for i in range(per)]]
        return [[Op(*self.s.copies[c])] * per for c in range(clients)]

    @staticmethod
    def trap_checkin(conn: Any, op: Op) -> str | None:
        try:
            result = circulation.checkin(conn, ACTOR, op.item, branch=op.branch)
        except ShokaError as exc:
            return exc.code
        return None if result.hold is not None else "no_hold_trapped"

    def _trapped(self, conn: Any, barcode: str) -> Any:
        return conn.execute(
            """SELECT h.id, h.status, b.code AS pickup, p.card FROM hold h JOIN branch b ON b.id = h.pickup_branch_id
               JOIN patron p ON p.id = h.patron_id JOIN item i ON i.id = h.trapped_item_id
               WHERE i.barcode = %s AND h.status IN ('in_transit', 'on_shelf')""", (barcode,)).fetchone()

    def _arrive(self, conn: Any, barcode: str) -> Any:
        """A copy travelling for a hold reaches the pickup branch (checked in there): on the hold shelf."""
        row = self._trapped(conn, barcode)
        if row is not None and row["status"] == "in_transit":
            circulation.checkin(conn, ACTOR, barcode, branch=row["pickup"])
        return row

    def _replenish(self, conn: Any) -> str | None:
        pid, _ = self.fresh()
        return refused(lambda: holds.place_hold(conn, ACTOR, pid, self.s.record_id, pickup_for(pid), placed_by="bench"))

    def collect(self, conn: Any, op: Op) -> str | None:
        """After a trapping check-in: the copy reaches the pickup branch, the patron borrows it, a new patron
        joins the queue."""
        row = self._arrive(conn, op.item)
        if row is None:
            return "nothing_trapped"
        code = refused(lambda: circulation.checkout(conn, ACTOR, row["card"], op.item, branch=row["pickup"],
                                                    override=list(OVERRIDABLE)))
        return code or self._replenish(conn)

    def shelve_all(self, conn: Any) -> None:
        """Before the cancel runs: every copy comes back and waits on the hold shelf for its hold."""
        for barcode, home in self.s.copies:
            circulation.checkin(conn, ACTOR, barcode, branch=home)
            row = self._arrive(conn, barcode)
            self.shelf[barcode] = int(row["id"])
            self._replenish(conn)

    def cancel(self, conn: Any, op: Op) -> str | None:
        return refused(lambda: holds.cancel_hold(conn, ACTOR, self.shelf[op.item], reason="bench"))

    def after_cancel(self, conn: Any, op: Op) -> str | None:
        row = self._arrive(conn, op.item)
        if row is None:
            return "nothing_trapped"
        self.shelf[op.item] = int(row["id"])
        return self._replenish(conn)

    def queue_plans(self, rows: list[Any], clients: int, per: int) -> list[list[Op]]:
        """Reads of random holds in the bestseller's queue (`rows`: its waiting holds)."""
        return [[Op(str(r["id"]), "", str(r["patron_id"])) for r in self.rng.choices(rows, k=per)]
                for _ in range(clients)]

    @staticmethod
    def position(conn: Any, op: Op) -> str | None:
        return None if holds.position(conn, int(op.item)) > 0 else "not_in_queue"

    @staticmethod
    def my_holds(conn: Any, op: Op) -> str | None:
        return None if holds.patron_holds(conn, int(op.patron)) else "no_holds"


# -- the benchmark ------------------------------------------------------------------------------------------

def bench_holds(url: str, scale: float, workdir: Path, seed: int = 1, postmaster: int | None = None) -> None:
    from staff.holds import pull_list

    del workdir
    print(f"Loading Nagano × {scale:g} ...", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    factor = min(1.0, max(0.05, scale * 5))
    n_place, n_trap, n_cancel, n_read = (round(1000 * factor), round(500 * factor), round(300 * factor),
                                         round(2000 * factor))
    warm = 3
    per_place, per_trap, per_cancel = (max(1, n_place // CLIENTS), max(1, n_trap // CLIENTS),
                                       max(1, n_cancel // CLIENTS))
    # Patrons used once: 20 borrowers and the queue, placements (two kinds, two runs each, warm-ups), the
    # replenishers after each trap and cancel (and their warm-ups).
    needed = (sum(n for _, n in BESTSELLER_COPIES) + BESTSELLER_HOLDS + 2 * (n_place + 2 * CLIENTS * (per_place + warm))
              + n_trap + 2 * CLIENTS * (per_trap + warm) + n_cancel + 2 * CLIENTS * (per_cancel + warm) + 200)
    t_load = time.perf_counter()
    with db.connect(url) as conn:
        loaded = load(conn, scale)
        print("Holds ...", file=sys.stderr, flush=True)
        setup = set_up(conn, loaded, scale, needed)
    load_s = time.perf_counter() - t_load

    pool = db.pool(url, min_size=CLIENTS, max_size=CLIENTS)

    def connect() -> AbstractContextManager[Any]:
        return pool.connection()

    probe = CpuProbe(postmaster)
    bench = Bench(setup)
    bench.rng.seed(seed)
    runs: list[Run] = []
    queue_sizes: list[tuple[str, int]] = []
    with_after: set[str] = set()     # runs whose CPU figures include the untimed work after each operation

    def queue_size(when: str) -> None:
        with pool.connection() as conn:
            row = conn.execute("SELECT count(*) AS n FROM hold WHERE record_id = %s AND status = 'placed'",
                               (setup.record_id,)).fetchone()
        queue_sizes.append((when, int(row["n"])))

    def measure(label: str, plans: Callable[[int, int], list[list[Op]]], do: Callable[[Any, Op], str | None],
                after: Callable[[Any, Op], str | None] | None, n_one: int, per_client: int, paced: bool = True) -> None:
        """1 client, 20 back to back, and (for the writes) 20 pausing 0-200 ms between operations."""
        run_clients("warm-up", plans(CLIENTS, warm), connect, do, after)
        for k, pause in ((1, 0.0), (CLIENTS, 0.0), (CLIENTS, PACE)):
            if pause and not paced:
                continue
            name = f"{label}, {'1 client' if k == 1 else f'{k} clients'}" + (
                f", {PACE * 1000:.0f} ms apart" if pause else "")
            per = n_one if k == 1 else per_client // 2 if pause else per_client
            runs.append(run_clients(name, plans(k, per), connect, do, after, pause=pause, cpu=probe))
            if after is not None:
                with_after.add(name)

    queue_size("at the start")
    print("Placing holds:", file=sys.stderr, flush=True)
    measure("place a hold on the bestseller", bench.ops_place_bestseller, bench.place, bench.unplace, n_place,
            per_place)
    measure("place a hold on an ordinary title", bench.ops_place_ordinary, bench.place, None, n_place, per_place)
    queue_size("after placing (each placement cancelled again)")
    print("Check-ins that trap a bestseller hold:", file=sys.stderr, flush=True)
    measure("check-in trapping a bestseller hold", bench.copy_plans, bench.trap_checkin, bench.collect, n_trap,
            per_trap)
    queue_size("after the trapping check-ins (each replenished)")
    print("Cancelling on-shelf holds:", file=sys.stderr, flush=True)
    with pool.connection() as conn:
        bench.shelve_all(conn)
    measure("cancel an on-shelf hold, next one trapped", bench.copy_plans, bench.cancel, bench.after_cancel,
            n_cancel, per_cancel)
    queue_size("after the cancels (each replenished)")
    print("Reading:", file=sys.stderr, flush=True)
    with pool.connection() as conn:
        waiting = conn.execute("SELECT id, patron_id FROM hold WHERE record_id = %s AND status = 'placed'",
                               (setup.record_id,)).fetchall()

    def positions(k: int, per: int) -> list[list[Op]]:
        return bench.queue_plans(waiting, k, per)

    measure("queue position of a bestseller hold", positions, bench.position, None, n_read, max(1, n_read // CLIENTS),
            paced=False)
    measure("My Library: a patron's holds with positions", positions, bench.my_holds, None, n_read,
            max(1, n_read // CLIENTS), paced=False)
    today = date.today()
    chuo = setup.branch_ids["chuo"]
    lines: list[int] = []

    def pull(conn: Any, op: Op) -> str | None:
        lines.append(len(pull_list(conn, chuo, today)))
        return None

    runs.append(run_clients("staff pull list for 中央, 1 client", [[Op("", "")] * 20], connect, pull, cpu=probe))
    report(loaded, setup, scale, load_s, load_before, runs, queue_sizes, lines[-1] if lines else 0, with_after)


def report(loaded: Loaded, setup: Setup, scale: float, load_s: float, load_before: float, runs: list[Run],
           queue_sizes: list[tuple[str, int]], pull_lines: int, with_after: set[str]) -> None:
    c, hc = loaded.counts, setup.counts
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"\nMachine: {os.cpu_count()} cores, {mem:.0f} GiB; PostgreSQL embedded"
          f"{' (DATABASE_URL)' if os.environ.get('DATABASE_URL') else ''}, synchronous_commit on; load average "
          f"{load_before:.1f} before the load, {os.getloadavg()[0]:.1f} at the end (a shared machine).")
    print(f"Data (Nagano × {scale:g}): {c['records']:,} records, {c['items']:,} items ({c['on_loan']:,} on loan), "
          f"{c['patrons']:,} patrons, {c['open_loans']:,} open loans; holds: {hc['placed']:,} waiting on "
          f"{hc['titles']:,} titles (the bestseller's {BESTSELLER_HOLDS:,} included), {hc['on_shelf']:,} on hold "
          f"shelves. Loaded in {load_s:.0f} s; the holds part:\n")
    print("| load phase (holds)                                          |      rows | seconds |")
    print("|-------------------------------------------------------------|-----------|---------|")
    for name, rows, secs in setup.phases:
        print(f"| {name:<59} | {rows:>9,} | {secs:>7.1f} |")
    print("\nLatency per operation (ms; refused operations are not in the latencies):\n")
    print("| operation                                            |      n |   ops/s |  p50 ms |  p95 ms |  p99 ms "
          "|  max ms |")
    print("|------------------------------------------------------|--------|---------|---------|---------|---------"
          "|---------|")
    refusals = []
    for run in runs:
        if run.latencies:
            print(latency_row(run.name, len(run.latencies), run.seconds, run.latencies))
        if run.refusals:
            refusals.append(f"{run.name}: {run.refusals}")
    print("\nCPU per operation (ms; this process runs the client threads and the service code; PostgreSQL counts "
          "all its\nprocesses; the last column is how many cores other work on the machine kept busy; * includes "
          "the untimed\nwork after each operation: the cancel after a placement, the arrival, check-out and new hold "
          "after a trap):\n")
    print("| operation                                            | this process | PostgreSQL |  total "
          "| other work, cores |")
    print("|------------------------------------------------------|--------------|------------|--------"
          "|-------------------|")
    for run in runs:
        n = len(run.latencies) + sum(run.refusals.values())
        if n and any(run.cpu):
            mine, _, pg = (x * 1000 / n for x in run.cpu[:3])
            others = max(0.0, run.cpu[3] - sum(run.cpu[:3])) / run.seconds
            name = run.name + (" *" if run.name in with_after else "")
            print(f"| {name:<52} | {mine:>12.2f} | {pg:>10.2f} | {mine + pg:>6.2f} | {others:>17.1f} |")
    print("\nThe bestseller's queue (waiting holds): " + "; ".join(f"{w}: {n:,}" for w, n in queue_sizes) + ".")
    print(f"The pull list for 中央 had {pull_lines:,} lines.")
    print("Refused operations: " + ("; ".join(refusals) if refusals else "none."))
    for run in runs:
        if run.latencies and (run.name.startswith("place") or run.name.startswith("check-in")):
            p95 = pct([x * 1000 for x in run.latencies], 95)
            print(f"p95 {run.name}: {p95:.1f} ms ({'under' if p95 < 50 else 'over'} the counters' 50 ms; "
                  f"median {statistics.median(run.latencies) * 1000:.1f} ms).")
