"""Benchmarks that print a table. Run through script/bench; figures go to docs/benchmarks.md.

  audit   audit-log appends (1 and 20 concurrent writers), chain verification, session lookup
  search  synthetic catalogue (default 1,000,000 records) built from the shared real data: import and index
          throughput, index and table sizes, memory, OPAC search latency at 1 and 16 clients, freshness
  circulation  Nagano-scale circulation data (--scale is the fraction of Nagano, default 1): check-out, check-in
          and renewal latency with 1 and 20 clients, in-process and over the staff app's HTTP API
          (script/bench_circulation.py)
  holds   the circulation data (same --scale) with waiting holds and a bestseller carrying 1,000 holds: placing,
          trapping at check-in, cancelling on the hold shelf, queue positions, the pull list (script/bench_holds.py)
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import itertools
import json
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api import db, migrate
from api.audit import Actor, record
from api.audit import service as audit
from api.auth import service as auth
from api.catalog.bib import BibRecord, Classification, Imported, Name, Series, Subject
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


# -- search: synthetic catalogue ------------------------------------------------------------------

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
BENCH_SOURCE = "BENCH"

# Real NDC numbers per class, weighted roughly like a Japanese public library's stock (literature first).
NDC_CLASSES: dict[str, tuple[int, tuple[str, ...]]] = {
    "0": (3, ("007.6", "010.21", "019.9", "031.4", "049.1", "002.7")),
    "1": (4, ("159", "146.8", "121.5", "188.5", "104", "140", "147")),
    "2": (8, ("210.1", "210.5", "289.1", "291.09", "290.93", "209", "230", "210.75")),
    "3": (14, ("367.3", "369.2", "336.5", "332.1", "316.1", "370.4", "375.1", "338.1", "361.4", "366.29")),
    "4": (8, ("493.7", "498.3", "491.3", "480", "410", "440.12", "460.4", "493.25")),
    "5": (9, ("596", "594", "593.36", "547.48", "519", "548.3", "588", "527")),
    "6": (4, ("626.9", "645.6", "673.97", "686.21", "611.1", "629.7")),
    "7": (10, ("726.1", "726.6", "780.7", "783.47", "767.8", "748", "721.025", "727", "778.21")),
    "8": (2, ("810.4", "837.8", "830.7", "817.5", "814")),
    "9": (38, ("913.6", "913.6", "913.6", "933.7", "911.56", "914.6", "916", "953.7", "929.1", "913.8", "908.3",
               "913.68", "911.168")),
}
# Nagano-like service points: two libraries, a bookmobile, 28 branch rooms (分室), with skewed stock.
BRANCHES = [("chuo", "中央図書館", 40), ("minami", "南部図書館", 30), ("idou", "移動図書館", 5)] + \
    [(f"room{i:02d}", f"分室{i:02d}", 1) for i in range(1, 29)]
ITEMS_PER_RECORD = 1.19 / 3.65  # Nagano in six years: 1.19M items for 3.65M records


@dataclass
class Pools:
    """Real values from the shared data, with readings, to recombine into synthetic records."""

    titles: list[tuple[str, str]]
    subtitles: list[tuple[str, str]]
    authors: list[tuple[str, str, str | None]]          # real headings: name, reading, dates
    families: list[tuple[str, str]]
    givens: list[tuple[str, str]]
    publishers: list[tuple[str, str]]
    subjects: list[tuple[str, str]]
    series: list[tuple[str, str]]
    ndc: dict[str, list[str]]
    marc_templates: list[BibRecord]
    aozora_templates: list[BibRecord]


def build_pools() -> Pools:
    from api.catalog.aozora import read_aozora
    from api.catalog.marc_import import read_marc
    from indexer.analysis import reading_of

    marc = [i.record for i in read_marc(SHARED_DATA / "ndl_japan_marc21_sample.mrc", "ndl-marc21")
            if isinstance(i, Imported)]
    aozora = [i.record for i in read_aozora(SHARED_DATA / "aozora_list_person_all_utf8.csv")
              if isinstance(i, Imported)]

    def read(text: str, reading: str | None) -> str:
        return reading or reading_of(text)

    titles = {(r.title, read(r.title, r.title_reading)) for r in marc + aozora if r.title}
    subtitles = {(r.subtitle, read(r.subtitle, r.subtitle_reading)) for r in marc if r.subtitle}
    subtitles |= {(t, rd) for t, rd in titles if len(t) <= 12}
    authors: dict[str, tuple[str, str, str | None]] = {}
    families: set[tuple[str, str]] = set()
    givens: set[tuple[str, str]] = set()
    for r in marc + aozora:
        for a in r.authors:
            reading = read(a.name, a.reading)
            authors.setdefault(a.name, (a.name, reading, a.dates))
            parts = re.split(r",\s*|\s+", a.name)
            readings = re.split(r",\s*|\s+", reading)
            if len(parts) == 2 and len(readings) == 2 and all(parts) and all(readings):
                families.add((parts[0], readings[0]))
                givens.add((parts[1], readings[1]))
    publishers = {(r.publisher, read(r.publisher, r.publisher_reading)) for r in marc if r.publisher}
    for r in aozora:  # the publisher of the Aozora work's source book: 底本: 書名（出版社）
        for note in r.notes:
            m = re.match(r"底本: .*（([^（）]+)）$", note)
            if m:
                publishers.add((m.group(1), reading_of(m.group(1))))
    subjects = {(s.term, read(s.term, s.reading)) for r in marc for s in r.subjects}
    series = {(s.title, read(s.title, s.reading)) for r in marc for s in r.series}
    ndc: dict[str, list[str]] = {c: list(numbers) for c, (_, numbers) in NDC_CLASSES.items()}
    for r in marc:
        if r.ndc and r.ndc[:1].isdigit():
            ndc[r.ndc[0]].append(r.ndc)
    return Pools(sorted(titles), sorted(subtitles), sorted(authors.values()), sorted(families), sorted(givens),
                 sorted(publishers), sorted(subjects), sorted(series), ndc, marc, aozora)


def isbn13(n: int) -> str:
    """A valid, unique ISBN-13 in the Japanese group (978-4) for each n below 10**8."""
    body = f"9784{(n * 7_919 + 12_345_678) % 100_000_000:08d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


@dataclass
class Sample:
    """What the query mix needs to know about a generated record."""

    title: str
    title_reading: str
    author: str
    isbn: str | None
    ndc: str | None
    year: int


class Generator:
    """Deterministic synthetic records: the i-th record depends only on the seed and i's position."""

    def __init__(self, pools: Pools, seed: int, raw: bool) -> None:
        self.p = pools
        self.rng = random.Random(seed)
        self.raw = raw
        classes = list(NDC_CLASSES)
        self.class_weights = list(itertools.accumulate(NDC_CLASSES[c][0] for c in classes))
        self.classes = classes
        self.samples: list[Sample] = []

    def _author(self) -> tuple[str, str, str | None]:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(self.p.authors)
        family, given = rng.choice(self.p.families), rng.choice(self.p.givens)
        return f"{family[0]}, {given[0]}", f"{family[1]}, {given[1]}", None

    def record(self, i: int) -> BibRecord:
        rng, p = self.rng, self.p
        kind = rng.random()
        material = "etext" if kind < 0.05 else "serial" if kind < 0.06 else "sound" if kind < 0.07 else \
            "video" if kind < 0.08 else "book"
        title, title_reading = rng.choice(p.titles)
        r = BibRecord(source=BENCH_SOURCE, control_number=f"B{i:09d}", title=title, title_reading=title_reading,
                      material_type=material)
        if rng.random() < 0.3:
            r.subtitle, r.subtitle_reading = rng.choice(p.subtitles)
        if rng.random() < 0.1:
            r.part = rng.choice(("上", "下", "1", "2", "3", "第1巻", "第2巻", "前編", "後編"))
        for n in range(1 if rng.random() < 0.75 else rng.randint(2, 3)):
            name, reading, dates = self._author()
            r.authors.append(Name(name=name, reading=reading, dates=dates, role="著" if n == 0 else "訳"))
        r.responsibility = " ".join(a.name.replace(", ", "") for a in r.authors) + " 著"
        cls = self.classes[bisect.bisect_right(self.class_weights, rng.random() * self.class_weights[-1])]
        r.ndc = rng.choice(p.ndc[cls])
        r.ndc_edition = "10" if rng.random() < 0.6 else "9"
        r.classifications = [Classification("ndc", r.ndc, r.ndc_edition)]
        year = int(1950 + 76 * rng.random() ** 0.6)  # more recent books than old ones
        r.year = year
        r.language = "jpn" if rng.random() < 0.96 else rng.choice(("eng", "chi", "kor"))
        r.audience = "juvenile" if r.ndc in ("726.6", "913.8") or rng.random() < 0.08 else None
        if material == "etext":
            t = rng.choice(p.aozora_templates)
            r.publisher, r.publisher_reading = "青空文庫", "アオゾラブンコ"
            r.links = list(t.links)
            r.notes = list(t.notes)
            if self.raw:
                r.raw, r.raw_format = t.raw, t.raw_format
        else:
            r.publisher, r.publisher_reading = rng.choice(p.publishers)
            r.place = "東京" if rng.random() < 0.8 else rng.choice(("大阪", "京都", "長野", "名古屋"))
            r.extent = f"{rng.randint(24, 480)}p ; {rng.choice((15, 18, 19, 20, 21, 22, 26))}cm"
            r.price = f"{rng.randrange(500, 4000, 100)}円"
            if material == "book" and year >= 1981:  # Japanese books carry ISBNs from 1981
                r.isbns = [isbn13(i)]
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                term, reading = rng.choice(p.subjects)
                r.subjects.append(Subject(term, reading, "ndlsh"))
            if rng.random() < 0.15:
                title_s, reading_s = rng.choice(p.series)
                r.series.append(Series(title_s, reading_s, str(rng.randint(1, 40))))
            if self.raw:
                t = rng.choice(p.marc_templates)
                r.raw, r.raw_format = t.raw, t.raw_format
        if i % 500 == 0:
            self.samples.append(Sample(title, title_reading, r.authors[0].name,
                                       r.isbns[0] if r.isbns else None, r.ndc, year))
        return r


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the rebuild's analysis workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pg_cpu_seconds(postmaster: int | None) -> float:
    """CPU time of a server's process tree: the embedded PostgreSQL's postmaster (or the OPAC's uvicorn) with its
    reaped children, and its live children."""
    if postmaster is None:
        return 0.0
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(entry.name) == postmaster:
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class StatementTimer:
    """Wraps a connection to total, per SQL statement, the wall time and the calling thread's CPU time inside
    `execute` (parameter conversion and result parsing; the rest is PostgreSQL's work, the round trip and
    waiting for the GIL), and the same for whole transactions (which include the COPY, BEGIN and COMMIT)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.spent: dict[str, list[float]] = {}
        self.in_transactions = [0.0, 0.0]  # wall, CPU

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        t0, cpu = time.perf_counter(), time.thread_time()
        try:
            return self._conn.execute(query, *args, **kwargs)
        finally:
            key = " ".join(str(query).split())[:64]
            totals = self.spent.setdefault(key, [0, 0.0, 0.0])
            totals[0] += 1
            totals[1] += time.perf_counter() - t0
            totals[2] += time.thread_time() - cpu

    @contextlib.contextmanager
    def transaction(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        t0, cpu = time.perf_counter(), time.thread_time()
        try:
            with self._conn.transaction(*args, **kwargs) as tx:
                yield tx
        finally:
            self.in_transactions[0] += time.perf_counter() - t0
            self.in_transactions[1] += time.thread_time() - cpu


def progress(label: str, done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    print(f"\r  {label}: {done:>9,}/{total:,}  {done / elapsed if elapsed else 0:>7.0f}/s  "
          f"rss {rss_mb():,.0f} MB", end="", file=sys.stderr, flush=True)


@dataclass
class ImportRun:
    """One run_import over generated records. Generation happens in run_import's reading thread, while the
    writer thread saves earlier batches, so it is timed on its own and taken out (see `seconds`)."""

    seconds: float      # the larger of `wall - generation` and `writing`: the import alone, erring on the slow side
    cpu: float          # CPU seconds of this process (both threads), generation left out
    wall: float         # run_import's wall time, generation included
    generation: float   # wall seconds spent generating records
    reading_cpu: float  # CPU seconds of the reading thread (fill_readings, prepare_records), generation left out
    writing: float      # wall seconds the writer thread spent inside its transactions
    rates: list[float]  # records/s in each tenth of the load, reckoned like `seconds`
    timer: StatementTimer
    gen: Generator


def load_catalogue(conn: Any, pools: Pools, n: int, seed: int, batch: int, raw: bool) -> ImportRun:
    """Import n records with one run_import (batches of `batch`, pipelined), the records generated as it
    reads them."""
    from api.catalog import importer
    from api.catalog.importer import ImportReport

    gen = Generator(pools, seed, raw)
    timer = StatementTimer(conn)
    generation = [0.0, 0.0]  # wall, CPU of the reading thread

    def items() -> Iterator[Imported]:
        for i in range(n):
            t0, cpu = time.perf_counter(), time.thread_time()
            item = Imported(gen.record(i), i + 1)
            generation[0] += time.perf_counter() - t0
            generation[1] += time.thread_time() - cpu
            yield item

    started = time.perf_counter()
    marks = [(0, started, 0.0, 0.0)]  # records saved, time, generation and writing seconds so far
    batches = 0

    def on_batch(report: ImportReport) -> None:  # in the writer thread, after each commit
        nonlocal batches
        batches += 1
        if report.read >= len(marks) * n / 10:
            marks.append((report.read, time.perf_counter(), generation[0], timer.in_transactions[0]))
        if batches % 20 == 1:
            progress("import", report.read, n, started)

    default_batch, importer.BATCH_SIZE = importer.BATCH_SIZE, batch
    cpu0, thread_cpu0 = time.process_time(), time.thread_time()
    try:
        # Without outbox rows: a bulk load that the rebuild below indexes.
        report = importer.run_import(cast(Any, timer), Actor.cli(), items(), origin="bench", progress=on_batch,
                                     outbox=False)
    finally:
        importer.BATCH_SIZE = default_batch
    wall = time.perf_counter() - started
    cpu, reading_cpu = time.process_time() - cpu0, time.thread_time() - thread_cpu0
    print(file=sys.stderr)
    assert report.added == n and not report.rejected, report
    writing = timer.in_transactions[0]
    rates = [(n1 - n0) / max(t1 - t0 - (g1 - g0), w1 - w0) for (n0, t0, g0, w0), (n1, t1, g1, w1) in
             itertools.pairwise(marks)]
    return ImportRun(max(wall - generation[0], writing), cpu - generation[1], wall, generation[0],
                     reading_cpu - generation[1], writing, rates, timer, gen)


def load_items(conn: Any) -> int:
    """Copies for about a quarter of the printed records (Nagano's 1.19M items : 3.65M records), spread over
    31 service points, mostly available, some on loan; deterministic from the record id."""
    with conn.transaction():
        for code, name, _ in BRANCHES:
            conn.execute("INSERT INTO branch (code, name) VALUES (%s, %s) ON CONFLICT (code) DO NOTHING",
                         (code, name))
        weights = [(code, w) for code, _, w in BRANCHES]
        total = sum(w for _, w in weights)
        bounds, acc = [], 0
        for code, w in weights:
            acc += w
            bounds.append((code, acc * 1000 // total))
        case = " ".join(f"WHEN x.b < {bound} THEN '{code}'" for code, bound in bounds)
        # A quarter of the non-e-text records hold 1-3 copies (1.38 on average): ITEMS_PER_RECORD overall.
        added = conn.execute(f"""
            INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number, status,
                              acquired_on, price)
            SELECT r.id, '2' || lpad((r.id * 4 + c.n)::text, 12, '0'), b.id, b.id,
                   CASE WHEN r.data->>'audience' = 'juvenile' THEN 'children' ELSE 'book' END,
                   concat_ws('/', nullif(r.ndc, ''), left(r.title_reading, 1)),
                   CASE WHEN x.s < 780 THEN 'available' WHEN x.s < 950 THEN 'on_loan'
                        WHEN x.s < 970 THEN 'in_transit' WHEN x.s < 985 THEN 'on_hold_shelf' ELSE 'missing' END,
                   current_date - (x.s * 3 + c.n)::int, 500 + (r.id % 35) * 100
            FROM bib_record r
            CROSS JOIN generate_series(1, 3) AS c(n)
            CROSS JOIN LATERAL (SELECT abs(hashint8(r.id * 4 + c.n)) % 1000 AS s,
                                       abs(hashint8(-(r.id * 4 + c.n))) % 1000 AS b,
                                       abs(hashint8(r.id * 7 + 1)) % 1000 AS holds,
                                       abs(hashint8(r.id * 7 + 2)) % 100 AS copies) AS x
            JOIN branch b ON b.code = CASE {case} END
            WHERE r.source = '{BENCH_SOURCE}' AND r.material_type <> 'etext' AND x.holds < 250
              AND (c.n = 1 OR (c.n = 2 AND x.copies < 30) OR (c.n = 3 AND x.copies < 8))""").rowcount
    return added


def index_size(index_dir: Path) -> int:
    current = (index_dir / "current").read_text().strip()
    return sum(f.stat().st_size for f in (index_dir / current).rglob("*") if f.is_file())


def to_hiragana(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in text)


def query_mix(samples: list[Sample], seed: int, count: int) -> list[tuple[str, dict[str, str]]]:
    """What OPAC users type, drawn from records that exist: title words, whole titles, author names, hiragana
    readings, ISBN-13 and hyphenated ISBN-10, and searches narrowed by NDC, year range, branch and availability."""
    from stdnum import isbn as stdnum_isbn

    from indexer.analysis import analyze

    rng = random.Random(seed)
    kinds = (("title word", 20), ("whole title", 10), ("author", 12), ("hiragana reading", 15), ("ISBN-13", 8),
             ("ISBN-10 hyphenated", 5), ("title + author", 6), ("word + NDC", 6), ("word + year range", 6),
             ("word + branch + available", 7), ("NDC only", 3), ("author, newest first", 2))
    bounds = list(itertools.accumulate(w for _, w in kinds))
    with_isbn = [s for s in samples if s.isbn]

    def word(s: Sample) -> str:
        units = [u for u in analyze(s.title).units_c if len(u) >= 2 and not re.fullmatch(r"[\W\d]+", u)]
        return rng.choice(units) if units else s.title

    def family(s: Sample) -> str:
        return re.split(r",\s*|\s+", s.author)[0]

    out: list[tuple[str, dict[str, str]]] = []
    while len(out) < count:
        kind = kinds[bisect.bisect_right(bounds, rng.random() * bounds[-1])][0]
        s = rng.choice(samples)
        if kind == "title word":
            params = {"q": word(s)}
        elif kind == "whole title":
            params = {"title": s.title}
        elif kind == "author":
            params = {"author": s.author.replace(", ", "") if rng.random() < 0.6 else family(s)}
        elif kind == "hiragana reading":
            words = s.title_reading.replace(",", " ").split()
            params = {"q": to_hiragana("".join(words[:rng.randint(1, 3)]))}
        elif kind == "ISBN-13":
            params = {"q": rng.choice(with_isbn).isbn or ""}
        elif kind == "ISBN-10 hyphenated":
            params = {"q": stdnum_isbn.format(stdnum_isbn.to_isbn10(rng.choice(with_isbn).isbn or ""))}
        elif kind == "title + author":
            params = {"title": word(s), "author": family(s)}
        elif kind == "word + NDC":
            params = {"q": word(s), "ndc": (s.ndc or "9")[:3]}
        elif kind == "word + year range":
            params = {"q": word(s), "year_from": str(s.year - 5), "year_to": str(s.year + 5)}
        elif kind == "word + branch + available":
            params = {"q": word(s), "branch": rng.choice(("chuo", "chuo", "minami", "idou")), "available": "true"}
        elif kind == "NDC only":
            params = {"ndc": (s.ndc or "913")[:rng.choice((1, 3))]}
        else:
            params = {"author": family(s), "sort": "newest"}
        out.append((kind, params))
    return out


class TimedEngine:
    """Wraps an engine to split a request's time into engine and PostgreSQL parts (one client only)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.slots = engine.slots
        self.spent = 0.0

    def search(self, request: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.engine.search(request)
        finally:
            self.spent += time.perf_counter() - t0


@dataclass
class Measured:
    kind: str
    seconds: float
    engine_seconds: float
    total: int


def run_clients(url: str, engines: Callable[[], Any], queries: list[tuple[str, dict[str, str]]], clients: int,
                per_client: int, offset: int = 0, before_start: Callable[[], None] | None = None,
                pause: float = 0.0) -> tuple[float, list[Measured]]:
    """`clients` threads, each with its own PostgreSQL connection, running OPAC searches back to back (or
    `pause` seconds apart, not counted in the latency)."""
    from indexer.params import from_params
    from opac.search import search

    results: list[Measured] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        engine = TimedEngine(engines())
        mine: list[Measured] = []
        with db.connect(url) as conn:
            gate.wait()
            for j in range(per_client):
                kind, params = queries[(offset + k * per_client + j) % len(queries)]
                engine.spent = 0.0
                t0 = time.perf_counter()
                outcome = search(conn, engine, from_params(params))
                mine.append(Measured(kind, time.perf_counter() - t0, engine.spent, outcome.result.total))
                if pause:
                    time.sleep(pause)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    if before_start:
        before_start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, results


def _client_process(url: str, index_dir: str, queries: list[tuple[str, dict[str, str]]], threads: int,
                    per_client: int, offset: int, barrier: Any, out: Any, pause: float,
                    warm: list[tuple[str, dict[str, str]]], cache: bool) -> None:
    """One OPAC server process (as `uvicorn --workers N` runs): its own engine, `threads` clients."""
    from indexer import tantivy_engine

    if not cache:
        tantivy_engine.CACHE_MIN_HITS = 2**62
    engine = tantivy_engine.TantivyEngine(Path(index_dir))
    run_clients(url, lambda: engine, warm, 1, len(warm))  # load the dictionary, open the index
    before = engine.cache_stats
    _, res = run_clients(url, lambda: engine, queries, threads, per_client, offset, before_start=barrier.wait,
                         pause=pause)
    hits, misses = (a - b for a, b in zip(engine.cache_stats, before, strict=True))
    out.put(([(m.kind, m.seconds, m.engine_seconds, m.total) for m in res], hits, misses))


def run_processes(url: str, index_dir: Path, queries: list[tuple[str, dict[str, str]]], processes: int,
                  clients: int, per_client: int, pause: float = 0.0,
                  warm: list[tuple[str, dict[str, str]]] | None = None,
                  cache: bool = True) -> tuple[float, list[Measured], tuple[int, int]]:
    """`clients` client threads spread over `processes` processes, so the GIL is not shared by all of them.
    Returns the seconds, the measurements and the engines' result-cache (hits, misses)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    per_process = clients // processes
    procs = [ctx.Process(target=_client_process, args=(url, str(index_dir), queries, per_process, per_client,
                                                       k * per_process * per_client, barrier, out, pause,
                                                       (warm or queries)[:20], cache))
             for k in range(processes)]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.perf_counter()
    results: list[Measured] = []
    hits = misses = 0
    for _ in procs:
        measured, h, m = out.get()
        results += [Measured(*x) for x in measured]
        hits, misses = hits + h, misses + m
    secs = time.perf_counter() - t0
    for proc in procs:
        proc.join()
    return secs, results, (hits, misses)


def latency_row(name: str, n: int, seconds: float | None, lat: list[float]) -> str:
    ms = [x * 1000 for x in lat]
    rate = f"{n / seconds:>7.0f}" if seconds else "      -"
    return (f"| {name:<52} | {n:>6} | {rate} | {statistics.median(ms):>7.1f} | {pct(ms, 95):>7.1f} "
            f"| {pct(ms, 99):>7.1f} | {max(ms):>7.1f} |")


def freshness(url: str, index_dir: Path, samples: int, interval: float, seed: int) -> tuple[list[float], list[float]]:
    """Commit an item status change (which writes the search outbox) and poll the OPAC search until the record
    no longer shows as available. Meanwhile a thread does what the worker's once-a-second job does: a fresh
    engine and connection, then apply_outbox until nothing is pending. Returns (commit→visible, apply) seconds."""
    from api.items.service import update_item
    from indexer.params import from_params
    from indexer.sync import apply_outbox
    from indexer.tantivy_engine import TantivyEngine
    from opac.search import search

    stop = threading.Event()
    applies: list[float] = []

    def worker() -> None:
        due = time.monotonic()
        while not stop.is_set():
            due += interval
            t0 = time.perf_counter()
            engine = TantivyEngine(index_dir)
            with db.connect(url) as conn:
                applied = 0
                while n := apply_outbox(conn, engine):
                    applied += n
            if applied:
                applies.append(time.perf_counter() - t0)
            stop.wait(max(0.0, due - time.monotonic()))

    delays: list[float] = []
    rng = random.Random(seed)
    actor = Actor.cli()
    opac_engine = TantivyEngine(index_dir)  # the OPAC process's long-lived engine
    with db.connect(url) as staff, db.connect(url) as opac:
        candidates = staff.execute(
            """SELECT r.isbns[1] AS isbn, min(i.barcode) AS barcode FROM bib_record r JOIN item i ON i.record_id = r.id
               WHERE cardinality(r.isbns) > 0 AND r.id %% 97 = 0
               GROUP BY r.id HAVING count(*) = 1 AND bool_and(i.status = 'available') ORDER BY r.id LIMIT %s""",
            (samples * 4,)).fetchall()
        rng.shuffle(candidates)
        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        try:
            for c in candidates[:samples]:
                request = from_params({"isbn": c["isbn"], "available": "true"})
                if search(opac, opac_engine, request).result.total != 1:
                    continue  # not in the expected state (should not happen)
                time.sleep(rng.uniform(0, interval))  # commits fall anywhere in the worker's cycle
                update_item(staff, actor, c["barcode"], {"status": "missing"})
                committed = time.perf_counter()
                while search(opac, opac_engine, request).result.total:
                    if time.perf_counter() - committed > 60:
                        break
                    time.sleep(0.005)
                delays.append(time.perf_counter() - committed)
                print(f"\r  freshness: {len(delays)}/{samples}", end="", file=sys.stderr, flush=True)
        finally:
            stop.set()
            thread.join()
    print(file=sys.stderr)
    return delays, applies


def bench_search(url: str, records: int, *, seed: int, batch: int, raw: bool, queries: int, clients: int,
                 fresh: int, workdir: Path, postmaster: int | None, index_workers: int | None = None) -> None:
    """Build the catalogue (unless `workdir` holds one from an earlier `--keep` run), then time searches."""
    kept = workdir / "samples.json"
    if kept.exists():
        samples = [Sample(**s) for s in json.loads(kept.read_text())]
        with db.connect(url) as conn:
            n = conn.execute("SELECT count(*) AS n FROM bib_record").fetchone()["n"]  # type: ignore[index]
        print(f"Catalogue kept in {workdir}: {n:,} records (built by an earlier run; its import and index figures "
              "are in that run's output). Only the searches and freshness are timed here.")
    else:
        samples = build_catalogue(url, records, seed=seed, batch=batch, raw=raw, workdir=workdir,
                                  postmaster=postmaster, index_workers=index_workers)
        kept.write_text(json.dumps([dataclasses.asdict(s) for s in samples], ensure_ascii=False))
    time_searches(url, workdir / "index", samples, seed=seed, queries=queries, clients=clients, fresh=fresh)


def build_catalogue(url: str, records: int, *, seed: int, batch: int, raw: bool, workdir: Path,
                    postmaster: int | None, index_workers: int | None = None) -> list[Sample]:
    """Import, add items, index; print the throughput, CPU and size tables. Returns the query mix's samples."""
    from indexer.sync import apply_outbox, default_workers, rebuild
    from indexer.tantivy_engine import TantivyEngine

    index_dir = workdir / "index"
    index_workers = index_workers or default_workers()
    t0 = time.perf_counter()
    pools = build_pools()
    print(f"  pools from the shared data in {time.perf_counter() - t0:.1f} s: {len(pools.titles):,} titles, "
          f"{len(pools.subtitles):,} subtitles, {len(pools.authors):,} author headings "
          f"({len(pools.families):,} family × {len(pools.givens):,} given names), {len(pools.publishers):,} "
          f"publishers, {len(pools.subjects):,} subjects, {len(pools.series):,} series", file=sys.stderr)
    # name, n, wall seconds, CPU seconds of this process, CPU seconds of PostgreSQL
    phases: list[tuple[str, int, float, float, float]] = []
    load_before = os.getloadavg()[0]
    with db.connect(url) as conn:
        pg0 = pg_cpu_seconds(postmaster)
        run = load_catalogue(conn, pools, records, seed, batch, raw)
        import_s, import_cpu, gen = run.seconds, run.cpu, run.gen
        import_pg = pg_cpu_seconds(postmaster) - pg0
        phases.append((f"import: run_import (COPY, pipelined), batch {batch:,}", records, import_s, import_cpu,
                       import_pg))
        rss_import = rss_mb()
        t0, cpu, pg0 = time.perf_counter(), time.process_time(), pg_cpu_seconds(postmaster)
        items = load_items(conn)
        phases.append(("items: one INSERT … SELECT (not in the total)", items, time.perf_counter() - t0,
                       time.process_time() - cpu, pg_cpu_seconds(postmaster) - pg0))
        t0 = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        vacuum_s = time.perf_counter() - t0

        engine = TantivyEngine(index_dir)
        t0, cpu, pg0 = time.perf_counter(), cpu_seconds(), pg_cpu_seconds(postmaster)
        started = t0
        index_marks: list[tuple[int, float]] = []

        def index_progress(n: int) -> None:
            if n % 20_000 == 0:
                progress("index", n, records, started)
            if n >= (len(index_marks) + 1) * records / 10:
                index_marks.append((n, time.perf_counter()))

        indexed = rebuild(conn, engine, progress=index_progress, workers=index_workers)
        index_s, index_cpu, index_pg = (time.perf_counter() - t0, cpu_seconds() - cpu,
                                        pg_cpu_seconds(postmaster) - pg0)
        print(file=sys.stderr)
        phases.append((f"index: rebuild, {index_workers} analysis processes", indexed, index_s, index_cpu, index_pg))
        rss_index = rss_mb()
        load_after = os.getloadavg()[0]

        # The worker's path: outbox rows for a sample of records, as edits and item changes write them.
        sample = min(records, 20_000)
        with conn.transaction():
            conn.execute("INSERT INTO search_outbox (record_id) SELECT id FROM bib_record ORDER BY id LIMIT %s",
                         (sample,))
        t0, cpu, pg0 = time.perf_counter(), time.process_time(), pg_cpu_seconds(postmaster)
        applied = 0
        while applied < sample and (n := apply_outbox(conn, engine)):
            applied += n
        outbox = (time.perf_counter() - t0, time.process_time() - cpu, pg_cpu_seconds(postmaster) - pg0)
        with conn.transaction():
            conn.execute("UPDATE search_outbox SET applied_at = now() WHERE applied_at IS NULL")
        conn.execute("VACUUM ANALYZE search_outbox")

        sizes = conn.execute(
            """SELECT pg_total_relation_size('bib_record') AS bib_total, pg_relation_size('bib_record') AS bib_heap,
                      pg_total_relation_size(reltoastrelid) AS bib_toast, pg_indexes_size('bib_record') AS bib_idx,
                      pg_total_relation_size('item') AS item_total, pg_total_relation_size('search_outbox') AS outbox,
                      pg_database_size(current_database()) AS db
               FROM pg_class WHERE relname = 'bib_record'""").fetchone()
        assert sizes is not None
        n_branches = conn.execute("SELECT count(*) AS n FROM branch").fetchone()["n"]  # type: ignore[index]
        available = conn.execute("SELECT count(DISTINCT record_id) AS n FROM item WHERE status = 'available'"
                                 ).fetchone()["n"]  # type: ignore[index]
    isize = index_size(index_dir)

    print(f"\nMachine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} "
          f"GiB; PostgreSQL embedded{' (DATABASE_URL)' if os.environ.get('DATABASE_URL') else ''}; "
          f"seed {seed}; raw MARC {'kept' if raw else 'left out'}; load average {load_before:.1f} before the "
          f"load, {load_after:.1f} after the index (other work on this shared machine slows the figures).")
    print(f"Catalogue: {records:,} records, {items:,} items on {n_branches} service points "
          f"({available:,} records with an available copy). VACUUM ANALYZE after the load {vacuum_s:.0f} s (not "
          f"counted).\nThe records are generated as run_import reads them, in its reading thread, while its "
          f"writer thread saves earlier batches: {run.generation:.0f} s of generation, left out of the CPU "
          f"figures; run_import took {run.wall:.0f} s with it. The import's seconds are the larger of that less the "
          f"generation ({run.wall - run.generation:.0f} s) and the writer's time in its transactions "
          f"({run.writing:.0f} s): generation overlaps the writing, so subtracting it alone would understate the "
          f"import when PostgreSQL's side is the slower one; it also competes for the two cores and the GIL, so "
          f"the figure errs on the slow side.\n")
    index_rates = [(n1 - n0) / (t1 - t0) for (n0, t0), (n1, t1) in
                   itertools.pairwise([(0, started), *index_marks])]
    phases.append(("import + index (records/s over both)", records, import_s + index_s, import_cpu + index_cpu,
                   import_pg + index_pg))
    phases.append(("apply_outbox (worker path), sample of pending rows", applied, *outbox))
    print("| phase                                              |         n |  seconds | Python CPU s | PostgreSQL "
          "CPU s | CPU ms/record |  records/s |")
    print("|----------------------------------------------------|-----------|----------|--------------|-----------"
          "-------|---------------|------------|")
    for name, n, secs, cpu_s, pg_s in phases:
        print(f"| {name:<50} | {n:>9,} | {secs:>8.1f} | {cpu_s:>12.1f} | {pg_s:>16.1f} | "
              f"{(cpu_s + pg_s) * 1000 / n if n else 0:>13.3f} | {n / secs if secs else 0:>10,.0f} |")
    print(f"\nRecords/s in each tenth of the load: import {', '.join(f'{r:,.0f}' for r in run.rates)}; "
          f"index {', '.join(f'{r:,.0f}' for r in index_rates)}.")
    print("\nWhere the import's time goes: the writer thread's statements (client CPU is that thread's: parameter "
          "conversion and result parsing; the rest of the wall time is PostgreSQL, the round trip and waiting for "
          "the GIL), then the rest of its transactions and its waits, and the reading thread, which runs "
          "alongside:\n")
    print("| statement                                                          |  calls | wall s | client CPU s |")
    print("|--------------------------------------------------------------------|--------|--------|--------------|")
    timer = run.timer
    for key, (calls, wall, cpu_s) in sorted(timer.spent.items(), key=lambda kv: -kv[1][1])[:6]:
        print(f"| {key.replace('|', '/'):<66} | {calls:>6,.0f} | {wall:>6.0f} | {cpu_s:>12.0f} |")
    in_sql, in_sql_cpu = sum(v[1] for v in timer.spent.values()), sum(v[2] for v in timer.spent.values())
    in_tx, in_tx_cpu = timer.in_transactions
    others: list[tuple[str, float | None, float | None]] = [
        ("writer: rest of its transactions (COPY, BEGIN, COMMIT, Python)", in_tx - in_sql, in_tx_cpu - in_sql_cpu),
        ("writer: waiting for the next batch (generation included)", run.wall - in_tx, None),
        ("reading thread: fill_readings, prepare_records (alongside)", None, run.reading_cpu)]
    for name, other_wall, other_cpu in others:
        print(f"| {name:<66} | {'':>6} | {'' if other_wall is None else f'{other_wall:.0f}':>6} | "
              f"{'' if other_cpu is None else f'{other_cpu:.0f}':>12} |")
    mb = 2**20
    print("\n| size                                  |          MB |")
    print("|---------------------------------------|-------------|")
    for name, value in (("tantivy index on disk", isize), ("bib_record (heap)", sizes["bib_heap"]),
                        ("bib_record TOAST (raw MARC, data)", sizes["bib_toast"]),
                        ("bib_record indexes", sizes["bib_idx"]), ("bib_record total", sizes["bib_total"]),
                        ("item total", sizes["item_total"]), ("search_outbox", sizes["outbox"]),
                        ("database total", sizes["db"])):
        print(f"| {name:<37} | {value / mb:>11,.0f} |")
    print(f"| {'peak RSS after import (this process)':<37} | {rss_import:>11,.0f} |")
    print(f"| {'peak RSS after index (this process)':<37} | {rss_index:>11,.0f} |")
    return gen.samples


def time_searches(url: str, index_dir: Path, samples: list[Sample], *, seed: int, queries: int, clients: int,
                  fresh: int) -> None:
    from indexer.tantivy_engine import TantivyEngine

    # Search: warm up on a different mix, then measure. Every run has a mix of its own, so the engines' result
    # cache (broad searches, kept until the next commit) only serves searches repeated within a run.
    mixes = (query_mix(samples, seed + 1 + k, queries) for k in itertools.count())
    mix = next(mixes)
    warm = query_mix(samples, seed + 1000, min(500, queries))
    shared = TantivyEngine(index_dir)
    print("  search: warming up", file=sys.stderr)
    run_clients(url, lambda: shared, warm, 1, len(warm))
    # name, n, seconds, measurements, peak RSS, cache (hits, misses) or None
    runs: list[tuple[str, int, float, list[Measured], float, tuple[int, int] | None]] = []

    def in_process(name: str, engines: Callable[[], Any], queries_: list[tuple[str, dict[str, str]]], n_clients: int,
                   per_client: int) -> list[Measured]:
        print(f"  search: {name}", file=sys.stderr)
        before = shared.cache_stats
        secs, res = run_clients(url, engines, queries_, n_clients, per_client)
        hits, misses = (a - b for a, b in zip(shared.cache_stats, before, strict=True))
        runs.append((name, len(res), secs, res, rss_mb(), (hits, misses) if hits + misses else None))
        return res

    def in_processes(name: str, pause: float = 0.0, cache: bool = True) -> None:
        print(f"  search: {name}", file=sys.stderr)
        secs, res, stats = run_processes(url, index_dir, next(mixes), 2, clients, per, pause=pause, warm=warm,
                                         cache=cache)
        runs.append((name, len(res), secs, res, 0.0, stats if cache else None))

    one = in_process("1 client", lambda: shared, mix, 1, len(mix))
    per = max(1, len(mix) // clients)
    in_process(f"{clients} clients, one shared engine", lambda: shared, next(mixes), clients, per)
    in_processes(f"{clients} clients over 2 processes × {clients // 2} threads")
    in_processes("same, result cache off", cache=False)
    in_processes("same (cache on), 100 ms pauses between searches", pause=0.1)
    in_process(f"{clients} clients, an engine per thread (one process)", lambda: TantivyEngine(index_dir),
               next(mixes), clients, per)

    print("\nOPAC search through `opac.search.search` (query parsing and analysis, tantivy with the facets branch, "
          "available, material_type, ndc_class, year, language, then the PostgreSQL page query; 20 hits a page). "
          "Peak RSS is this process's after the run (- where the clients ran in child processes):\n")
    print("| clients                                              |      n |   q/s   |  p50 ms |  p95 ms |  p99 ms "
          "|  max ms | peak RSS MB | cache hits |")
    print("|------------------------------------------------------|--------|---------|---------|---------|---------"
          "|---------|-------------|------------|")
    for name, n, secs, res, rss, stats in runs:
        cached = f"{stats[0] / max(1, stats[0] + stats[1]):.0%}" if stats else "-"
        print(latency_row(name, n, secs, [m.seconds for m in res]) + (f" {rss:>11,.0f} |" if rss else
                                                                     f" {'-':>11} |") + f" {cached:>10} |")
    print(latency_row("1 client: engine part only", len(one), None, [m.engine_seconds for m in one]) +
          f" {'':>11} | {'':>10} |")
    print(latency_row("1 client: PostgreSQL page + parsing", len(one), None,
                      [m.seconds - m.engine_seconds for m in one]) + f" {'':>11} | {'':>10} |")

    print("\nBy kind of query, 1 client:\n")
    print("| query                                    |      n | median hits |  p50 ms |  p95 ms |  p99 ms |  max ms |")
    print("|------------------------------------------|--------|-------------|---------|---------|---------|---------|")
    kinds: dict[str, list[Measured]] = {}
    for m in one:
        kinds.setdefault(m.kind, []).append(m)
    for kind, ms in sorted(kinds.items(), key=lambda kv: -pct([m.seconds for m in kv[1]], 95)):
        lat = [m.seconds * 1000 for m in ms]
        print(f"| {kind:<40} | {len(ms):>6} | {statistics.median(m.total for m in ms):>11,.0f} | "
              f"{statistics.median(lat):>7.1f} | {pct(lat, 95):>7.1f} | {pct(lat, 99):>7.1f} | {max(lat):>7.1f} |")

    if fresh:
        delays, applies = freshness(url, index_dir, fresh, 1.0, seed)
        print("\nFreshness: an item status change committed (outbox row in the same transaction), the worker's "
              "job every 1 s (new engine + connection, apply_outbox until empty), the OPAC's long-lived engine "
              "polled every 5 ms:\n")
        print("| measure                                      |      n |  p50 ms |  p95 ms |  p99 ms |  max ms |")
        print("|----------------------------------------------|--------|---------|---------|---------|---------|")
        for name, values in (("commit → visible in OPAC search", delays),
                             ("worker job run that applied changes", applies)):
            if values:
                ms = [v * 1000 for v in values]
                print(f"| {name:<44} | {len(ms):>6} | {statistics.median(ms):>7.0f} | {pct(ms, 95):>7.0f} "
                      f"| {pct(ms, 99):>7.0f} | {max(ms):>7.0f} |")
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}. "
          f"Peak RSS of the benchmark process: {rss_mb():,.0f} MB (PostgreSQL runs in its own processes, "
          "shared_buffers 256 MB).")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["audit", "search", "http", "marc", "circulation", "holds"])
    parser.add_argument("--scale", type=float, default=None,
                        help="audit: operations per writer (2000); circulation, holds: fraction of Nagano (1.0)")
    parser.add_argument("--records", type=int, default=None,
                        help="search: catalogue size (1000000; e.g. 3650000); marc: records to import (200000)")
    parser.add_argument("--batch", type=int, default=1000, help="search: records per import batch (one transaction)")
    parser.add_argument("--queries", type=int, default=2000, help="search: queries per latency run")
    parser.add_argument("--clients", type=int, default=16, help="search: concurrent clients")
    parser.add_argument("--freshness", type=int, default=40, help="search: item changes timed for freshness")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--index-workers", type=int, default=None,
                        help="search: analysis processes for the rebuild (default: one per core)")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="search: build the catalogue (database and index) in DIR and keep it; a later run "
                             "with the same DIR skips the build and times only the searches; http: the catalogue "
                             "to serve (required)")
    parser.add_argument("--no-raw", action="store_true", help="search: leave the raw MARC out of the records")
    args = parser.parse_args()

    def run(url: str, workdir: Path, postmaster: int | None = None) -> None:
        if args.what == "audit":
            bench_audit(url, int(args.scale or 2000))
        elif args.what == "http":
            from bench_http import bench_http

            bench_http(url, workdir, seed=args.seed, queries=args.queries, clients=args.clients)
        elif args.what == "marc":
            from bench_marc import bench_marc

            bench_marc(url, args.records or 200_000, workdir, postmaster)
        elif args.what == "circulation":
            from bench_circulation import bench_circulation

            bench_circulation(url, 1.0 if args.scale is None else args.scale, workdir, seed=args.seed,
                              postmaster=postmaster)
        elif args.what == "holds":
            from bench_holds import bench_holds

            bench_holds(url, 1.0 if args.scale is None else args.scale, workdir, seed=args.seed, postmaster=postmaster)
        else:
            bench_search(url, args.records or 1_000_000, seed=args.seed, batch=args.batch, raw=not args.no_raw,
                         queries=args.queries, clients=args.clients, fresh=args.freshness, workdir=workdir,
                         postmaster=postmaster, index_workers=args.index_workers)

    url = os.environ.get("DATABASE_URL")
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = args.keep.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shoka-bench-")))
        if url:
            run(url, workdir)
            return
        pg = EmbeddedPostgres(workdir)
        pg.ensure_running()
        try:
            migrate.upgrade(pg.url())
            run(pg.url(), workdir, int((pg.pgdata / "postmaster.pid").read_text().split()[0]))
        finally:
            db.close_all()
            pg.stop()

if __name__ == "__main__":
    main()
