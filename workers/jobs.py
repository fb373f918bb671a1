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
    for name in engine.prune_generations():
        log.info("search index generation %s deleted (replaced by a rebuild)", name)
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


def send_notices() -> Any:
    """Every 10 seconds: send due email notices (通知メール). Returns at once, without touching the
    database, when SMTP_HOST is not set: the notices wait as pending."""
    import time

    from api.notices.mailer import SmtpMailer
    from api.notices.service import SendReport, send_due

    settings = load_settings()
    if not settings.mail_enabled or settings.mail_from is None:
        return SendReport()
    mailer = SmtpMailer(settings)
    batch, total = 50, SendReport()
    until = time.monotonic() + 60  # a backlog is worked through in this job and the next ones
    with db.connect(database_url(settings)) as conn:
        while True:
            report = send_due(conn, mailer, library_name=settings.library_name, mail_from=settings.mail_from,
                              batch=batch)
            total = SendReport(total.sent + report.sent, total.failed + report.failed,
                               total.retried + report.retried, total.skipped + report.skipped)
            if report.sent + report.failed + report.retried + report.skipped < batch or time.monotonic() > until:
                break
    if total != SendReport():
        log.info("notices: %d sent, %d failed, %d to retry, %d skipped", total.sent, total.failed, total.retried,
                 total.skipped)
    return total


def queue_due_reminders() -> dict[str, int]:
    """Daily: due-date reminders, overdue notices and pickup reminders. Not queued while mail is off, since
    they would be out of date by the time mail is configured."""
    from api.notices.service import queue_reminders

    settings = load_settings()
    if not settings.mail_enabled:
        log.info("SMTP_HOST is not set: no reminders queued")
        return {}
    with db.connect(database_url(settings)) as conn:
        queued = queue_reminders(conn)
    log.info("reminders queued: %s", queued)
    return queued


def expire_holds() -> int:
    """Nightly: holds left on the shelf past their pickup deadline expire; each copy goes to the next patron."""
    from api.audit import Actor
    from api.holds.service import expire_uncollected

    with db.connect(database_url(load_settings())) as conn:
        done = expire_uncollected(conn, Actor("scheduler", "localhost"))
    log.info("expired %d uncollected holds", done)
    return done
