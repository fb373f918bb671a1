"""The demo circulation desk: what the issue promises the demo always has, made through the real code."""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
from psycopg.types.json import Jsonb

from api import demo
from api.barcodes.nw7 import parse_scan
from api.barcodes.service import load_rules
from api.circulation.rules import limit_rule, resolve_rule
from api.circulation.service import load_calendar
from api.circulation.service import load_rules as load_loan_rules
from api.config import Settings


def test_demo_circulation_desk(conn: psycopg.Connection, db_url: str, settings: Settings, tmp_path) -> None:
    demo.load(db_url)
    with conn.transaction():
        rec = conn.execute("INSERT INTO bib_record (source, control_number, title, data) "
                           "VALUES ('T', '1', 'こころ', %s) RETURNING id", (Jsonb({}),)).fetchone()["id"]
        conn.execute("""INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type)
                        SELECT %s, '2' || lpad(g::text, 7, '0'), b.id, b.id, 'book'
                        FROM generate_series(1, 50) g, branch b WHERE b.code = 'main'""", (rec,))
    from dataclasses import replace

    settings = replace(settings, data_dir=tmp_path)
    message = demo.load_circulation(settings, db_url)
    assert "8 patrons" in message and "40 loans" in message, message
    assert demo.load_circulation(settings, db_url) == "Demo circulation: already loaded."
    # Branch main, item type book, category general lends 10 books for 14 days.
    rules = load_loan_rules(conn)
    assert resolve_rule(rules, "general", "book", "main").loan_days == 14
    assert limit_rule(rules, "general", "main").max_loans == 10
    # Every demo card passes its own range's check digit; the demo calendar closes Mondays.
    barcode_rules = load_rules(conn)
    for row in conn.execute("SELECT card FROM patron").fetchall():
        assert parse_scan(row["card"], barcode_rules, "patron") == row["card"]
    main = conn.execute("SELECT id FROM branch WHERE code = 'main'").fetchone()["id"]
    calendar = load_calendar(conn, main, date.today())
    monday = date.today() + timedelta(days=(7 - date.today().weekday()) % 7 or 7)
    assert not calendar.is_open(monday) or conn.execute(
        "SELECT 1 FROM calendar_day WHERE branch_id = %s AND day = %s AND NOT closed", (main, monday)).fetchone()
    assert conn.execute("SELECT count(*) AS n FROM patron WHERE password_hash IS NULL").fetchone()["n"] == 0
    statuses = {r["status"]: r["n"] for r in conn.execute(
        "SELECT status, count(*) AS n FROM item GROUP BY status").fetchall()}
    assert statuses["on_loan"] == conn.execute("SELECT count(*) AS n FROM loan WHERE returned_at IS NULL"
                                               ).fetchone()["n"] == 40
    assert conn.execute("SELECT count(*) AS n FROM loan WHERE due_date < current_date").fetchone()["n"] > 0
