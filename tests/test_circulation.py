"""Check-out, check-in and renewal through the API and the service, on a real database: refusals with
stable codes, due dates on the branch calendar, transfers, overrides, and concurrency."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api import db
from api.audit import Actor
from api.circulation import service
from api.errors import ShokaError
from tests.conftest import token_for

TODAY = date.today()


def add_patron(conn: psycopg.Connection, card: str, *, category: str = "general", branch: str = "main",
               expires_on: date | None = None, birth_date: date | None = date(1980, 5, 1)) -> int:
    row = conn.execute(
        """INSERT INTO patron (card, name, name_reading, reading_key, category, home_branch_id, expires_on,
                               birth_date)
           SELECT %s, '図書 太郎', 'トショ タロウ', 'トショタロウ', %s, id, %s, %s FROM branch WHERE code = %s
           RETURNING id""", (card, category, expires_on or TODAY + timedelta(days=365), birth_date, branch)).fetchone()
    return int(row["id"])


def add_item(conn: psycopg.Connection, barcode: str, *, branch: str = "main", item_type: str = "book",
             title: str = "吾輩は猫である") -> int:
    rec = conn.execute(
        """INSERT INTO bib_record (source, control_number, title, title_reading, ndc, data)
           VALUES ('TEST', %s, %s, 'ワガハイハネコデアル', '913.6', %s) RETURNING id""",
        (barcode, title, Jsonb({"title": title}))).fetchone()
    row = conn.execute(
        """INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type)
           SELECT %s, %s, id, id, %s FROM branch WHERE code = %s RETURNING id""",
        (rec["id"], barcode, item_type, branch)).fetchone()
    return int(row["id"])


@pytest.fixture
def desk(seeded: psycopg.Connection) -> psycopg.Connection:
    """Patrons P001 (general), P002 (child), P003 (expired); items 1001..1012 at main, 2001 at east,
    R001 reference."""
    with seeded.transaction():
        add_patron(seeded, "P001")
        add_patron(seeded, "P002", category="child", birth_date=TODAY - timedelta(days=365 * 9))
        add_patron(seeded, "P003", expires_on=TODAY - timedelta(days=1))
        for n in range(1001, 1013):
            add_item(seeded, str(n), title=f"資料{n}")
        add_item(seeded, "2001", branch="east", title="東の本")
        add_item(seeded, "R001", item_type="reference", title="広辞苑")
    return seeded


@pytest.fixture
def counter(staff_client: TestClient, desk: psycopg.Connection) -> dict[str, str]:
    return token_for(staff_client, "counter")


def checkout(client: TestClient, headers: dict[str, str], patron: str, item: str, **extra: object):
    return client.post("/api/v1/circulation/checkout", headers=headers, json={"patron": patron, "item": item, **extra})


def test_checkout_checkin_renew_round_trip(staff_client: TestClient, counter: dict[str, str],
                                           desk: psycopg.Connection) -> None:
    r = checkout(staff_client, counter, "P001", "1001")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["due_date"] == (TODAY + timedelta(days=14)).isoformat() and body["loan_id"] > 0
    assert desk.execute("SELECT status FROM item WHERE barcode = '1001'").fetchone()["status"] == "on_loan"
    loan = desk.execute("SELECT patron_category, age_group, item_type, branch_id FROM loan").fetchone()
    assert (loan["patron_category"], loan["item_type"]) == ("general", "book") and loan["age_group"] in (
        "40-49", "30-39")
    # Renewal runs from today: 14 more days, never earlier than the current due date.
    r = staff_client.post("/api/v1/circulation/renew", headers=counter, json={"item": "1001"})
    assert r.status_code == 200 and r.json()["renewals"] == 1
    assert r.json()["due_date"] == (TODAY + timedelta(days=14)).isoformat()
    r = staff_client.post("/api/v1/circulation/renew", headers=counter, json={"item": "1001"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "renewal_refused"
    r = staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": "1001"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "available" and r.json()["loan_id"] == body["loan_id"]
    assert r.json()["transfer_to"] is None
    events = [e["kind"] for e in desk.execute("SELECT kind FROM circulation_event ORDER BY id").fetchall()]
    assert events == ["checkout", "renew", "checkin"]
    # The statistics rows carry no patron.
    cols = {c.name for c in desk.execute("SELECT * FROM circulation_event LIMIT 1").description}
    assert not cols & {"patron_id", "card", "name"}
    # A check-in scanned twice says so and changes nothing.
    again = staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": "1001"}).json()
    assert again["loan_id"] is None and "not_on_loan" in again["alerts"]


def test_refusals_have_stable_codes(staff_client: TestClient, counter: dict[str, str],
                                    desk: psycopg.Connection) -> None:
    cases = [
        ("P999", "1001", 404, "unknown_patron"),
        ("P001", "9999", 404, "unknown_item"),
        ("P001", "P002", 422, "patron_barcode_in_item_field"),
        ("1002", "1001", 422, "item_barcode_in_patron_field"),
        ("P003", "1001", 409, "patron_expired"),
        ("P001", "R001", 409, "item_not_loanable"),
        ("P001", "1920093019004", 422, "book_jan"),
        ("P001", "", 422, "barcode_empty"),
    ]
    for patron, item, status, code in cases:
        r = checkout(staff_client, counter, patron, item)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (patron, item, r.text)
    assert desk.execute("SELECT count(*) AS n FROM loan").fetchone()["n"] == 0
    checkout(staff_client, counter, "P001", "1001")
    r = checkout(staff_client, counter, "P002", "1001")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "item_on_loan")
    # The same patron scanning the same item twice: the loan stands, nothing new.
    r = checkout(staff_client, counter, "P001", "1001")
    assert r.status_code == 201 and r.json()["already_on_loan_to_patron"] is True
    assert desk.execute("SELECT count(*) AS n FROM loan").fetchone()["n"] == 1
    r = staff_client.post("/api/v1/circulation/renew", headers=counter, json={"item": "1002"})
    assert r.json()["error"]["code"] == "item_not_on_loan"
    with desk.transaction():
        desk.execute("UPDATE item SET status = 'withdrawn', withdrawn_on = current_date WHERE barcode = '1003'")
        desk.execute("UPDATE item SET status = 'lost' WHERE barcode = '1004'")
    for item in ("1003", "1004"):
        assert checkout(staff_client, counter, "P001", item).json()["error"]["code"] == "item_not_loanable"


def test_blocks_suspensions_and_overrides(staff_client: TestClient, counter: dict[str, str],
                                          desk: psycopg.Connection) -> None:
    pid = desk.execute("SELECT id FROM patron WHERE card = 'P001'").fetchone()["id"]
    with desk.transaction():
        block = desk.execute("INSERT INTO patron_block (patron_id, kind, reason, created_by) "
                             "VALUES (%s, 'manual', '住所確認待ち', 'admin') RETURNING id", (pid,)).fetchone()["id"]
    r = checkout(staff_client, counter, "P001", "1001", override=["patron_has_overdue"])
    assert r.json()["error"]["code"] == "patron_blocked" and "住所確認待ち" in r.json()["error"]["message"]
    r = checkout(staff_client, counter, "P001", "1001", override=["patron_blocked"])
    assert r.status_code == 422 and r.json()["error"]["field"] == "override"
    with desk.transaction():
        desk.execute("UPDATE patron_block SET lifted_at = now(), lifted_by = 'admin' WHERE id = %s", (block,))
        desk.execute("INSERT INTO patron_block (patron_id, kind, reason, ends_on, created_by) "
                     "VALUES (%s, 'suspension', '延滞', current_date + 3, 'admin')", (pid,))
    r = checkout(staff_client, counter, "P001", "1001")
    assert r.json()["error"]["code"] == "patron_suspended"
    assert (TODAY + timedelta(days=3)).isoformat() in r.json()["error"]["message"]
    with desk.transaction():
        desk.execute("DELETE FROM patron_block")
    # An expired card can be overridden by the clerk; the override is audited without the patron.
    r = checkout(staff_client, counter, "P003", "1001", override=["patron_expired"])
    assert r.status_code == 201 and r.json()["overridden"] == ["patron_expired"]
    audit = desk.execute("SELECT action, subject_id, details FROM audit_log WHERE action = 'loan.override'").fetchone()
    assert audit["subject_id"] == "1001" and "P003" not in str(audit["details"])


def test_overdue_blocks_and_suspension_setting(staff_client: TestClient, counter: dict[str, str],
                                               desk: psycopg.Connection) -> None:
    checkout(staff_client, counter, "P001", "1001")
    with desk.transaction():
        desk.execute("UPDATE loan SET due_date = current_date - 5")
        desk.execute("INSERT INTO library_setting (key, value) VALUES "
                     "('circulation.suspension_days_per_overdue_day', '1')")
    r = checkout(staff_client, counter, "P001", "1002")
    assert r.json()["error"]["code"] == "patron_has_overdue"
    r = staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": "1001"}).json()
    assert r["overdue_days"] == 5 and "overdue" in r["alerts"]
    assert r["suspended_until"] == (TODAY + timedelta(days=5)).isoformat()
    assert checkout(staff_client, counter, "P001", "1002").json()["error"]["code"] == "patron_suspended"


def test_limits_from_the_rules_matrix(staff_client: TestClient, counter: dict[str, str],
                                      desk: psycopg.Connection) -> None:
    with desk.transaction():
        desk.execute("INSERT INTO loan_rule (patron_category, item_type, branch_id, loan_days, max_loans, "
                     "renewals, renewal_days) VALUES ('child', NULL, NULL, 7, 3, 0, 7)")
        desk.execute("INSERT INTO loan_rule (patron_category, item_type, branch_id, loan_days, max_loans, "
                     "max_loans_of_type, renewals, renewal_days) VALUES ('child', 'av', NULL, 7, 3, 1, 0, 7)")
        desk.execute("UPDATE item SET item_type = 'av' WHERE barcode IN ('1005', '1006')")
    assert checkout(staff_client, counter, "P002", "1005").json()["due_date"] == (TODAY + timedelta(days=7)).isoformat()
    r = checkout(staff_client, counter, "P002", "1006")
    assert r.json()["error"]["code"] == "limit_reached"
    assert checkout(staff_client, counter, "P002", "1001").status_code == 201
    assert checkout(staff_client, counter, "P002", "1002").status_code == 201
    r = checkout(staff_client, counter, "P002", "1003")
    assert r.status_code == 409 and r.json()["error"]["code"] == "limit_reached"
    r = checkout(staff_client, counter, "P002", "1003", override=["limit_reached"])
    assert r.status_code == 201 and r.json()["overridden"] == ["limit_reached"]
    # Renewals: the child rule allows none.
    r = staff_client.post("/api/v1/circulation/renew", headers=counter, json={"item": "1001"})
    assert r.json()["error"]["code"] == "renewal_refused"


def test_due_date_moves_to_the_next_open_day(staff_client: TestClient, counter: dict[str, str],
                                             desk: psycopg.Connection) -> None:
    natural = TODAY + timedelta(days=14)
    with desk.transaction():
        desk.execute("INSERT INTO branch_calendar (branch_id, weekly_closed) SELECT id, %s FROM branch "
                     "WHERE code = 'main'", ([natural.weekday()],))
        desk.execute("INSERT INTO calendar_day (branch_id, day, closed, reason) SELECT id, %s, true, '特別整理' "
                     "FROM branch WHERE code = 'main'", (natural + timedelta(days=1),))
    r = checkout(staff_client, counter, "P001", "1001")
    assert r.json()["due_date"] == (natural + timedelta(days=2)).isoformat()
    # At the east branch (no calendar) the same loan would be due on the natural day.
    r = checkout(staff_client, counter, "P001", "1002", branch="east")
    assert r.json()["due_date"] == natural.isoformat()


def test_return_at_another_branch_starts_a_transfer_home(staff_client: TestClient, counter: dict[str, str],
                                                         desk: psycopg.Connection) -> None:
    checkout(staff_client, counter, "P001", "2001")
    r = staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": "2001"}).json()
    assert r["status"] == "in_transit" and r["transfer_to"] == "east" and "transfer" in r["alerts"]
    transit = desk.execute("SELECT f.code AS src, t.code AS dst, received_at FROM item_transit x "
                           "JOIN branch f ON f.id = x.from_branch_id JOIN branch t ON t.id = x.to_branch_id").fetchone()
    assert (transit["src"], transit["dst"], transit["received_at"]) == ("main", "east", None)
    assert checkout(staff_client, counter, "P002", "2001").json()["error"]["code"] == "item_in_transit"
    # Arriving at east: scanned in there, the transit ends and the item is on the shelf.
    r = staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": "2001", "branch": "east"})
    assert r.json()["transit_received"] is True and r.json()["status"] == "available"
    assert desk.execute("SELECT count(*) AS n FROM item_transit WHERE received_at IS NULL").fetchone()["n"] == 0


def test_found_item_comes_back_available(staff_client: TestClient, counter: dict[str, str],
                                         desk: psycopg.Connection) -> None:
    with desk.transaction():
        desk.execute("UPDATE item SET status = 'missing' WHERE barcode = '1007'")
    r = staff_client.post("/api/v1/circulation/checkin", headers=counter, json={"item": "1007"}).json()
    assert r["status"] == "available" and "found" in r["alerts"]


def test_opac_holdings_show_the_due_date(staff_client: TestClient, counter: dict[str, str], desk: psycopg.Connection,
                                         opac_db_url: str) -> None:
    due = checkout(staff_client, counter, "P001", "1001").json()["due_date"]
    with psycopg.connect(opac_db_url) as opac:
        row = opac.execute("SELECT status, due_date FROM opac_holding h JOIN bib_record r ON r.id = h.record_id "
                           "WHERE r.control_number = '1001'").fetchone()
    assert row[0] == "on_loan" and row[1].isoformat() == due


def test_viewer_cannot_lend(staff_client: TestClient, desk: psycopg.Connection) -> None:
    viewer = token_for(staff_client, "viewer")
    r = checkout(staff_client, viewer, "P001", "1001")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_branch_defaults_to_the_staff_members_and_must_exist(staff_client: TestClient, counter: dict[str, str],
                                                              desk: psycopg.Connection) -> None:
    r = checkout(staff_client, counter, "P001", "1001", branch="nowhere")
    assert r.status_code == 422 and r.json()["error"]["field"] == "branch"
    assert checkout(staff_client, counter, "P001", "1001").status_code == 201
    assert desk.execute("SELECT b.code FROM loan l JOIN branch b ON b.id = l.branch_id").fetchone()["code"] == "main"


# -- concurrency: real concurrent transactions on PostgreSQL ------------------------------------------

def _race(db_url: str, calls: list[tuple[str, str]]) -> list[str]:
    """Run check-outs at once, each on its own connection, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = [""] * len(calls)

    def run(index: int, card: str, item: str) -> None:
        with db.connect(db_url) as conn:
            barrier.wait()
            try:
                service.checkout(conn, Actor("counter", "127.0.0.1"), card, item, branch="main")
                outcomes[index] = "ok"
            except ShokaError as exc:
                outcomes[index] = exc.code
            except Exception as exc:  # a raw database error would mean a race got through
                outcomes[index] = type(exc).__name__

    threads = [threading.Thread(target=run, args=(i, card, item)) for i, (card, item) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


def test_two_counters_scanning_the_same_item_make_exactly_one_loan(desk: psycopg.Connection, db_url: str) -> None:
    with desk.transaction():
        for n in range(4, 10):
            add_patron(desk, f"P00{n}")
    for round_ in range(5):
        item = str(1001 + round_)
        outcomes = _race(db_url, [(f"P00{n}", item) for n in range(4, 10)])
        assert sorted(outcomes) == ["item_on_loan"] * 5 + ["ok"], outcomes
        n = desk.execute("SELECT count(*) AS n FROM loan l JOIN item i ON i.id = l.item_id "
                         "WHERE i.barcode = %s AND l.returned_at IS NULL", (item,)).fetchone()["n"]
        assert n == 1


def test_limits_hold_when_one_patron_is_served_at_two_counters(desk: psycopg.Connection, db_url: str) -> None:
    with desk.transaction():
        desk.execute("UPDATE loan_rule SET max_loans = 3")
    outcomes = _race(db_url, [("P001", str(n)) for n in range(1001, 1009)])
    assert sorted(outcomes) == ["limit_reached"] * 5 + ["ok"] * 3, outcomes
    assert desk.execute("SELECT count(*) AS n FROM loan WHERE returned_at IS NULL").fetchone()["n"] == 3


def test_checkin_racing_a_renewal_leaves_one_consistent_state(staff_client: TestClient, counter: dict[str, str],
                                                             desk: psycopg.Connection, db_url: str) -> None:
    checkout(staff_client, counter, "P001", "1001")
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def act(kind: str) -> None:
        with db.connect(db_url) as conn:
            barrier.wait()
            try:
                if kind == "checkin":
                    service.checkin(conn, Actor("a", "x"), "1001", branch="main")
                else:
                    service.renew(conn, Actor("b", "y"), "1001", branch="main")
                results[kind] = "ok"
            except ShokaError as exc:
                results[kind] = exc.code

    threads = [threading.Thread(target=act, args=(k,)) for k in ("checkin", "renew")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["checkin"] == "ok" and results["renew"] in ("ok", "item_not_on_loan")
    loan = desk.execute("SELECT returned_at, renewals FROM loan").fetchone()
    assert loan["returned_at"] is not None
    assert desk.execute("SELECT status FROM item WHERE barcode = '1001'").fetchone()["status"] == "available"


def test_receipts_show_only_the_end_of_a_card() -> None:
    from api.circulation.receipts import mask_card

    assert mask_card("2000123456789") == "*********6789"
    assert mask_card("12345") == "*2345"
    assert mask_card("P001") == "****"


def test_policy_changes_apply_to_the_very_next_scan(staff_client: TestClient, counter: dict[str, str],
                                                    desk: psycopg.Connection) -> None:
    """The policy is cached per process; any change to rules, calendars or ranges is seen at once."""
    natural = TODAY + timedelta(days=14)
    assert checkout(staff_client, counter, "P001", "1001").json()["due_date"] == natural.isoformat()
    with desk.transaction():
        desk.execute("INSERT INTO calendar_day (branch_id, day, closed, reason) SELECT id, %s, true, '臨時休館' "
                     "FROM branch WHERE code = 'main'", (natural,))
    assert checkout(staff_client, counter, "P001", "1002").json()["due_date"] == (
        natural + timedelta(days=1)).isoformat()
    desk.execute("UPDATE loan_rule SET loan_days = 7")
    assert checkout(staff_client, counter, "P001", "1003").json()["due_date"] == (TODAY + timedelta(days=7)).isoformat()
    desk.execute("INSERT INTO barcode_rule (kind, prefix, length) VALUES ('item', '1', 6)")
    r = checkout(staff_client, counter, "P001", "1004")
    assert r.json()["error"]["code"] == "barcode_length"
