"""The OPAC process and its database role: public catalogue data only."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

# Tables the OPAC may read. Every other table, including those later migrations add (patrons,
# loans, holds...), must stay closed unless a migration grants it on purpose and this list says so.
PUBLIC_TABLES = {"branch", "library_setting", "bib_record", "item_type", "location"}


def _tables(conn: psycopg.Connection) -> set[str]:
    return {r["tablename"] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}


def test_opac_role_cannot_read_private_tables(seeded: psycopg.Connection, opac_db_url: str) -> None:
    private = _tables(seeded) - PUBLIC_TABLES
    assert {"staff_account", "staff_session", "audit_log", "alembic_version"} <= private
    with psycopg.connect(opac_db_url, autocommit=True) as opac:
        for table in sorted(private):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                opac.execute(f"SELECT 1 FROM {table} LIMIT 1")
        for table in sorted(PUBLIC_TABLES):
            opac.execute(f"SELECT * FROM {table} LIMIT 1")


def test_opac_role_cannot_write_even_public_tables(seeded: psycopg.Connection, opac_db_url: str) -> None:
    with psycopg.connect(opac_db_url, autocommit=True) as opac:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            opac.execute("INSERT INTO branch (code, name) VALUES ('evil', 'x')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            opac.execute("UPDATE branch SET name = 'x'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            opac.execute("CREATE TABLE stash (x text)")


def test_opac_role_cannot_read_patron_or_loan_tables(seeded: psycopg.Connection, opac_db_url: str) -> None:
    """Patron, loan and the other circulation tables are closed to the OPAC; so is a table created
    later by the owner without a grant."""
    seeded.execute("CREATE TABLE later_private (id bigint, name text)")
    with psycopg.connect(opac_db_url, autocommit=True) as opac:
        for table in ("patron", "patron_block", "loan", "circulation_event", "receipt", "item_transit",
                      "audit_log", "later_private", "item", "hold", "patron_session", "notice", "purchase_request",
                      "locker_compartment"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                opac.execute(f"SELECT * FROM {table}")


def test_opac_role_sees_no_patron_columns_anywhere(opac_db_url: str) -> None:
    """No relation the OPAC can read has a column that looks like personal data."""
    with psycopg.connect(opac_db_url, autocommit=True) as opac:
        rows = opac.execute(
            """SELECT c.table_name, c.column_name FROM information_schema.columns c
               WHERE c.table_schema = 'public'
                 AND has_table_privilege(current_user, format('%I.%I', c.table_schema, c.table_name),
                                         'SELECT')""").fetchall()
    readable = {(t, col) for t, col in rows}
    assert ("opac_holding", "due_date") in readable
    personal = {"patron_id", "card", "name_reading", "birth_date", "email", "phone", "address", "password_hash"}
    assert not [pair for pair in readable if pair[1] in personal]


def test_top_page_lists_branches_in_japanese_and_english(opac_client: TestClient) -> None:
    ja = opac_client.get("/")
    assert ja.status_code == 200 and '<html lang="ja">' in ja.text and "中央図書館" in ja.text
    assert 'role="search"' in ja.text and 'action="/search"' in ja.text
    en = opac_client.get("/?lang=en")
    assert '<html lang="en">' in en.text


def test_opac_has_no_staff_or_admin_routes(opac_client: TestClient) -> None:
    for path in ("/login", "/admin/staff", "/api/v1/staff", "/api/v1/auth/token", "/audit"):
        assert opac_client.get(path).status_code == 404, path
