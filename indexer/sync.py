"""Keeping the search index in step with PostgreSQL.

`apply_outbox` applies pending outbox rows (written in the same transaction as each change) to the
engine; `rebuild` builds a whole new generation while searches use the old one, replays what
changed meanwhile, then switches. Documents are built from the database in batches, one query per
batch.

A rebuild of a large catalogue analyses the records (Sudachi: the costly part) in a pool of worker
processes, each loading the dictionary once, while this process reads batches from PostgreSQL and
feeds the engine's single writer; at most a few batches are in flight, so memory stays bounded.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from typing import Any

import orjson
from psycopg import Connection
from psycopg.rows import DictRow, tuple_row

from api.config import process_count
from indexer.document import build

log = logging.getLogger("shoka.indexer")
BATCH = 2000
IN_FLIGHT = 2  # batches queued per analysis worker: enough to keep it busy, few enough to bound memory

_DOCUMENT_ROWS = """
    SELECT r.id, r.data::text, r.material_type, r.created_at,
           coalesce(h.branches, '{}'), coalesce(h.statuses, '{}')
    FROM bib_record r
    LEFT JOIN LATERAL (SELECT array_agg(b.code) AS branches, array_agg(i.status) AS statuses
                       FROM item i JOIN branch b ON b.id = i.branch_id
                       WHERE i.record_id = r.id AND i.status <> 'withdrawn') h ON true
"""

# (id, data as JSON text, material type, created_at, branch codes, item statuses)
SourceRow = tuple[int, str, str, datetime, list[str], list[str]]


def documents_from_rows(rows: Sequence[SourceRow]) -> list[dict[str, Any]]:
    """Search documents for rows of _DOCUMENT_ROWS (pure; runs in the analysis workers)."""
    return [build(rid, orjson.loads(data), list(zip(branches, statuses, strict=True)), created, material)
            for rid, data, material, created, branches, statuses in rows]


def _analyse(rows: Sequence[SourceRow], encode: Callable[[list[dict[str, Any]]], Any] | None) -> Any:
    docs = documents_from_rows(rows)
    return encode(docs) if encode else docs


def _warm_worker() -> None:
    from api.runtime.process import settle_bulk_worker
    from indexer import analysis

    analysis.analyze("図書館")  # load the Sudachi dictionary once per worker, before the first batch
    settle_bulk_worker()


def load_documents(conn: Connection[DictRow], record_ids: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """Documents for the records that exist, and the ids that no longer do."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows: list[Any] = cur.execute(_DOCUMENT_ROWS + " WHERE r.id = ANY(%s)", (record_ids,)).fetchall()
    docs = documents_from_rows(rows)
    found = {d["id"] for d in docs}
    return docs, [i for i in record_ids if i not in found]


def apply_outbox(conn: Connection[DictRow], engine: Any, limit: int = BATCH) -> int:
    """Apply up to `limit` pending changes; returns how many outbox rows were applied."""
    with conn.transaction():
        rows = conn.execute("SELECT id, record_id FROM search_outbox WHERE applied_at IS NULL ORDER BY id "
                            "LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
        if not rows:
            return 0
        record_ids = sorted({r["record_id"] for r in rows})
        docs, deleted = load_documents(conn, record_ids)
        engine.write(docs, deleted)  # if this fails, the rows stay pending and the next run retries
        conn.execute("UPDATE search_outbox SET applied_at = now() WHERE id = ANY(%s)", ([r["id"] for r in rows],))
    return len(rows)


def prune_outbox(conn: Connection[DictRow]) -> int:
    with conn.transaction():
        return conn.execute("DELETE FROM search_outbox WHERE applied_at < now() - interval '1 day'").rowcount


def default_workers() -> int:
    """Analysis processes for a rebuild: SHOKA_INDEX_WORKERS, else one per core."""
    return process_count("SHOKA_INDEX_WORKERS")


def rebuild(conn: Connection[DictRow], engine: Any, progress: Callable[[int], None] | None = None, *,
            workers: int | None = None, batch: int = BATCH) -> int:
    """Index every record into a new generation, then switch searches to it.

    `workers` analysis processes (default: `default_workers()`); 1, or a catalogue of one batch, analyses
    in this process. Engines with a `bulk_writer` keep one writer open for the whole generation and commit
    once; others get `write` per batch.
    """
    workers = default_workers() if workers is None else max(1, workers)
    started = conn.execute("SELECT now() AS t").fetchone()["t"]  # type: ignore[index]
    total = conn.execute("SELECT count(*) AS n FROM bib_record").fetchone()["n"]  # type: ignore[index]
    generation = engine.new_generation()
    bulk = engine.bulk_writer(generation) if hasattr(engine, "bulk_writer") else None
    encode = getattr(engine, "bulk_encode", None) if bulk is not None else None
    done = 0

    def sink(out: Any, n: int) -> None:
        nonlocal done
        if bulk is not None:
            bulk.add(out)
        else:
            engine.write(out, generation=generation)
        done += n
        if progress:
            progress(done)

    def batches() -> Any:
        last = 0
        with conn.cursor(row_factory=tuple_row) as cur:
            while rows := cur.execute(_DOCUMENT_ROWS + " WHERE r.id > %s ORDER BY r.id LIMIT %s",
                                      (last, batch)).fetchall():
                last = rows[-1][0]
                yield rows

    switched = False
    try:
        if workers == 1 or total <= batch:
            for rows in batches():
                sink(_analyse(rows, encode), len(rows))
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process holding threads and sockets
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_warm_worker) as pool:
                queued: deque[tuple[Future[Any], int]] = deque()
                for rows in batches():
                    queued.append((pool.submit(_analyse, rows, encode), len(rows)))
                    while len(queued) >= workers * IN_FLIGHT:
                        future, n = queued.popleft()
                        sink(future.result(), n)
                while queued:
                    future, n = queued.popleft()
                    sink(future.result(), n)
        if bulk is not None:
            bulk.commit()
            bulk.close()
            bulk = None
        _replay_since(conn, engine, started, generation)
        engine.switch_to(generation)
        switched = True
    finally:
        if bulk is not None:
            bulk.close()
        if not switched:
            engine.discard(generation)  # an interrupted rebuild leaves no half-built generation behind
    _replay_since(conn, engine, started, generation)  # what changed between the replay and the switch
    engine.prune_generations()  # earlier generations, retired long enough ago
    return done


def _replay_since(conn: Connection[DictRow], engine: Any, since: datetime, generation: str) -> None:
    ids = [r["record_id"] for r in conn.execute(
        "SELECT DISTINCT record_id FROM search_outbox WHERE created_at >= %s", (since,)).fetchall()]
    for start in range(0, len(ids), BATCH):
        docs, deleted = load_documents(conn, ids[start:start + BATCH])
        engine.write(docs, deleted, generation=generation)
