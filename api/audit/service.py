"""Writing, searching, verifying and expiring the audit log."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.audit import chain

# One advisory lock serialises appends so each row sees its predecessor. Callers record the
# audit row as the last statement of their transaction, so the lock is held only briefly.
_CHAIN_LOCK = 0x5A0CA_A0D17
RETENTION_YEARS = 6


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: a staff account, the CLI or a scheduled job."""

    name: str
    client_addr: str
    account_id: int | None = None

    @classmethod
    def cli(cls) -> Actor:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(name=f"cli:{user}", client_addr=f"cli@{socket.gethostname()}")

    @classmethod
    def system(cls, job: str) -> Actor:
        return cls(name=f"system:{job}", client_addr=f"worker@{socket.gethostname()}")


def record(conn: Connection[DictRow], actor: Actor, action: str, subject_type: str = "",
           subject_id: str | int = "", details: dict[str, Any] | None = None) -> int:
    """Append one row in the caller's transaction (so the row exists exactly when the action does)."""
    if conn.info.transaction_status == 0:  # IDLE: not inside a transaction block
        raise RuntimeError("audit.record must run inside the transaction of the action it records")
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CHAIN_LOCK,))
    last = conn.execute("SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    prev = last["row_hash"] if last else chain.GENESIS
    seq = conn.execute("SELECT nextval('audit_log_id_seq') AS id").fetchone()
    assert seq is not None
    row: dict[str, Any] = {
        "id": seq["id"],
        "occurred_at": datetime.now(UTC),
        "actor_id": actor.account_id,
        "actor": actor.name,
        "client_addr": actor.client_addr,
        "action": action,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "details": details or {},
    }
    row["prev_hash"] = prev
    row["row_hash"] = chain.row_hash(prev, row)
    conn.execute(
        """INSERT INTO audit_log (id, occurred_at, actor_id, actor, client_addr, action,
                                  subject_type, subject_id, details, prev_hash, row_hash)
           VALUES (%(id)s, %(occurred_at)s, %(actor_id)s, %(actor)s, %(client_addr)s, %(action)s,
                   %(subject_type)s, %(subject_id)s, %(details_json)s, %(prev_hash)s, %(row_hash)s)""",
        {**row, "details_json": Jsonb(row["details"])},
    )
    return int(row["id"])


def verify(conn: Connection[DictRow]) -> tuple[int, chain.Break | None]:
    """Check the whole chain from the latest retention anchor (or the start)."""
    with conn.transaction():
        # One snapshot for anchor and rows, so a purge running meanwhile cannot look like tampering.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        anchor = conn.execute(
            "SELECT first_kept_id, prev_hash FROM audit_anchor ORDER BY id DESC LIMIT 1").fetchone()
        start_hash, start_id = (anchor["prev_hash"], anchor["first_kept_id"]) if anchor else (chain.GENESIS, 0)
        with conn.cursor(name="audit_verify") as cur:  # server-side cursor: constant memory
            cur.itersize = 5000
            cur.execute("SELECT * FROM audit_log WHERE id >= %s ORDER BY id", (start_id,))
            return chain.verify(cur, start_hash)


@dataclass(frozen=True)
class AuditQuery:
    date_from: date | None = None
    date_to: date | None = None
    actor: str = ""
    action: str = ""
    subject: str = ""
    limit: int = 100
    offset: int = 0


def search(conn: Connection[DictRow], q: AuditQuery) -> tuple[list[DictRow], int]:
    """Rows matching every given filter, newest first, and the total count."""
    where = ["true"]
    params: dict[str, Any] = {}
    if q.date_from:
        where.append("occurred_at >= %(date_from)s::date::timestamptz")
        params["date_from"] = q.date_from
    if q.date_to:
        where.append("occurred_at < (%(date_to)s::date + 1)::timestamptz")
        params["date_to"] = q.date_to
    if q.actor:
        where.append("lower(actor) = lower(%(actor)s)")
        params["actor"] = q.actor
    if q.action:
        # 'auth' matches auth.login, auth.logout, ...; a full name matches itself.
        where.append("(action = %(action)s OR action LIKE %(action_prefix)s)")
        params["action"] = q.action
        params["action_prefix"] = q.action.replace("%", r"\%").replace("_", r"\_") + ".%"
    if q.subject:
        if ":" in q.subject:
            kind, _, ident = q.subject.partition(":")
            where.append("subject_type = %(subject_type)s AND subject_id = %(subject_id)s")
            params.update(subject_type=kind, subject_id=ident)
        else:
            where.append("subject_id = %(subject_id)s")
            params["subject_id"] = q.subject
    clause = " AND ".join(where)
    total_row = conn.execute(f"SELECT count(*) AS n FROM audit_log WHERE {clause}", params).fetchone()
    rows = conn.execute(
        f"SELECT * FROM audit_log WHERE {clause} ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s",
        {**params, "limit": q.limit, "offset": q.offset},
    ).fetchall()
    return rows, int(total_row["n"]) if total_row else 0


def purge_expired(conn: Connection[DictRow], now: datetime | None = None) -> int:
    """Remove rows older than six years (the retention period), leaving an anchor for `verify`."""
    now = now or datetime.now(UTC)
    cutoff = now.replace(year=now.year - RETENTION_YEARS) if not (now.month == 2 and now.day == 29) \
        else (now - timedelta(days=1)).replace(year=now.year - RETENTION_YEARS)
    with conn.transaction():
        record(conn, Actor.system("audit-retention"), "audit.retention", details={"cutoff": cutoff.isoformat()})
        last = conn.execute(
            "SELECT id, row_hash FROM audit_log WHERE occurred_at < %s ORDER BY id DESC LIMIT 1", (cutoff,)
        ).fetchone()
        if last is None:
            return 0
        conn.execute("SET LOCAL shoka.audit_retention = 'on'")
        deleted = conn.execute("DELETE FROM audit_log WHERE id <= %s", (last["id"],)).rowcount
        first = conn.execute("SELECT min(id) AS id FROM audit_log").fetchone()
        assert first is not None
        conn.execute(
            "INSERT INTO audit_anchor (first_kept_id, prev_hash, purged_rows) VALUES (%s, %s, %s)",
            (first["id"], last["row_hash"], deleted),
        )
        return deleted
