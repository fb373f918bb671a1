"""The counter screens (貸出・返却・延長) through the console: scan by scan, with alerts, overrides,
receipts on a printer listening on 127.0.0.1 and a printer that is offline."""

from __future__ import annotations

import re
import socket
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from devices.printers import decode_escpos
from tests.conftest import console_login
from tests.test_circulation import add_item, add_patron


@pytest.fixture
def desk(seeded: psycopg.Connection) -> psycopg.Connection:
    with seeded.transaction():
        add_patron(seeded, "P001")
        for n in range(1001, 1006):
            add_item(seeded, str(n), title=f"坊っちゃん 第{n - 1000}巻")
        add_item(seeded, "2001", branch="east", title="東の本")
    return seeded


@pytest.fixture
def clerk(staff_client: TestClient, desk: psycopg.Connection) -> tuple[TestClient, str]:
    return staff_client, console_login(staff_client, "counter")


def scan(client: TestClient, csrf: str, mode: str, **fields: object) -> str:
    resp = client.post(f"/circulation/{mode}", data={"csrf_token": csrf, **fields})
    assert resp.status_code == 200, resp.text
    return resp.text


def alert_codes(page: str) -> list[str]:
    return re.findall(r'class="alert alert-[a-z]+" data-code="([a-z_]*)"', page)


def test_checkout_visit_scan_by_scan(clerk: tuple[TestClient, str], desk: psycopg.Connection) -> None:
    client, csrf = clerk
    page = scan(client, csrf, "checkout", patron="P001")
    assert "図書 太郎" in page and 'id="scan-item"' in page and "autofocus" in page
    views = desk.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'patron.view'").fetchone()["n"]
    assert views == 1
    page = scan(client, csrf, "checkout", patron="P001", item="1001")
    assert alert_codes(page) == ["checkout"] and 'data-sound="ok"' in page and "坊っちゃん 第1巻" in page
    page = scan(client, csrf, "checkout", patron="P001", item="1002", done=["1001"])
    assert alert_codes(page) == ["checkout"]
    assert page.count('name="done" value="1001"') >= 1 and 'name="done" value="1002"' in page
    # A double scan is harmless and says so.
    page = scan(client, csrf, "checkout", patron="P001", item="1002", done=["1001", "1002"])
    assert alert_codes(page) == ["already_on_loan_to_patron"]
    # An unknown barcode is an error with its own sound; the focus stays on the item field.
    page = scan(client, csrf, "checkout", patron="P001", item="9999", done=["1001", "1002"])
    assert alert_codes(page) == ["unknown_item"] and 'data-sound="error"' in page and 'id="scan-item"' in page
    # Scanning only items does not write more patron views.
    assert desk.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'patron.view'").fetchone()["n"] == 1
    assert desk.execute("SELECT count(*) AS n FROM loan WHERE returned_at IS NULL").fetchone()["n"] == 2


def test_refusal_then_override_and_check_in_first(clerk: tuple[TestClient, str], desk: psycopg.Connection) -> None:
    client, csrf = clerk
    with desk.transaction():
        desk.execute("UPDATE loan_rule SET max_loans = 1")
        add_patron(desk, "P002")
    scan(client, csrf, "checkout", patron="P001", item="1001")
    page = scan(client, csrf, "checkout", patron="P001", item="1002", done=["1001"])
    assert alert_codes(page) == ["limit_reached"] and 'data-sound="warn"' in page
    assert 'name="override" value="limit_reached"' in page
    page = scan(client, csrf, "checkout", patron="P001", item="1002", done=["1001"], override="limit_reached")
    assert alert_codes(page) == ["checkout"]
    # Another patron scans an item still on loan: offer to check it in first.
    page = scan(client, csrf, "checkout", patron="P002", item="1001")
    assert alert_codes(page) == ["item_on_loan"] and 'name="checkin_first"' in page
    with desk.transaction():
        desk.execute("UPDATE loan_rule SET max_loans = 10")
    page = scan(client, csrf, "checkout", patron="P002", item="1001", checkin_first="1")
    assert alert_codes(page) == ["checkout"]
    holder = desk.execute("SELECT p.card FROM loan l JOIN patron p ON p.id = l.patron_id JOIN item i "
                          "ON i.id = l.item_id WHERE i.barcode = '1001' AND l.returned_at IS NULL").fetchone()
    assert holder["card"] == "P002"


def test_patron_card_scanned_into_patron_field_errors(clerk: tuple[TestClient, str]) -> None:
    client, csrf = clerk
    page = scan(client, csrf, "checkout", patron="1001")
    assert alert_codes(page) == ["item_barcode_in_patron_field"] and 'id="scan-patron"' in page
    page = scan(client, csrf, "checkout", patron="NOBODY")
    assert alert_codes(page) == ["unknown_patron"]


def test_checkin_and_renew_screens(clerk: tuple[TestClient, str], desk: psycopg.Connection) -> None:
    client, csrf = clerk
    scan(client, csrf, "checkout", patron="P001", item="1001")
    scan(client, csrf, "checkout", patron="P001", item="2001")
    page = scan(client, csrf, "renew", item="1001")
    assert alert_codes(page) == ["renew"]
    page = scan(client, csrf, "renew", item="1001", done=["1001"])
    assert alert_codes(page) == ["renewal_refused"]
    page = scan(client, csrf, "checkin", item="1001")
    assert alert_codes(page) == ["checkin"] and "坊っちゃん 第1巻" in page
    page = scan(client, csrf, "checkin", item="2001", done=["1001"])
    assert alert_codes(page) == ["checkin", "transfer"] and 'data-sound="transfer"' in page and "east" in page
    page = scan(client, csrf, "checkin", item="2001", done=["1001", "2001"])
    assert alert_codes(page) == ["not_on_loan", "transfer"]
    page = scan(client, csrf, "checkin", item="1001", done=["1001", "2001"])
    assert alert_codes(page) == ["not_on_loan"] and 'data-sound="info"' in page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_receipt_printed_on_the_workstation_printer(clerk: tuple[TestClient, str], desk: psycopg.Connection,
                                                    network_printer: Any) -> None:
    client, csrf = clerk
    with desk.transaction():
        desk.execute("INSERT INTO workstation (code, name, branch_id, printer) SELECT 'main-1', '中央1番', id, %s "
                     "FROM branch WHERE code = 'main'",
                     (Jsonb({"connection": "network", "host": "127.0.0.1",
                             "port": network_printer.server_address[1]}),))
    resp = client.post("/circulation/workstation", data={"csrf_token": csrf, "workstation": "main-1"},
                       follow_redirects=False)
    assert resp.status_code == 303
    scan(client, csrf, "checkout", patron="P001", item="1001")
    scan(client, csrf, "checkout", patron="P001", item="1002", done=["1001"])
    page = scan(client, csrf, "receipt", kind="checkout", patron="P001", done=["1001", "1002"])
    assert alert_codes(page) == ["receipt"]
    lines = decode_escpos(network_printer.received[-1])
    text = "\n".join(lines)
    assert "貸出レシート" in text and "坊っちゃん 第1巻" in text and "坊っちゃん 第2巻" in text
    assert "P001" not in text and "利用者 ****" in text  # a card this short is masked entirely
    assert "図書 太郎" not in text and "テスト図書館" in text
    # Reprint sends the same receipt again.
    page = scan(client, csrf, "receipt", kind="checkout", reprint="1")
    assert alert_codes(page) == ["receipt"] and decode_escpos(network_printer.received[-1]) == lines


def test_offline_printer_keeps_the_loans_and_offers_a_reprint(clerk: tuple[TestClient, str],
                                                              desk: psycopg.Connection) -> None:
    client, csrf = clerk
    with desk.transaction():
        desk.execute("INSERT INTO workstation (code, name, branch_id, printer) SELECT 'main-2', '中央2番', id, %s "
                     "FROM branch WHERE code = 'main'",
                     (Jsonb({"connection": "network", "host": "127.0.0.1", "port": _free_port(), "timeout": 1}),))
    client.post("/circulation/workstation", data={"csrf_token": csrf, "workstation": "main-2"})
    scan(client, csrf, "checkout", patron="P001", item="1001")
    page = scan(client, csrf, "receipt", kind="checkout", patron="P001", done=["1001"])
    assert alert_codes(page) == ["receipt_failed"] and "貸出・返却は完了しています" in page
    assert "直前のレシートを再印刷" in page and "貸出レシート" in page  # the preview is on screen
    assert desk.execute("SELECT count(*) AS n FROM loan WHERE returned_at IS NULL").fetchone()["n"] == 1
    assert desk.execute("SELECT error FROM receipt").fetchone()["error"]


def test_no_card_in_any_url(clerk: tuple[TestClient, str]) -> None:
    client, csrf = clerk
    page = scan(client, csrf, "checkout", patron="P001")
    page += scan(client, csrf, "checkout", patron="P001", item="1001")
    urls = re.findall(r'(?:href|action|src)="([^"]*)"', page)
    assert urls and not [u for u in urls if "P001" in u]


def test_counter_pages_need_circulation_rights(staff_client: TestClient, desk: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "viewer")
    assert staff_client.get("/circulation/checkout").status_code == 200
    resp = staff_client.post("/circulation/checkout", data={"csrf_token": csrf, "patron": "P001", "item": "1001"})
    assert resp.status_code == 403
    resp = staff_client.post("/circulation/checkout", data={"csrf_token": "wrong", "patron": "P001"})
    assert resp.status_code == 403


def test_group_lending_list(clerk: tuple[TestClient, str], desk: psycopg.Connection) -> None:
    client, csrf = clerk
    with desk.transaction():
        group = add_patron(desk, "G001", category="group", birth_date=None)
        desk.execute("UPDATE patron SET name = '第一小学校', contact_name = '木村' WHERE id = %s", (group,))
        desk.execute("INSERT INTO loan_rule (patron_category, loan_days, max_loans, renewals, renewal_days) "
                     "VALUES ('group', 30, 100, 0, 30)")
    page = scan(client, csrf, "checkout", patron="G001")
    assert "第一小学校" in page and "団体" in page
    for n in ("1001", "1002", "1003"):
        page = scan(client, csrf, "checkout", patron="G001", item=n)
        assert alert_codes(page) == ["checkout"]
    due = desk.execute("SELECT DISTINCT due_date FROM loan").fetchall()
    assert [r["due_date"] for r in due] == [date.today() + timedelta(days=30)]
    listing = client.get("/circulation/groups")
    assert listing.status_code == 200 and "第一小学校" in listing.text
    assert f"/circulation/groups/{group}" in listing.text
    detail = client.get(f"/circulation/groups/{group}")
    assert detail.status_code == 200 and "木村" in detail.text and detail.text.count("坊っちゃん") == 3
    assert desk.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'patron.view' AND subject_id = 'G001'"
                        ).fetchone()["n"] == 2  # brought up at the counter, then the group's list
    assert client.get("/circulation/groups/999999").status_code == 404
    events = desk.execute("SELECT bool_and(is_group) AS g FROM circulation_event").fetchone()
    assert events["g"] is True


def test_session_expiring_mid_visit_makes_no_loan(clerk: tuple[TestClient, str], desk: psycopg.Connection) -> None:
    client, csrf = clerk
    scan(client, csrf, "checkout", patron="P001")
    desk.execute("UPDATE staff_session SET last_seen_at = now() - interval '31 minutes'")
    resp = client.post("/circulation/checkout", data={"csrf_token": csrf, "patron": "P001", "item": "1001"},
                       follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?expired=1"
    assert desk.execute("SELECT count(*) AS n FROM loan").fetchone()["n"] == 0
    assert "P001" not in resp.headers["location"]
