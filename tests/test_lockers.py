"""Pickup lockers (予約本受取ロッカー): loading a trapped hold (a loan, the hold kept 'in_locker', a fresh
unlock code sent to the patron and never audited), a full bank, out-of-service compartments, emptying,
taking an uncollected item out (a return that traps the next hold), and who may do what."""

from __future__ import annotations

import json
import threading
from datetime import date, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import db
from api.audit import Actor
from api.circulation import service as circulation
from api.errors import ShokaError
from api.holds import service as holds
from api.lockers import service as lockers
from tests.conftest import console_login
from tests.test_circulation import add_patron
from tests.test_holds import add_title

TODAY = date.today()
ACTOR = Actor("counter", "127.0.0.1")


# -- pure --------------------------------------------------------------------------------------------

def test_compartment_labels() -> None:
    assert lockers.compartment_labels(3) == ["1", "2", "3"]
    assert lockers.compartment_labels(3, prefix="A") == ["A1", "A2", "A3"]
    assert lockers.compartment_labels(2, prefix=" B ", start=10) == ["B10", "B11"]
    assert len(lockers.compartment_labels(200)) == 200
    for bad in (0, -1, 201):
        with pytest.raises(ShokaError) as err:
            lockers.compartment_labels(bad)
        assert err.value.field == "count" and repr(bad) in err.value.message_ja


def test_parse_labels() -> None:
    assert lockers.parse_labels("1, 2、3\n10  11，12") == ["1", "2", "3", "10", "11", "12"]
    assert lockers.parse_labels("Ａ１ Ａ２") == ["A1", "A2"]       # full width from a Japanese IME
    cases = {"1, 2, 1": "「1」", "": "「」", " , ": "「」", "X" * 17: "X" * 17}
    for text, shown in cases.items():
        with pytest.raises(ShokaError) as err:
            lockers.parse_labels(text)
        assert err.value.code == "validation_error" and err.value.field == "labels"
        assert shown in err.value.message_ja, (text, err.value.message_ja)


def test_unlock_codes() -> None:
    for digits in (4, 5, 6):
        codes = {lockers.new_unlock_code(digits) for _ in range(300)}
        assert all(len(c) == digits and c.isdigit() for c in codes)
        assert len(codes) > 250  # 300 draws from 10^4..10^6 values: nearly all distinct
    assert len(lockers.new_unlock_code()) == 6
    for digits in (3, 7):
        with pytest.raises(ValueError):
            lockers.new_unlock_code(digits)


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture
def shelf(seeded: psycopg.Connection) -> dict[str, int]:
    """火花 (copy H1 at main) lent to P1, held by P2 then P3 (pickup main); a bank of three compartments at
    main, one more bank at east. Returns ids."""
    with seeded.transaction():
        ids = {card: add_patron(seeded, card) for card in ("P1", "P2", "P3", "P4")}
        ids["hibana"] = add_title(seeded, "1", [("H1", "main")], "火花")
        ids["other"] = add_title(seeded, "2", [("O1", "main")], "別の本")
    circulation.checkout(seeded, ACTOR, "P1", "H1", branch="main")
    ids["hold"] = holds.place_hold(seeded, ACTOR, ids["P2"], ids["hibana"], "main").id
    ids["next"] = holds.place_hold(seeded, ACTOR, ids["P3"], ids["hibana"], "main").id
    back = circulation.checkin(seeded, ACTOR, "H1", branch="main")
    assert back.hold is not None and back.hold.id == ids["hold"] and back.hold.status == "on_shelf"
    ids["bank"] = lockers.create_bank(seeded, ACTOR, "main-locker", "中央館ロッカー", "main", ["1", "2", "3"],
                                      location="正面玄関")
    ids["east_bank"] = lockers.create_bank(seeded, ACTOR, "east-locker", "東分館ロッカー", "east", ["E1"])
    return ids


def compartments(conn: psycopg.Connection, bank: int) -> dict[str, int]:
    return {r["label"]: r["id"] for r in conn.execute(
        "SELECT id, label FROM locker_compartment WHERE bank_id = %s", (bank,)).fetchall()}


def trap_other(conn: psycopg.Connection, ids: dict[str, int], card: str = "P4") -> int:
    """A second trapped hold (別の本 for P4) to fill another compartment."""
    circulation.checkout(conn, ACTOR, "P1", "O1", branch="main")
    hid = holds.place_hold(conn, ACTOR, ids[card], ids["other"], "main").id
    circulation.checkin(conn, ACTOR, "O1", branch="main")
    return hid


# -- loading -------------------------------------------------------------------------------------------

def test_load_a_trapped_hold(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    deadline = seeded.execute("SELECT pickup_deadline FROM hold WHERE id = %s", (shelf["hold"],)).fetchone()[
        "pickup_deadline"]
    loaded = lockers.load_hold(seeded, ACTOR, shelf["hold"])
    comp = compartments(seeded, shelf["bank"])["1"]   # the first free one of the pickup branch's bank
    assert (loaded.bank, loaded.compartment, loaded.compartment_id, loaded.item) == ("main-locker", "1", comp, "H1")
    assert loaded.unlock_code.isdigit() and len(loaded.unlock_code) == 6
    assert loaded.pickup_deadline == deadline and loaded.notice_queued
    # The loan: P2 has H1, due by the default rule (14 days, every day open).
    loan = seeded.execute(
        """SELECT l.id, p.card, l.due_date FROM loan l JOIN patron p ON p.id = l.patron_id
           JOIN item i ON i.id = l.item_id WHERE i.barcode = 'H1' AND l.returned_at IS NULL""").fetchone()
    assert (loan["id"], loan["card"], loan["due_date"]) == (loaded.loan_id, "P2", TODAY + timedelta(days=14))
    assert loaded.due_date == TODAY + timedelta(days=14) and deadline == TODAY + timedelta(days=7)
    assert seeded.execute("SELECT status FROM item WHERE barcode = 'H1'").fetchone()["status"] == "on_loan"
    hold = seeded.execute("SELECT status, locker_compartment_id, unlock_code, ended_at, end_reason FROM hold "
                          "WHERE id = %s", (shelf["hold"],)).fetchone()
    assert dict(hold) == {"status": "in_locker", "locker_compartment_id": comp, "unlock_code": loaded.unlock_code,
                          "ended_at": None, "end_reason": None}
    row = seeded.execute("SELECT hold_id, loaded_at FROM locker_compartment WHERE id = %s", (comp,)).fetchone()
    assert row["hold_id"] == shelf["hold"] and row["loaded_at"] is not None
    # The patron's notice carries the code and the compartment; the dedupe key names hold and compartment.
    notice = seeded.execute("SELECT patron_id, dedupe_key, data FROM notice WHERE kind = 'locker_code'").fetchone()
    assert notice["patron_id"] == shelf["P2"]
    assert notice["dedupe_key"] == f"locker_code:{shelf['hold']}:{comp}"
    assert {k: notice["data"][k] for k in ("title", "locker_bank", "compartment", "unlock_code", "deadline",
                                           "locker_location")} == {
        "title": "火花", "locker_bank": "中央館ロッカー", "compartment": "1", "unlock_code": loaded.unlock_code,
        "deadline": deadline.isoformat(), "locker_location": "正面玄関"}
    # The audit log has the load, and nowhere the code.
    audit = seeded.execute("SELECT action, subject_id, details FROM audit_log WHERE action = 'locker.load'").fetchone()
    assert audit["subject_id"] == str(shelf["hold"])
    assert audit["details"] == {"bank": "main-locker", "compartment": "1", "item": "H1"}
    everything = json.dumps([dict(r) for r in seeded.execute("SELECT * FROM audit_log").fetchall()], default=str)
    assert loaded.unlock_code not in everything
    # My Library shows it in the locker.
    mine = holds.patron_holds(seeded, shelf["P2"])
    assert [(h["status"], h["locker_bank"], h["locker_label"]) for h in mine] == [("in_locker", "中央館ロッカー", "1")]
    # Loading again is refused: the hold is no longer on the shelf.
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, shelf["hold"])
    assert (err.value.code, err.value.status) == ("hold_not_on_shelf", 409)


def test_two_loads_get_fresh_codes_and_different_compartments(seeded: psycopg.Connection,
                                                              shelf: dict[str, int]) -> None:
    other = trap_other(seeded, shelf)
    a = lockers.load_hold(seeded, ACTOR, shelf["hold"])
    b = lockers.load_hold(seeded, ACTOR, other)
    assert (a.compartment, b.compartment) == ("1", "2")
    codes = [r["unlock_code"] for r in seeded.execute("SELECT unlock_code FROM hold WHERE status = 'in_locker'")]
    assert sorted(codes) == sorted([a.unlock_code, b.unlock_code])


def test_locker_full_and_out_of_service(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    comps = compartments(seeded, shelf["bank"])
    lockers.set_out_of_service(seeded, ACTOR, comps["1"], True)
    lockers.set_out_of_service(seeded, ACTOR, comps["3"], True)
    other = trap_other(seeded, shelf)
    # Out of service is skipped: the only one offered is 2.
    assert lockers.load_hold(seeded, ACTOR, other).compartment == "2"
    banks = {b.code: b for b in lockers.list_banks(seeded)}
    assert banks["main-locker"].free_count == 0 and banks["east-locker"].free_count == 1
    assert [(c.label, c.free, c.out_of_service, c.item) for c in banks["main-locker"].compartments] == [
        ("1", False, True, None), ("2", False, False, "O1"), ("3", False, True, None)]
    before = seeded.execute("SELECT count(*) AS n FROM loan").fetchone()["n"]
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, shelf["hold"])
    assert (err.value.code, err.value.status, err.value.field) == ("locker_full", 409, "compartment")
    # Nothing happened: no loan, the hold still on the shelf, no notice.
    assert seeded.execute("SELECT count(*) AS n FROM loan").fetchone()["n"] == before
    assert seeded.execute("SELECT status FROM hold WHERE id = %s", (shelf["hold"],)).fetchone()["status"] == "on_shelf"
    assert seeded.execute("SELECT count(*) AS n FROM notice WHERE kind = 'locker_code'").fetchone()["n"] == 1
    # Choosing an out-of-service or occupied compartment by hand is refused too; the east bank is not offered.
    for label in ("1", "2"):
        with pytest.raises(ShokaError) as err:
            lockers.load_hold(seeded, ACTOR, shelf["hold"], compartment_id=comps[label])
        assert err.value.code == "compartment_not_free" and f"中央館ロッカー {label}" in err.value.message_ja
    east = compartments(seeded, shelf["east_bank"])["E1"]
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, shelf["hold"], compartment_id=east)
    assert err.value.code == "validation_error" and err.value.field == "compartment"
    # Back in service: offered again.
    lockers.set_out_of_service(seeded, ACTOR, comps["3"], False)
    assert lockers.load_hold(seeded, ACTOR, shelf["hold"]).compartment == "3"


def test_only_trapped_holds_on_time_go_in(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, shelf["next"])  # still waiting in the queue
    assert err.value.code == "hold_not_on_shelf"
    deadline = seeded.execute("SELECT pickup_deadline FROM hold WHERE id = %s", (shelf["hold"],)).fetchone()[
        "pickup_deadline"]
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, shelf["hold"], today=deadline + timedelta(days=1))
    assert err.value.code == "hold_past_deadline" and deadline.isoformat() in err.value.message_ja
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, 999999)
    assert err.value.status == 404


def test_a_blocked_patron_is_refused_and_nothing_changes(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    with seeded.transaction():
        seeded.execute("UPDATE patron SET expires_on = %s WHERE card = 'P2'", (TODAY - timedelta(days=1),))
    with pytest.raises(ShokaError) as err:
        lockers.load_hold(seeded, ACTOR, shelf["hold"])
    assert err.value.code == "patron_expired"
    assert seeded.execute("SELECT count(*) AS n FROM locker_compartment WHERE hold_id IS NOT NULL").fetchone()["n"] == 0
    assert lockers.load_hold(seeded, ACTOR, shelf["hold"], override=["patron_expired"]).compartment == "1"


def test_concurrent_loads_take_different_compartments(db_url: str, seeded: psycopg.Connection,
                                                      shelf: dict[str, int]) -> None:
    other = trap_other(seeded, shelf)
    results: dict[int, object] = {}

    def load(hold_id: int) -> None:
        with db.connect(db_url) as conn:
            try:
                results[hold_id] = lockers.load_hold(conn, ACTOR, hold_id).compartment
            except ShokaError as exc:
                results[hold_id] = exc.code

    threads = [threading.Thread(target=load, args=(h,)) for h in (shelf["hold"], other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(str(v) for v in results.values()) == ["1", "2"]


# -- emptying and taking out ---------------------------------------------------------------------------

def test_emptied(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    loaded = lockers.load_hold(seeded, ACTOR, shelf["hold"])
    assert lockers.mark_emptied(seeded, ACTOR, loaded.compartment_id) == shelf["hold"]
    hold = seeded.execute("SELECT status, end_reason, unlock_code, ended_at FROM hold WHERE id = %s",
                          (shelf["hold"],)).fetchone()
    assert (hold["status"], hold["end_reason"], hold["unlock_code"]) == ("collected", "collected", None)
    assert hold["ended_at"] is not None
    comp = seeded.execute("SELECT hold_id, loaded_at FROM locker_compartment WHERE id = %s",
                          (loaded.compartment_id,)).fetchone()
    assert dict(comp) == {"hold_id": None, "loaded_at": None}
    # The loan goes on: the patron has the book.
    assert seeded.execute("SELECT returned_at FROM loan WHERE id = %s", (loaded.loan_id,)).fetchone()[
        "returned_at"] is None
    audit = seeded.execute("SELECT subject_id, details FROM audit_log WHERE action = 'locker.emptied'").fetchone()
    assert (audit["subject_id"], audit["details"]) == (str(shelf["hold"]), {"bank": "main-locker", "compartment": "1"})
    with pytest.raises(ShokaError) as err:
        lockers.mark_emptied(seeded, ACTOR, loaded.compartment_id)
    assert (err.value.code, err.value.status) == ("compartment_empty", 409)
    # Free again: the next load may use it.
    assert lockers.load_hold(seeded, ACTOR, trap_other(seeded, shelf)).compartment == "1"


def test_uncollected_is_returned_and_the_next_hold_trapped(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    loaded = lockers.load_hold(seeded, ACTOR, shelf["hold"])
    assert loaded.pickup_deadline is not None
    for day in (TODAY, loaded.pickup_deadline):
        with pytest.raises(ShokaError) as err:
            lockers.return_uncollected(seeded, ACTOR, loaded.compartment_id, today=day)
        assert err.value.code == "locker_not_past_deadline"
    after = loaded.pickup_deadline + timedelta(days=1)
    out = lockers.return_uncollected(seeded, ACTOR, loaded.compartment_id, today=after)
    assert out.hold_id == shelf["hold"] and out.compartment == "1"
    assert out.checkin.loan_id == loaded.loan_id and out.checkin.overdue_days == 0
    assert out.checkin.hold is not None
    assert (out.checkin.hold.id, out.checkin.hold.status) == (shelf["next"], "on_shelf")
    statuses = {r["id"]: (r["status"], r["end_reason"], r["unlock_code"], r["trapped_item_id"] is not None)
                for r in seeded.execute("SELECT id, status, end_reason, unlock_code, trapped_item_id FROM hold")}
    assert statuses == {shelf["hold"]: ("expired", "not_collected", None, True),
                        shelf["next"]: ("on_shelf", None, None, True)}
    assert seeded.execute("SELECT returned_at FROM loan WHERE id = %s", (loaded.loan_id,)).fetchone()[
        "returned_at"] is not None
    assert seeded.execute("SELECT status FROM item WHERE barcode = 'H1'").fetchone()["status"] == "on_hold_shelf"
    assert seeded.execute("SELECT hold_id FROM locker_compartment WHERE id = %s",
                          (loaded.compartment_id,)).fetchone()["hold_id"] is None
    ready = seeded.execute("SELECT patron_id FROM notice WHERE kind = 'hold_ready' ORDER BY id").fetchall()
    assert [r["patron_id"] for r in ready] == [shelf["P2"], shelf["P3"]]
    assert seeded.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'locker.return'").fetchone()["n"] == 1


def test_uncollected_without_another_hold_goes_back_to_the_shelf(seeded: psycopg.Connection,
                                                                 shelf: dict[str, int]) -> None:
    holds.cancel_hold(seeded, ACTOR, shelf["next"])
    loaded = lockers.load_hold(seeded, ACTOR, shelf["hold"])
    assert loaded.pickup_deadline is not None
    out = lockers.return_uncollected(seeded, ACTOR, loaded.compartment_id,
                                     today=loaded.pickup_deadline + timedelta(days=1))
    assert out.checkin.hold is None and out.checkin.status == "available"


# -- administration ------------------------------------------------------------------------------------

def test_bank_administration(seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    with pytest.raises(ShokaError) as err:
        lockers.create_bank(seeded, ACTOR, "main-locker", "重複", "main", ["1"])
    assert (err.value.code, err.value.field) == ("locker_bank_exists", "code")
    for code, name, branch, field in (("Bad Code", "x", "main", "code"), ("ok", " ", "main", "name"),
                                      ("ok", "x", "nowhere", "branch")):
        with pytest.raises(ShokaError) as err:
            lockers.create_bank(seeded, ACTOR, code, name, branch, ["1"])
        assert err.value.field == field
    assert lockers.add_compartments(seeded, ACTOR, shelf["bank"], ["4", "5"]) == 2
    with pytest.raises(ShokaError) as err:
        lockers.add_compartments(seeded, ACTOR, shelf["bank"], ["6", "2"])
    assert err.value.field == "labels" and "「2」" in err.value.message_ja
    assert [c.label for c in lockers.get_bank(seeded, shelf["bank"]).compartments] == ["1", "2", "3", "4", "5"]


# -- the staff screens -----------------------------------------------------------------------------------

def test_console_load_shows_the_code_once(staff_client: TestClient, seeded: psycopg.Connection,
                                          shelf: dict[str, int]) -> None:
    csrf = console_login(staff_client, "counter")
    page = staff_client.get("/lockers")
    assert page.status_code == 200 and "中央館ロッカー" in page.text and f'id="hold-{shelf["hold"]}"' in page.text
    resp = staff_client.post("/lockers/load", data={"csrf_token": csrf, "hold_id": str(shelf["hold"]),
                                                    "compartment_id": ""}, follow_redirects=False)
    assert resp.status_code == 200, resp.text
    code = seeded.execute("SELECT unlock_code FROM hold WHERE id = %s", (shelf["hold"],)).fetchone()["unlock_code"]
    assert code in resp.text and resp.headers["cache-control"] == "no-store"
    assert code not in str(resp.url)
    again = staff_client.get("/lockers")
    assert code not in again.text and "H1" in again.text and "火花" in again.text
    english = staff_client.get("/lockers?lang=en")
    assert "<h1>Pickup lockers</h1>" in english.text and "In use" in english.text and "受取ロッカー" not in english.text
    # Loading it again: refused on the page, no code shown.
    second = staff_client.post("/lockers/load", data={"csrf_token": csrf, "hold_id": str(shelf["hold"])})
    assert second.status_code == 409 and code not in second.text and 'role="alert"' in second.text
    comp = compartments(seeded, shelf["bank"])["1"]
    done = staff_client.post(f"/lockers/compartments/{comp}/emptied", data={"csrf_token": csrf},
                             follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/lockers?done=emptied"
    assert seeded.execute("SELECT status FROM hold WHERE id = %s", (shelf["hold"],)).fetchone()["status"] == "collected"


def test_console_locker_full_is_a_clear_refusal(staff_client: TestClient, seeded: psycopg.Connection,
                                                shelf: dict[str, int]) -> None:
    for cid in compartments(seeded, shelf["bank"]).values():
        lockers.set_out_of_service(seeded, ACTOR, cid, True)
    csrf = console_login(staff_client, "counter")
    resp = staff_client.post("/lockers/load", data={"csrf_token": csrf, "hold_id": str(shelf["hold"])})
    assert resp.status_code == 409 and "空いているロッカーがありません" in resp.text


def test_console_permissions(staff_client: TestClient, seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    comp = compartments(seeded, shelf["bank"])["1"]
    assert staff_client.get("/lockers", follow_redirects=False).status_code == 303   # not signed in
    csrf = console_login(staff_client, "viewer")   # circulation:view only
    assert staff_client.get("/lockers").status_code == 200
    for path, data in (("/lockers/load", {"hold_id": str(shelf["hold"])}),
                       (f"/lockers/compartments/{comp}/emptied", {}), (f"/lockers/compartments/{comp}/return", {}),
                       ("/admin/lockers", {"code": "x", "name": "x", "branch": "main", "count": "2"})):
        assert staff_client.post(path, data={"csrf_token": csrf, **data}).status_code == 403, path
    assert staff_client.get("/admin/lockers").status_code == 403
    staff_client.cookies.clear()
    csrf = console_login(staff_client, "counter")   # circulation:update, not administer
    assert staff_client.get("/admin/lockers").status_code == 403
    r = staff_client.post(f"/admin/lockers/{shelf['bank']}/compartments/{comp}/service",
                          data={"csrf_token": csrf, "out_of_service": "1"})
    assert r.status_code == 403
    # Without the CSRF token nothing happens either.
    assert staff_client.post("/lockers/load", data={"hold_id": str(shelf["hold"])}).status_code == 403
    assert seeded.execute("SELECT status FROM hold WHERE id = %s", (shelf["hold"],)).fetchone()["status"] == "on_shelf"


def test_console_administration(staff_client: TestClient, seeded: psycopg.Connection, shelf: dict[str, int]) -> None:
    csrf = console_login(staff_client, "admin")
    r = staff_client.post("/admin/lockers", data={"csrf_token": csrf, "code": "west", "name": "西口ロッカー",
                                                  "branch": "main", "count": "4", "prefix": "W"},
                          follow_redirects=False)
    assert r.status_code == 303
    bank_id = int(r.headers["location"].split("/")[3].split("?")[0])
    assert [c.label for c in lockers.get_bank(seeded, bank_id).compartments] == ["W1", "W2", "W3", "W4"]
    r = staff_client.post("/admin/lockers", data={"csrf_token": csrf, "code": "w2", "name": "x", "branch": "main",
                                                  "labels": "1, 1"})
    assert r.status_code == 422 and "「1」" in r.text
    r = staff_client.post(f"/admin/lockers/{bank_id}/compartments",
                          data={"csrf_token": csrf, "labels": "W9 W10"}, follow_redirects=False)
    assert r.status_code == 303
    w1 = compartments(seeded, bank_id)["W1"]
    r = staff_client.post(f"/admin/lockers/{bank_id}/compartments/{w1}/service",
                          data={"csrf_token": csrf, "out_of_service": "1"}, follow_redirects=False)
    assert r.status_code == 303
    page = staff_client.get(f"/admin/lockers/{bank_id}")
    assert page.status_code == 200 and "W10" in page.text and "使用を再開" in page.text
    assert seeded.execute("SELECT out_of_service FROM locker_compartment WHERE id = %s", (w1,)).fetchone()[
        "out_of_service"] is True
    other_comp = compartments(seeded, shelf["bank"])["1"]
    r = staff_client.post(f"/admin/lockers/{bank_id}/compartments/{other_comp}/service",
                          data={"csrf_token": csrf, "out_of_service": "1"})
    assert r.status_code == 422
