"""The audit log: written with its action, append-only, hash-chained, verifiable, six-year retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from api.audit import Actor, chain, record
from api.audit import service as audit
from api.cli import main as shoka

ACTOR = Actor("tester", "127.0.0.1", None)


def _rows(n: int) -> list[dict]:
    rows, prev = [], chain.GENESIS
    for i in range(1, n + 1):
        row = {"id": i, "occurred_at": datetime(2026, 4, 1, 9, 0, i, tzinfo=UTC), "actor_id": 1, "actor": "a",
               "client_addr": "10.0.0.1", "action": "staff.update", "subject_type": "staff",
               "subject_id": str(i), "details": {"n": i, "名前": "山田"}}
        row["prev_hash"] = prev
        row["row_hash"] = prev = chain.row_hash(prev, row)
        rows.append(row)
    return rows


def test_chain_of_untouched_rows_verifies() -> None:
    assert chain.verify(_rows(5)) == (5, None)


@pytest.mark.parametrize("field,value", [("actor", "someone-else"), ("details", {"n": 99}),
                                         ("occurred_at", datetime(2020, 1, 1, tzinfo=UTC)), ("action", "auth.login")])
def test_changing_any_field_breaks_that_row(field: str, value: object) -> None:
    rows = _rows(5)
    rows[2][field] = value
    checked, broken = chain.verify(rows)
    assert checked == 2 and broken is not None and broken.row_id == 3
    assert "changed" in broken.reason


def test_removing_a_row_breaks_the_next_link() -> None:
    rows = _rows(5)
    del rows[1]
    checked, broken = chain.verify(rows)
    assert checked == 1 and broken is not None and broken.row_id == 3
    assert "removed" in broken.reason


def test_swapping_rows_is_detected() -> None:
    rows = _rows(4)
    rows[1], rows[2] = rows[2], rows[1]
    _, broken = chain.verify(rows)
    assert broken is not None and broken.row_id == 3


def test_recomputing_one_row_hash_still_breaks_the_following_link() -> None:
    rows = _rows(4)
    rows[1]["actor"] = "forger"
    rows[1]["row_hash"] = chain.row_hash(rows[1]["prev_hash"], rows[1])
    _, broken = chain.verify(rows)
    assert broken is not None and broken.row_id == 3


def test_record_outside_a_transaction_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(RuntimeError):
        record(conn, ACTOR, "x.y")


def test_audit_row_rolls_back_with_its_action(conn: psycopg.Connection) -> None:
    with pytest.raises(ZeroDivisionError), conn.transaction():
        record(conn, ACTOR, "branch.create", "branch", "lost")
        raise ZeroDivisionError
    with conn.transaction():
        record(conn, ACTOR, "branch.create", "branch", "kept")
    subjects = [r["subject_id"] for r in conn.execute("SELECT subject_id FROM audit_log").fetchall()]
    assert subjects == ["kept"]


def test_rows_chain_and_verify_in_the_database(conn: psycopg.Connection) -> None:
    for i in range(20):
        with conn.transaction():
            record(conn, ACTOR, "staff.update", "staff", f"u{i}", {"i": i, "note": "テスト"})
    assert audit.verify(conn) == (20, None)


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                                       "TRUNCATE audit_log"])
def test_audit_log_is_append_only(conn: psycopg.Connection, statement: str) -> None:
    with conn.transaction():
        record(conn, ACTOR, "staff.update")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    assert conn.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"] == 1


def _tamper(conn: psycopg.Connection, sql: str) -> None:
    """What an attacker with owner rights could do: switch the guard off and edit."""
    with conn.transaction():
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute(sql)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def _fill(conn: psycopg.Connection, n: int) -> list[int]:
    ids = []
    for i in range(n):
        with conn.transaction():
            ids.append(record(conn, ACTOR, "patron.view", "patron", str(i)))
    return ids


def test_edit_in_the_database_is_reported_at_that_row(conn: psycopg.Connection) -> None:
    ids = _fill(conn, 6)
    _tamper(conn, f"UPDATE audit_log SET subject_id = '999' WHERE id = {ids[3]}")
    checked, broken = audit.verify(conn)
    assert checked == 3 and broken is not None and broken.row_id == ids[3]


def test_deletion_in_the_database_is_reported(conn: psycopg.Connection) -> None:
    ids = _fill(conn, 6)
    _tamper(conn, f"DELETE FROM audit_log WHERE id = {ids[2]}")
    _, broken = audit.verify(conn)
    assert broken is not None and broken.row_id == ids[3]


def test_cli_verify_reports_first_broken_link(conn: psycopg.Connection, db_url: str, monkeypatch,
                                              capsys) -> None:
    ids = _fill(conn, 4)
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert shoka(["audit", "verify"]) == 0
    assert "OK: 4" in capsys.readouterr().out
    _tamper(conn, f"UPDATE audit_log SET details = '{{\"x\": 1}}' WHERE id = {ids[1]}")
    assert shoka(["audit", "verify"]) == 2
    out = capsys.readouterr().out
    assert f"row {ids[1]}" in out and "BROKEN" in out


def _insert_old(conn: psycopg.Connection, when: datetime, n: int) -> None:
    """Rows as if written years ago (record() always stamps now)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (audit._CHAIN_LOCK,))
        for i in range(n):
            last = conn.execute("SELECT row_hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
            prev = last["row_hash"] if last else chain.GENESIS
            row = {"id": conn.execute("SELECT nextval('audit_log_id_seq') AS id").fetchone()["id"],
                   "occurred_at": when + timedelta(minutes=i), "actor_id": None, "actor": "old",
                   "client_addr": "cli", "action": "auth.login", "subject_type": "", "subject_id": "",
                   "details": {}}
            row["prev_hash"], row["row_hash"] = prev, chain.row_hash(prev, row)
            conn.execute("INSERT INTO audit_log VALUES (%(id)s, %(occurred_at)s, %(actor_id)s, %(actor)s, "
                         "%(client_addr)s, %(action)s, %(subject_type)s, %(subject_id)s, '{}', %(prev_hash)s, "
                         "%(row_hash)s)", row)


def test_retention_removes_only_rows_older_than_six_years_and_keeps_the_chain(conn: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    _insert_old(conn, now - timedelta(days=365 * 7), 5)       # past retention
    _insert_old(conn, now - timedelta(days=365 * 5), 3)       # within six years
    _fill(conn, 2)
    assert audit.verify(conn) == (10, None)
    assert audit.purge_expired(conn) == 5
    remaining = conn.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"]
    assert remaining == 3 + 2 + 1  # the purge itself is recorded
    checked, broken = audit.verify(conn)
    assert broken is None and checked == 6
    assert audit.purge_expired(conn) == 0
    assert audit.verify(conn)[1] is None


def test_deleting_the_first_kept_row_after_retention_is_detected(conn: psycopg.Connection) -> None:
    _insert_old(conn, datetime.now(UTC) - timedelta(days=365 * 7), 3)
    _fill(conn, 3)
    audit.purge_expired(conn)
    first = conn.execute("SELECT min(id) AS id FROM audit_log").fetchone()["id"]
    _tamper(conn, f"DELETE FROM audit_log WHERE id = {first}")
    assert audit.verify(conn)[1] is not None


def test_recent_rows_cannot_be_deleted_even_with_the_retention_switch(conn: psycopg.Connection) -> None:
    _fill(conn, 1)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("SET LOCAL shoka.audit_retention = 'on'")
        conn.execute("DELETE FROM audit_log")


def test_search_filters_by_actor_action_subject_and_date(conn: psycopg.Connection) -> None:
    with conn.transaction():
        record(conn, Actor("yamada", "10.0.0.5"), "auth.login", "staff", "yamada")
        record(conn, Actor("suzuki", "10.0.0.6"), "auth.login_failed", "staff", "suzuki")
        record(conn, Actor("yamada", "10.0.0.5"), "staff.update", "staff", "suzuki")
    rows, total = audit.search(conn, audit.AuditQuery(actor="YAMADA"))
    assert total == 2 and {r["action"] for r in rows} == {"auth.login", "staff.update"}
    rows, total = audit.search(conn, audit.AuditQuery(action="auth"))
    assert total == 2
    rows, total = audit.search(conn, audit.AuditQuery(action="auth.login"))
    assert total == 1 and rows[0]["actor"] == "yamada"
    rows, total = audit.search(conn, audit.AuditQuery(subject="staff:suzuki"))
    assert total == 2
    today = datetime.now().date()
    assert audit.search(conn, audit.AuditQuery(date_from=today, date_to=today))[1] == 3
    assert audit.search(conn, audit.AuditQuery(date_to=today - timedelta(days=1)))[1] == 0
    assert audit.search(conn, audit.AuditQuery(action="auth_"))[1] == 0  # LIKE wildcards are literal
