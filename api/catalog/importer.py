"""Import files of records: read (MARC, MARCXML, Aozora CSV), fill missing readings, save in batches.

Each batch is one transaction (api/catalog/service.py), so an interrupted import leaves whole
batches and nothing half-written; rerunning it updates instead of duplicating. Rejected records are
reported with their position and reason, and the import goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor
from api.catalog.bib import BibRecord, Imported, ImportItem, Rejected
from api.catalog.service import save_records

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


def _position(item: Rejected, unit: str) -> str:
    where = f"{unit} {item.position}"
    return f"{where} (byte {item.offset})" if item.offset is not None else where


def run_import(conn: Connection[DictRow], actor: Actor, items: Iterable[ImportItem], origin: str,
               progress: Callable[[ImportReport], None] | None = None, unit: str = "record",
               outbox: bool = True) -> ImportReport:
    """Save every BibRecord in `items` (ImportItems from the readers) and report the rest.

    `outbox=False` writes no search-outbox rows: only for a bulk load that a full rebuild follows."""
    report = ImportReport()
    started = time.perf_counter()
    batch: list[BibRecord] = []

    def flush() -> None:
        result = save_records(conn, actor, batch, origin=origin, outbox=outbox)
        report.added += result.added
        report.updated += result.updated
        batch.clear()
        if progress:
            report.seconds = time.perf_counter() - started
            progress(report)

    for item in items:
        if isinstance(item, Imported):
            report.read += 1
            report.readings_generated += fill_readings(item.record)
            batch.append(item.record)
            if len(batch) >= BATCH_SIZE:
                flush()
        else:
            report.rejected.append((_position(item, unit), item.reason))
    if batch:
        flush()
    report.seconds = time.perf_counter() - started
    return report
