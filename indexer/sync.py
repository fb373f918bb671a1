"""Keeping the search index in step with PostgreSQL.

`apply_outbox` applies pending outbox rows (written in the same transaction as each change) to the
engine; `rebuild` builds a whole new generation while searches use the old one, replays what
changed meanwhile, then switches. Documents are built from the database in batches, one query per
batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from indexer.document import build

log = logging.getLogger("shoka.indexer")
BATCH = 2000


def load_documents(conn: Connection[DictRow], record_ids: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """Documents for the records that exist, and the ids that no longer do."""
    rows = conn.execute(
        """SELECT r.id, r.data, r.material_type, r.created_at,
                  coalesce(array_agg(b.code) FILTER (WHERE i.id IS NOT NULL), '{}') AS branches,
                  coalesce(array_agg(i.status) FILTER (WHERE i.id IS NOT NULL), '{}') AS statuses
           FROM bib_record r
           LEFT JOIN item i ON i.record_id = r.id AND i.status <> 'withdrawn'
           LEFT JOIN branch b ON b.id = i.branch_id
           WHERE r.id = ANY(%s)
           GROUP BY r.id""", (record_ids,)).fetchall()
    docs = [build(r["id"], r["data"], list(zip(r["branches"], r["statuses"], strict=True)), r["created_at"],
                  r["material_type"]) for r in rows]
    found = {r["id"] for r in rows}
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


def rebuild(conn: Connection[DictRow], engine: Any, progress: Callable[[int], None] | None = None) -> int:
    """Index every record into a new generation, then switch searches to it."""
    started = conn.execute("SELECT now() AS t").fetchone()["t"]  # type: ignore[index]
    generation = engine.new_generation()
    done = 0
    with conn.transaction(), conn.cursor(name="reindex") as cur:
        cur.itersize = BATCH
        cur.execute("SELECT id FROM bib_record ORDER BY id")
        while batch := [r["id"] for r in cur.fetchmany(BATCH)]:
            docs, _ = load_documents(conn, batch)
            engine.write(docs, generation=generation)
            done += len(docs)
            if progress:
                progress(done)
    _replay_since(conn, engine, started, generation)
    engine.switch_to(generation)
    _replay_since(conn, engine, started, generation)  # what changed between the replay and the switch
    return done


def _replay_since(conn: Connection[DictRow], engine: Any, since: datetime, generation: str) -> None:
    ids = [r["record_id"] for r in conn.execute(
        "SELECT DISTINCT record_id FROM search_outbox WHERE created_at >= %s", (since,)).fetchall()]
    for start in range(0, len(ids), BATCH):
        docs, deleted = load_documents(conn, ids[start:start + BATCH])
        engine.write(docs, deleted, generation=generation)
