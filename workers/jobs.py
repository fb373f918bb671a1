"""Jobs run by the RQ worker. Each opens its own connection and transaction."""

from __future__ import annotations

import logging
from typing import Any

from api import db
from api.audit import service as audit
from api.config import load_settings
from api.runtime.services import database_url

log = logging.getLogger("shoka.jobs")


def purge_audit_log() -> int:
    """Retention: remove audit rows older than six years (daily)."""
    with db.connect(database_url(load_settings())) as conn:
        removed = audit.purge_expired(conn)
    log.info("audit retention removed %d rows", removed)
    return removed


def apply_search_outbox() -> int:
    """Apply committed record and item changes to the search engine (runs every second)."""
    from indexer.engine import engine_for
    from indexer.sync import apply_outbox

    settings = load_settings()
    engine = engine_for(settings)
    applied = 0
    with db.connect(database_url(settings)) as conn:
        if engine.needs_rebuild():
            _rebuild_once(conn, engine)
        while n := apply_outbox(conn, engine):
            applied += n
    return applied


_REBUILD_LOCK = 0x5A0CA_1DE7


def _rebuild_once(conn: Any, engine: Any) -> None:
    """A new analyzer or schema version (or an empty index after a restore) means a full rebuild.
    One job does it; the others keep applying changes to the current generation meanwhile."""
    from indexer.sync import rebuild

    if not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_REBUILD_LOCK,)).fetchone()["ok"]:
        return
    try:
        if engine.needs_rebuild():
            log.info("search index built by another analyzer version: rebuilding")
            log.info("search index rebuilt: %d records", rebuild(conn, engine))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_REBUILD_LOCK,))


def prune_search_outbox() -> int:
    from indexer.sync import prune_outbox

    with db.connect(database_url(load_settings())) as conn:
        return prune_outbox(conn)


def verify_audit_log() -> str:
    """Nightly chain check, so tampering is noticed even if nobody runs `shoka audit verify`."""
    with db.connect(database_url(load_settings())) as conn:
        checked, broken = audit.verify(conn)
    if broken:
        log.error("audit chain broken at row %s: %s", broken.row_id, broken.reason)
        raise RuntimeError(f"audit chain broken at row {broken.row_id}: {broken.reason}")
    return f"{checked} rows verified"


def anonymise_returned_loans() -> int:
    """Nightly: returned loans lose their patron unless the patron keeps a reading history."""
    from api.circulation.anonymise import anonymise_returned_loans as anonymise

    with db.connect(database_url(load_settings())) as conn:
        done = anonymise(conn)
    log.info("anonymised %d returned loans", done)
    return done


def purge_old_receipts() -> int:
    """Receipts are kept for reprinting only."""
    from api.circulation.receipts import purge_old_receipts as purge

    with db.connect(database_url(load_settings())) as conn:
        return purge(conn)
