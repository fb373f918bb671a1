"""`script/bench marc`: the whole `shoka import marc FILE --profile ndl-marc21 --then-reindex` path on real MARC.

`script/bench search` builds its catalogue from generated BibRecords, so it leaves out reading the MARC
(pymarc's decoding and the profile's mapping). This one times the path a library runs for a bulk load: the
233 JAPAN/MARC (MARC21) records of the shared data, repeated until there are `--records` of them, each copy
with its own control number (001) and ISBN (020 $a) so that every one is a new record, written to one file;
then `read_marc` → `run_import` (without outbox rows, as `--then-reindex` does) → `rebuild`.

Rows: reading alone (read_marc over the file: decoding, checks and mapping, one thread), the import (reading
included, pipelined with the writer thread), the rebuild, and import + index together. The file's generation is
not timed. The catalogue repeats 233 titles, so it says nothing about search; `script/bench search` does.
"""

from __future__ import annotations

import io
import itertools
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench import SHARED_DATA, cpu_seconds, isbn13, pg_cpu_seconds, progress, rss_mb

CONTROL = "JPB{:09d}"  # 12 characters, like the placeholder it replaces
ISBN_PLACEHOLDER = "9999999999999"
PROFILE = "ndl-marc21"


def templates() -> list[tuple[bytes, int, int | None]]:
    """The shared records as MARC bytes with a fixed-width 001 and ISBN, and the offsets of both."""
    from pymarc import Field, MARCReader, Subfield

    out: list[tuple[bytes, int, int | None]] = []
    with open(SHARED_DATA / "ndl_japan_marc21_sample.mrc", "rb") as f:
        for record in MARCReader(f, to_unicode=True, force_utf8=True):
            if record is None:
                continue
            for field in record.get_fields("001"):
                record.remove_field(field)
            record.add_ordered_field(Field(tag="001", data=CONTROL.format(0)))
            isbns = record.get_fields("020")
            price = next((s.value for f in isbns for s in f.subfields if s.code == "c"), None)
            for field in isbns:
                record.remove_field(field)
            if isbns:  # records without an ISBN stay without one (old books, e-texts)
                subfields = [Subfield("a", ISBN_PLACEHOLDER)] + ([Subfield("c", price)] if price else [])
                record.add_ordered_field(Field(tag="020", indicators=[" ", " "], subfields=subfields))
            data = record.as_marc()
            control = data.index(CONTROL.format(0).encode())
            isbn = data.index(ISBN_PLACEHOLDER.encode()) if isbns else None
            out.append((data, control, isbn))
    return out


def write_file(path: Path, records: int, shapes: list[tuple[bytes, int, int | None]]) -> int:
    """`records` MARC records cycling through the templates; returns the file's size in bytes."""
    with open(path, "wb") as f:
        for i, (data, control, isbn) in zip(range(records), itertools.cycle(shapes), strict=False):
            record = bytearray(data)
            record[control:control + 12] = CONTROL.format(i + 1).encode()
            if isbn is not None:
                record[isbn:isbn + 13] = isbn13(i).encode()
            f.write(record)
    return path.stat().st_size


def bench_marc(url: str, records: int, workdir: Path, postmaster: int | None) -> None:
    from api import db
    from api.audit import Actor
    from api.catalog.importer import run_import
    from api.catalog.marc_import import read_marc
    from indexer.sync import default_workers, rebuild
    from indexer.tantivy_engine import TantivyEngine

    path = workdir / "bench.mrc"
    t0 = time.perf_counter()
    shapes = templates()
    size = write_file(path, records, shapes)
    print(f"  {records:,} MARC records ({size / 2**20:,.0f} MB) written in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    phases: list[tuple[str, int, float, float, float]] = []  # name, n, wall s, CPU s (this + children), PG CPU s

    # Reading alone: the share of the import that is MARC decoding and mapping.
    sample = min(records, 50_000)
    with open(path, "rb") as f:  # the copies have the templates' lengths
        head = io.BytesIO(f.read(sum(len(d) for d, _, _ in itertools.islice(itertools.cycle(shapes), sample))))
    t0, cpu = time.perf_counter(), time.process_time()
    read = sum(1 for _ in read_marc(head, PROFILE))
    phases.append(("reading alone: read_marc (decode, check, map)", read, time.perf_counter() - t0,
                   time.process_time() - cpu, 0.0))

    load_before = os.getloadavg()[0]
    with db.connect(url) as conn:
        t0, cpu, pg0 = time.perf_counter(), cpu_seconds(), pg_cpu_seconds(postmaster)
        started = t0

        def on_batch(report: Any) -> None:
            if report.read % 20_000 < 1_000:
                progress("import", report.read, records, started)

        report = run_import(conn, Actor.cli(), read_marc(path, PROFILE, staged=True), origin=path.name,
                            progress=on_batch, outbox=False)
        print(file=sys.stderr)
        assert report.added == records and not report.rejected, (report.added, report.updated, report.rejected[:3])
        import_s, import_cpu, import_pg = (time.perf_counter() - t0, cpu_seconds() - cpu,
                                           pg_cpu_seconds(postmaster) - pg0)
        phases.append(("import: run_import(read_marc(FILE)), pipelined", records, import_s, import_cpu, import_pg))
        rss_import = rss_mb()
        conn.execute("VACUUM ANALYZE bib_record")

        engine = TantivyEngine(workdir / "index")
        t0, cpu, pg0 = time.perf_counter(), cpu_seconds(), pg_cpu_seconds(postmaster)
        started = t0
        indexed = rebuild(conn, engine, progress=lambda n: n % 20_000 == 0 and progress("index", n, records, started))
        print(file=sys.stderr)
        index_s, index_cpu, index_pg = (time.perf_counter() - t0, cpu_seconds() - cpu,
                                        pg_cpu_seconds(postmaster) - pg0)
        phases.append((f"index: rebuild, {default_workers()} analysis processes", indexed, index_s, index_cpu,
                       index_pg))
        phases.append(("import + index (records/s over both)", records, import_s + index_s,
                       import_cpu + index_cpu, import_pg + index_pg))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nMachine: {os.cpu_count()} cores; PostgreSQL embedded; profile {PROFILE}; {records:,} records from the "
          f"{len(shapes)} JAPAN/MARC records of the shared data ({size / records:,.0f} bytes a record); load "
          f"average {load_before:.1f} before the import, {os.getloadavg()[0]:.1f} at the end.\n")
    print("| phase                                              |         n |  seconds | CPU s (Python) | PostgreSQL "
          "CPU s | CPU ms/record |  records/s |")
    print("|----------------------------------------------------|-----------|----------|----------------|-----------"
          "-------|---------------|------------|")
    for name, n, secs, cpu_s, pg_s in phases:
        print(f"| {name:<50} | {n:>9,} | {secs:>8.1f} | {cpu_s:>14.1f} | {pg_s:>16.1f} | "
              f"{(cpu_s + pg_s) * 1000 / n if n else 0:>13.3f} | {n / secs if secs else 0:>10,.0f} |")
    print(f"\nPeak RSS after the import {rss_import:,.0f} MB (this process); the analysis processes used "
          f"{children.ru_utime + children.ru_stime:,.0f} s of CPU in all.")
