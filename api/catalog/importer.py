"""Import files of records: read (MARC, MARCXML, Aozora CSV), fill missing readings, save in batches.

Each batch is one transaction (api/catalog/service.py), so an interrupted import leaves whole
batches and nothing half-written; rerunning it updates instead of duplicating. Rejected records are
reported with their position and reason, and the import goes on.

Batches are pipelined: one writer thread owns the connection and writes batch k while the calling
thread reads and prepares batch k+1 (psycopg releases the GIL while PostgreSQL works), so an import
takes about as long as the slower of the two rather than their sum. A reader may hand over records
already staged (`read_marc(..., staged=True)`: readings filled and columns encoded in its reading
processes), which leaves this process only the batching and the writing.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor
from api.catalog.bib import BibRecord, Imported, ImportItem, Rejected, Staged
from api.catalog.service import PreparedBatch, encode_record, write_batch

BATCH_SIZE = 1000


@dataclass
class ImportReport:
    read: int = 0
    added: int = 0
    updated: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (position, reason)
    readings_generated: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


def fill_readings(record: BibRecord) -> int:
    """Give every title, author, publisher, series and subject a reading; mark generated ones."""
    from indexer.analysis import reading_of

    generated = 0
    if record.title and not record.title_reading:
        record.title_reading = reading_of(record.title)
        record.readings_generated.add("title")
        generated += 1
    if record.publisher and not record.publisher_reading:
        record.publisher_reading = reading_of(record.publisher)
        record.readings_generated.add("publisher")
        generated += 1
    for kind, entries, attr in (("author", record.authors, "name"), ("series", record.series, "title"),
                                ("subject", record.subjects, "term")):
        for entry in entries:
            if getattr(entry, attr) and not entry.reading:
                entry.reading = reading_of(getattr(entry, attr))
                record.readings_generated.add(kind)
                generated += 1
    return generated


def stage(item: Imported) -> Staged:
    """`item`'s record with its readings filled and its columns encoded for saving (see `Staged`)."""
    record = item.record
    generated = fill_readings(record)
    return Staged(record.source, record.control_number, list(record.isbns), encode_record(record), generated,
                  item.position, item.offset)


def _prepared(batch: list[Staged]) -> PreparedBatch:
    return PreparedBatch([s.source for s in batch], [s.control_number for s in batch], [s.isbns for s in batch],
                         [s.row for s in batch])


def _position(item: Rejected, unit: str) -> str:
    where = f"{unit} {item.position}"
    return f"{where} (byte {item.offset})" if item.offset is not None else where


@dataclass
class _Job:
    """A prepared batch and what was read with it: records read, readings generated, and the records
    rejected since the previous batch."""

    batch: PreparedBatch
    read: int
    readings_generated: int
    rejected: list[tuple[str, str]]


class _Writer(threading.Thread):
    """Writes jobs in order, each in its own transaction, and owns `conn` and `report` while it runs."""

    def __init__(self, conn: Connection[DictRow], actor: Actor, origin: str, outbox: bool, report: ImportReport,
                 progress: Callable[[ImportReport], None] | None, started: float) -> None:
        # A daemon: should a second interrupt abandon the wait for it, it must not keep the process alive.
        super().__init__(name="shoka-import-writer", daemon=True)
        self.conn, self.actor, self.origin, self.outbox = conn, actor, origin, outbox
        self.report, self.progress, self.started = report, progress, started
        # One job waiting while one is written and the next is prepared: memory stays at three batches.
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
        self.error: BaseException | None = None

    def run(self) -> None:
        # Take every job up to the end mark, even after a failure, so the reading thread never blocks on put.
        while (job := self.jobs.get()) is not None:
            if self.error is not None:
                continue
            try:
                result = write_batch(self.conn, self.actor, job.batch, origin=self.origin, outbox=self.outbox)
                report = self.report
                report.read += job.read
                report.readings_generated += job.readings_generated
                report.rejected.extend(job.rejected)
                report.added += result.added
                report.updated += result.updated
                if self.progress:
                    report.seconds = time.perf_counter() - self.started
                    self.progress(report)
            except BaseException as exc:  # handed to the reading thread, which raises it
                self.error = exc

    def finish(self) -> None:
        """Write the jobs handed over (unless one failed), then stop."""
        self.jobs.put(None)
        self.join()


def run_import(conn: Connection[DictRow], actor: Actor, items: Iterable[ImportItem | Staged], origin: str,
               progress: Callable[[ImportReport], None] | None = None, unit: str = "record",
               outbox: bool = True) -> ImportReport:
    """Save every record in `items` (ImportItems from the readers, or records they staged) and report the rest.

    While it runs, a writer thread uses `conn` (nothing else may) and calls `progress` after each
    batch's commit, with the counts up to that batch. An error in a batch's transaction stops the
    reading and is raised here; the batches before it stay committed. An error while reading is raised
    once the complete batches read before it are saved, as if they had been saved one after the other.

    `outbox=False` writes no search-outbox rows: only for a bulk load that a full rebuild follows."""
    report = ImportReport()
    started = time.perf_counter()
    writer = _Writer(conn, actor, origin, outbox, report, progress, started)
    writer.start()
    # After each of the dozen replies in a batch the writer needs the GIL back, which this thread, busy in
    # Python, gives up only every switch interval (5 ms by default): 1 ms keeps PostgreSQL's side fed.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.001))
    batch: list[Staged] = []
    read = generated = 0
    rejected: list[tuple[str, str]] = []
    try:
        for item in items:
            if writer.error is not None:
                break
            if isinstance(item, Rejected):
                rejected.append((_position(item, unit), item.reason))
                continue
            staged = stage(item) if isinstance(item, Imported) else item
            read += 1
            generated += staged.readings_generated
            batch.append(staged)
            if len(batch) >= BATCH_SIZE:
                writer.jobs.put(_Job(_prepared(batch), read, generated, rejected))
                batch, read, generated, rejected = [], 0, 0, []
        if batch and writer.error is None:
            writer.jobs.put(_Job(_prepared(batch), read, generated, rejected))
            rejected = []
    finally:
        try:
            writer.finish()
        finally:
            sys.setswitchinterval(interval)
    if writer.error is not None:
        raise writer.error
    report.rejected.extend(rejected)  # those after the last batch
    report.seconds = time.perf_counter() - started
    return report
