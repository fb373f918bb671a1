"""Purchase requests (リクエスト): the form's validation, the OPAC form through the internal API (service token
and patron session), the staff queue with its decisions (each audited and announced once), arrival placing a
hold queued from the time of the request, the hint that the library already holds the title, permissions,
and no card number or name in any URL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.audit import Actor
from api.auth import service as auth
from api.circulation import service as circulation
from api.config import Settings
from api.errors import ShokaError
from api.holds import service as holds
from api.mylibrary import service as mylibrary
from api.requests import service
from tests.conftest import console_login
from tests.test_circulation import add_patron
from tests.test_holds import add_title

TODAY = date.today()
ACTOR = Actor("counter", "127.0.0.1")
TOKEN = "test-service-token-0123456789"
PATRON_PASSWORD = "patron-password-1"
HIBANA = "9784163902302"      # 火花 (文藝春秋): ISBN-13 check digit 2, ISBN-10 4-16-390230-9 (hand-computed)


# -- pure: the form ----------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", ["978-4-16-390230-2", "9784163902302", "4-16-390230-9", "4163902309",
                                   "９７８－４－１６－３９０２３０－２", "978 4 16 390230 2", "978ー4ー16ー390230ー2",
                                   " 978‐4‐16‐390230‐2 "])
def test_isbn_forms_normalise_to_isbn13(typed: str) -> None:
    assert service.clean_isbn(typed) == HIBANA


def test_isbn10_with_x_check_digit() -> None:
    # 0-8044-2957-X (the check digit 10 written X); its ISBN-13 check digit is 3.
    assert service.clean_isbn("0-8044-2957-X") == service.clean_isbn("080442957x") == "9780804429573"
    assert service.clean_isbn("") is None and service.clean_isbn("  ") is None and service.clean_isbn(None) is None


@pytest.mark.parametrize("typed", ["978-4-16-390230-3", "4-16-390230-8", "12345", "ISBN", "97841639023021",
                                   "1920193016001"])
def test_bad_isbns_name_field_and_value(typed: str) -> None:
    with pytest.raises(ShokaError) as err:
        service.clean_isbn(typed)
    assert (err.value.code, err.value.status, err.value.field) == ("validation_error", 422, "isbn")
    assert err.value.message_ja.startswith(f"isbn: 「{typed}」") and repr(typed) in err.value.message_en


def test_book_jan_is_explained() -> None:
    with pytest.raises(ShokaError) as err:
        service.clean_isbn("1920193016001")
    assert "書籍JAN" in err.value.message_ja


def test_clean_request() -> None:
    form = service.clean_request(title="  火花 ", pickup_branch="main", author="又吉　直樹", publisher="",
                                 isbn="4163902309", note="  児童書コーナーにも\nお願いします ")
    assert form == service.RequestForm("火花", "main", "又吉 直樹", None, HIBANA, "児童書コーナーにも\nお願いします")
    assert service.clean_request(title="ＳＦマガジン", pickup_branch="east").title == "SFマガジン"
    cases = [({"title": "", "pickup_branch": "main"}, "title", "「」"),
             ({"title": "　", "pickup_branch": "main"}, "title", "「　」"),
             ({"title": "本", "pickup_branch": ""}, "pickup_branch", "「」"),
             ({"title": "x" * 501, "pickup_branch": "main"}, "title", "500"),
             ({"title": "本", "pickup_branch": "main", "author": "a" * 201}, "author", "200"),
             ({"title": "本", "pickup_branch": "main", "note": "n" * 1001}, "note", "1000"),
             ({"title": "本", "pickup_branch": "main", "isbn": "978"}, "isbn", "「978」")]
    for kwargs, field, shown in cases:
        with pytest.raises(ShokaError) as err:
            service.clean_request(**kwargs)  # type: ignore[arg-type]
        assert err.value.field == field and err.value.message_ja.startswith(f"{field}: ")
        assert shown in err.value.message_ja, (kwargs, err.value.message_ja)
    assert len(service.clean_request(title="x" * 500, pickup_branch="main").title) == 500


def test_every_state_change() -> None:
    """All 36 pairs: the allowed moves, written out by hand; everything else is refused with 409."""
    allowed = {("received", "ordering"), ("received", "borrowing"), ("received", "declined"),
               ("received", "cancelled"), ("received", "arrived"),
               ("ordering", "borrowing"), ("ordering", "declined"), ("ordering", "cancelled"), ("ordering", "arrived"),
               ("borrowing", "ordering"), ("borrowing", "declined"), ("borrowing", "cancelled"),
               ("borrowing", "arrived")}
    for current, new in itertools.product(service.STATUSES, repeat=2):
        problem = service.transition_refusal(current, new)
        if (current, new) in allowed:
            assert problem is None, (current, new)
        else:
            assert problem is not None and (problem.code, problem.status) == ("request_transition_refused", 409)
    assert service.transition_refusal("received", "lost").code == "validation_error"  # type: ignore[union-attr]


# -- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture
def patrons(seeded: psycopg.Connection) -> dict[str, int]:
    with seeded.transaction():
        ids = {card: add_patron(seeded, card) for card in ("P1", "P2", "P3", "P4")}
    for pid in ids.values():
        mylibrary.set_password(seeded, ACTOR, pid, PATRON_PASSWORD)
    return ids


@pytest.fixture
def internal(seeded: psycopg.Connection, patrons: dict[str, int], settings: Settings, db_url: str,
             redis_url: str) -> Iterator[TestClient]:
    """The staff app (which serves the internal API) with a service token configured."""
    from api.app import create_staff_app

    app = create_staff_app(replace(settings, service_token=TOKEN), db_url, redis_url)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def session_for(client: TestClient, card: str) -> str:
    resp = client.post("/internal/v1/login", headers={"X-Shoka-Service-Token": TOKEN},
                       json={"card": card, "password": PATRON_PASSWORD})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["session"])


def headers(session: str) -> dict[str, str]:
    return {"X-Shoka-Service-Token": TOKEN, "X-Shoka-Patron-Session": session}


def submit(conn: psycopg.Connection, patron_id: int, title: str, isbn: str | None = None,
           pickup: str = "main") -> int:
    return service.submit_request(conn, Actor("patron:x", "127.0.0.1"), patron_id,
                                  service.clean_request(title=title, pickup_branch=pickup, isbn=isbn))


# -- the internal API (the OPAC's channel) --------------------------------------------------------------

def test_internal_api_submit_and_list(internal: TestClient, seeded: psycopg.Connection,
                                      patrons: dict[str, int]) -> None:
    mine = headers(session_for(internal, "P2"))
    body = {"title": "火花", "author": "又吉直樹", "publisher": "文藝春秋", "isbn": "4-16-390230-9",
            "note": "お願いします", "pickup_branch": "east"}
    resp = internal.post("/internal/v1/requests", headers=mine, json=body)
    assert resp.status_code == 201, resp.text
    assert resp.json() == {"id": resp.json()["id"], "status": "received", "isbn": HIBANA}
    row = seeded.execute("SELECT patron_id, title, isbn, status, b.code FROM purchase_request r "
                         "JOIN branch b ON b.id = r.pickup_branch_id").fetchone()
    assert dict(row) == {"patron_id": patrons["P2"], "title": "火花", "isbn": HIBANA, "status": "received",
                         "code": "east"}
    audit = seeded.execute("SELECT actor, details FROM audit_log WHERE action = 'request.create'").fetchone()
    assert audit["actor"] == "patron:P2" and audit["details"] == {"pickup": "east"}
    listing = internal.get("/internal/v1/requests", headers=mine)
    assert listing.status_code == 200 and listing.headers["cache-control"] == "no-store"
    data = listing.json()
    assert [(r["title"], r["status"], r["pickup_branch"]) for r in data["requests"]] == [("火花", "received", "east")]
    assert {b["code"] for b in data["pickup_branches"]} == {"main", "east"}
    assert "patron_id" not in data["requests"][0] and "decided_by" not in data["requests"][0]
    # Another patron sees only their own, and cannot withdraw someone else's.
    other = headers(session_for(internal, "P3"))
    assert internal.get("/internal/v1/requests", headers=other).json()["requests"] == []
    rid = data["requests"][0]["id"]
    assert internal.delete(f"/internal/v1/requests/{rid}", headers=other).status_code == 404
    assert internal.delete(f"/internal/v1/requests/{rid}", headers=mine).status_code == 204
    assert seeded.execute("SELECT status FROM purchase_request").fetchone()["status"] == "cancelled"


def test_internal_api_refusals(internal: TestClient, seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    mine = headers(session_for(internal, "P2"))
    ok = {"title": "本", "pickup_branch": "main"}
    no_token = internal.post("/internal/v1/requests", headers={"X-Shoka-Patron-Session": mine[
        "X-Shoka-Patron-Session"]}, json=ok)
    assert (no_token.status_code, no_token.json()["error"]["code"]) == (403, "service_forbidden")
    wrong = internal.post("/internal/v1/requests", headers={**mine, "X-Shoka-Service-Token": "nope"}, json=ok)
    assert wrong.status_code == 403
    no_session = internal.post("/internal/v1/requests", headers={"X-Shoka-Service-Token": TOKEN}, json=ok)
    assert (no_session.status_code, no_session.json()["error"]["code"]) == (401, "unauthenticated")
    with seeded.transaction():
        seeded.execute("UPDATE branch SET takes_holds = false WHERE code = 'east'")
    cases = [({"title": "", "pickup_branch": "main"}, 422, "validation_error", "title", "「」"),
             ({"title": "本", "pickup_branch": "main", "isbn": "978-4-16-390230-3"}, 422, "validation_error", "isbn",
              "「978-4-16-390230-3」"),
             ({"title": "本", "pickup_branch": "nowhere"}, 422, "validation_error", "pickup_branch", "「nowhere」"),
             ({"title": "本", "pickup_branch": "east"}, 422, "pickup_branch_not_allowed", "pickup_branch", "「east」")]
    for body, status, code, field, shown in cases:
        r = internal.post("/internal/v1/requests", headers=mine, json=body)
        error = r.json()["error"]
        assert (r.status_code, error["code"], error["field"]) == (status, code, field), r.text
        assert shown in error["message"] and error["message_en"]
    assert internal.post("/internal/v1/requests", headers=mine, json={**ok, "isbn": HIBANA}).status_code == 201
    again = internal.post("/internal/v1/requests", headers=mine, json={"title": "別題", "pickup_branch": "main",
                                                                       "isbn": "4163902309"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "request_exists")
    assert seeded.execute("SELECT count(*) AS n FROM purchase_request").fetchone()["n"] == 1


def test_open_request_limit(seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    with seeded.transaction():
        seeded.execute("INSERT INTO library_setting (key, value) VALUES ('requests.max_open', '2')")
    first = submit(seeded, patrons["P2"], "一")
    submit(seeded, patrons["P2"], "二")
    with pytest.raises(ShokaError) as err:
        submit(seeded, patrons["P2"], "三")
    assert (err.value.code, err.value.status) == ("request_limit_reached", 409) and "2" in err.value.message_ja
    service.decide(seeded, ACTOR, first, "ordering")
    with pytest.raises(ShokaError):
        submit(seeded, patrons["P2"], "三")      # still open while being ordered
    service.decide(seeded, ACTOR, first, "declined", "絶版のため")
    submit(seeded, patrons["P2"], "三")


def test_blocked_patron_cannot_request(seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    with seeded.transaction():
        seeded.execute("UPDATE patron SET expires_on = %s WHERE card = 'P2'", (TODAY - timedelta(days=1),))
    with pytest.raises(ShokaError) as err:
        submit(seeded, patrons["P2"], "本")
    assert err.value.code == "patron_expired"


# -- staff decisions ------------------------------------------------------------------------------------

def notices(conn: psycopg.Connection) -> list[tuple[str, str, str | None]]:
    return [(r["dedupe_key"], r["data"]["decision"], r["data"].get("reason")) for r in conn.execute(
        "SELECT dedupe_key, data FROM notice WHERE kind = 'request_decided' ORDER BY id").fetchall()]


def test_decisions_are_audited_and_announced_once(seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    rid = submit(seeded, patrons["P2"], "火花", HIBANA)
    service.decide(seeded, ACTOR, rid, "ordering")
    service.decide(seeded, ACTOR, rid, "borrowing")
    with pytest.raises(ShokaError) as err:
        service.decide(seeded, ACTOR, rid, "declined")
    assert (err.value.code, err.value.field) == ("validation_error", "reason")
    with pytest.raises(ShokaError) as err:
        service.decide(seeded, ACTOR, rid, "declined", "   ")
    assert err.value.field == "reason"
    service.decide(seeded, ACTOR, rid, "declined", "相互貸借先が見つからないため")
    assert notices(seeded) == [(f"request_decided:{rid}:ordering", "ordering", None),
                               (f"request_decided:{rid}:borrowing", "borrowing", None),
                               (f"request_decided:{rid}:declined", "declined", "相互貸借先が見つからないため")]
    row = seeded.execute("SELECT status, decline_reason, decided_by FROM purchase_request WHERE id = %s",
                         (rid,)).fetchone()
    assert dict(row) == {"status": "declined", "decline_reason": "相互貸借先が見つからないため",
                         "decided_by": "counter"}
    audit = [(r["action"], r["details"]) for r in seeded.execute(
        "SELECT action, details FROM audit_log WHERE subject_type = 'purchase_request' AND action <> 'request.create' "
        "ORDER BY id").fetchall()]
    assert audit == [("request.ordering", {"status": "ordering", "was": "received"}),
                     ("request.borrowing", {"status": "borrowing", "was": "ordering"}),
                     ("request.declined", {"status": "declined", "was": "borrowing",
                                           "reason": "相互貸借先が見つからないため"})]
    # Declined is final: nothing moves it, and no notice or audit row is added.
    for status in ("ordering", "cancelled"):
        with pytest.raises(ShokaError) as err:
            service.decide(seeded, ACTOR, rid, status)
        assert err.value.code == "request_transition_refused"
    with pytest.raises(ShokaError) as err:
        service.decide(seeded, ACTOR, rid, "arrived")
    assert err.value.field == "status"
    assert len(notices(seeded)) == 3
    # A cancellation is audited; the patron asked for it, so no mail.
    other = submit(seeded, patrons["P3"], "別の本")
    service.decide(seeded, ACTOR, other, "cancelled")
    assert len(notices(seeded)) == 3
    assert seeded.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'request.cancelled'").fetchone()["n"] == 1


def test_patron_cannot_cancel_once_staff_acted(seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    rid = submit(seeded, patrons["P2"], "本")
    service.decide(seeded, ACTOR, rid, "ordering")
    with pytest.raises(ShokaError) as err:
        service.cancel_own(seeded, ACTOR, rid, patrons["P2"])
    assert err.value.code == "request_not_cancellable"


def test_arrival_places_a_hold_queued_from_the_request(seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    """P3 reserved the title 10 days ago, P2 asked for it 5 days ago, P4 reserved it yesterday: the requester
    comes second, before P4."""
    with seeded.transaction():
        rid_record = add_title(seeded, "h1", [("H1", "main")], "火花")
    circulation.checkout(seeded, ACTOR, "P1", "H1", branch="main")
    p3 = holds.place_hold(seeded, ACTOR, patrons["P3"], rid_record, "main").id
    rid = submit(seeded, patrons["P2"], "火花", HIBANA, pickup="east")
    p4 = holds.place_hold(seeded, ACTOR, patrons["P4"], rid_record, "main").id
    now = datetime.now().astimezone()
    with seeded.transaction():
        seeded.execute("UPDATE hold SET placed_at = %s WHERE id = %s", (now - timedelta(days=10), p3))
        seeded.execute("UPDATE purchase_request SET created_at = %s WHERE id = %s", (now - timedelta(days=5), rid))
        seeded.execute("UPDATE hold SET placed_at = %s WHERE id = %s", (now - timedelta(days=1), p4))
    service.decide(seeded, ACTOR, rid, "ordering")
    arrived = service.mark_arrived(seeded, ACTOR, rid, rid_record)
    assert arrived.position == 2 and not arrived.linked_existing
    hold = seeded.execute("SELECT patron_id, record_id, status, request_id, placed_by, b.code AS pickup "
                          "FROM hold h JOIN branch b ON b.id = h.pickup_branch_id WHERE h.id = %s",
                          (arrived.hold_id,)).fetchone()
    assert dict(hold) == {"patron_id": patrons["P2"], "record_id": rid_record, "status": "placed", "request_id": rid,
                          "placed_by": "counter", "pickup": "east"}
    assert [holds.position(seeded, h) for h in (p3, arrived.hold_id, p4)] == [1, 2, 3]
    row = seeded.execute("SELECT status, record_id, hold_id FROM purchase_request WHERE id = %s", (rid,)).fetchone()
    assert dict(row) == {"status": "arrived", "record_id": rid_record, "hold_id": arrived.hold_id}
    assert notices(seeded)[-1] == (f"request_decided:{rid}:arrived", "arrived", None)
    audit = seeded.execute("SELECT details FROM audit_log WHERE action = 'request.arrived'").fetchone()["details"]
    assert audit == {"record_id": rid_record, "hold_id": arrived.hold_id, "was": "ordering",
                     "linked_existing": False}
    # Served in that order at check-in: P3 first, then the requester.
    assert circulation.checkin(seeded, ACTOR, "H1", branch="main").hold.id == p3  # type: ignore[union-attr]
    with pytest.raises(ShokaError) as err:
        service.mark_arrived(seeded, ACTOR, rid, rid_record)
    assert err.value.code == "request_transition_refused"


def test_arrival_of_a_title_without_copies_yet_and_an_existing_hold(seeded: psycopg.Connection,
                                                                    patrons: dict[str, int]) -> None:
    with seeded.transaction():
        new_record = add_title(seeded, "n1", [], "届いたばかりの本")   # catalogued, not yet processed
    rid = submit(seeded, patrons["P2"], "届いたばかりの本")
    arrived = service.mark_arrived(seeded, ACTOR, rid, new_record)
    assert arrived.position == 1
    # The patron had reserved the new title themselves before staff linked the request: that hold is used.
    with seeded.transaction():
        other_record = add_title(seeded, "n2", [("N2", "main")], "もう一冊")
    own = holds.place_hold(seeded, ACTOR, patrons["P3"], other_record, "main").id
    rid2 = submit(seeded, patrons["P3"], "もう一冊")
    again = service.mark_arrived(seeded, ACTOR, rid2, other_record)
    assert (again.hold_id, again.linked_existing) == (own, True)
    assert seeded.execute("SELECT request_id FROM hold WHERE id = %s", (own,)).fetchone()["request_id"] == rid2
    rid3 = submit(seeded, patrons["P4"], "存在しない書誌")
    with pytest.raises(ShokaError) as err:
        service.mark_arrived(seeded, ACTOR, rid3, 999999)
    assert (err.value.field, err.value.status) == ("record_id", 422)
    assert seeded.execute("SELECT status FROM purchase_request WHERE id = %s", (rid3,)).fetchone()["status"] == \
        "received"


def test_already_held_hint(seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    with seeded.transaction():
        held = seeded.execute("INSERT INTO bib_record (source, control_number, title, isbns, data) VALUES "
                              "('T', 'x1', '火花', %s, %s) RETURNING id",
                              ([HIBANA], Jsonb({"title": "火花"}))).fetchone()["id"]
    dup = submit(seeded, patrons["P2"], "火花", "4-16-390230-9")
    fresh = submit(seeded, patrons["P3"], "ほかの本", "0-8044-2957-X")
    no_isbn = submit(seeded, patrons["P4"], "ISBNなし")
    rows = {r["id"]: r["held"] for r in service.list_requests(seeded)}
    assert rows == {dup: [{"id": held, "title": "火花"}], fresh: [], no_isbn: []}
    assert service.get_request(seeded, dup)["held"] == [{"id": held, "title": "火花"}]
    service.mark_arrived(seeded, ACTOR, dup, held)
    assert [r["id"] for r in service.list_requests(seeded)] == [fresh, no_isbn]
    assert service.list_requests(seeded, status="arrived")[0]["held"] == []  # arrived: no hint needed
    assert len(service.list_requests(seeded, status=None)) == 3
    with pytest.raises(ShokaError) as err:
        service.list_requests(seeded, status="lost")
    assert err.value.field == "status"


# -- the staff console ---------------------------------------------------------------------------------

HREF = re.compile(r'(?:href|action)="([^"]*)"')


def test_console_queue_and_decisions(staff_client: TestClient, seeded: psycopg.Connection,
                                     patrons: dict[str, int]) -> None:
    with seeded.transaction():
        seeded.execute("INSERT INTO bib_record (source, control_number, title, isbns, data) VALUES "
                       "('T', 'x1', '火花', %s, %s)", ([HIBANA], Jsonb({"title": "火花"})))
    rid = submit(seeded, patrons["P2"], "火花", HIBANA)
    csrf = console_login(staff_client, "counter")
    page = staff_client.get("/requests")
    assert page.status_code == 200 and "火花" in page.text and "所蔵あり" in page.text
    assert "Already held" in staff_client.get("/requests?lang=en").text
    staff_client.get("/requests?lang=ja")
    detail = staff_client.get(f"/requests/{rid}")
    assert detail.status_code == 200 and "既に所蔵しています" in detail.text
    # No card number or name anywhere on the pages, nor in any link.
    for text in (page.text, detail.text):
        assert "P2" not in text and "図書 太郎" not in text
        assert all("P2" not in link for link in HREF.findall(text))
    r = staff_client.post(f"/requests/{rid}/status", data={"csrf_token": csrf, "status": "declined", "reason": ""})
    assert r.status_code == 422 and "reason" in r.text
    r = staff_client.post(f"/requests/{rid}/status", data={"csrf_token": csrf, "status": "ordering"},
                          follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/requests/{rid}?done=saved"
    with seeded.transaction():
        record_id = add_title(seeded, "h9", [], "火花 新装版")
    r = staff_client.post(f"/requests/{rid}/arrived", data={"csrf_token": csrf, "record_id": "abc"})
    assert r.status_code == 422 and "「abc」" in r.text
    r = staff_client.post(f"/requests/{rid}/arrived", data={"csrf_token": csrf, "record_id": str(record_id)})
    assert r.status_code == 200 and "順位 1" in r.text
    assert seeded.execute("SELECT status FROM purchase_request WHERE id = %s", (rid,)).fetchone()["status"] == \
        "arrived"
    assert staff_client.get("/requests?status=arrived").text.count(f'id="request-{rid}"') == 1
    assert staff_client.get("/requests?status=lost").status_code == 422


def test_console_permissions(staff_client: TestClient, seeded: psycopg.Connection, patrons: dict[str, int]) -> None:
    rid = submit(seeded, patrons["P2"], "本")
    # The built-in cataloguer role has no patrons:view.
    auth.create_account(seeded, Actor.cli(), "cat", "cataloguer-password-1", display_name="整理",
                        roles=["cataloguer"], branch="main")
    assert staff_client.get("/requests", follow_redirects=False).status_code == 303   # not signed in
    console_login(staff_client, "cat", "cataloguer-password-1")
    assert staff_client.get("/requests").status_code == 403
    assert staff_client.get(f"/requests/{rid}").status_code == 403
    staff_client.cookies.clear()
    csrf = console_login(staff_client, "viewer")   # patrons:view, no circulation:update
    assert staff_client.get("/requests").status_code == 200
    detail = staff_client.get(f"/requests/{rid}")
    assert detail.status_code == 200 and f'action="/requests/{rid}/status"' not in detail.text
    r = staff_client.post(f"/requests/{rid}/status", data={"csrf_token": csrf, "status": "ordering"})
    assert r.status_code == 403
    r = staff_client.post(f"/requests/{rid}/arrived", data={"csrf_token": csrf, "record_id": "1"})
    assert r.status_code == 403
    staff_client.cookies.clear()
    console_login(staff_client, "counter")
    r = staff_client.post(f"/requests/{rid}/status", data={"status": "ordering"})  # no CSRF token
    assert r.status_code == 403
    assert seeded.execute("SELECT status FROM purchase_request").fetchone()["status"] == "received"


# -- the OPAC form, end to end through the internal API -----------------------------------------------------

@pytest.fixture
def opac(internal: TestClient, opac_client: TestClient) -> TestClient:
    """The OPAC app talking to the staff app's internal API in-process."""
    from opac.internal import InternalAPI

    opac_client.app.state.internal_api = InternalAPI(  # type: ignore[attr-defined]
        "http://testserver", TOKEN, transport=internal._transport)
    return opac_client


def test_opac_form(opac: TestClient, internal: TestClient, seeded: psycopg.Connection,
                   patrons: dict[str, int]) -> None:
    from opac.internal import SESSION_COOKIE

    anonymous = opac.get("/mylibrary/requests", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/mylibrary/login")
    opac.cookies.set(SESSION_COOKIE, session_for(internal, "P2"))
    page = opac.get("/mylibrary/requests")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert 'name="title"' in page.text and "リクエストはありません" in page.text
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    bad = opac.post("/mylibrary/requests", data={"csrf_token": csrf, "title": "火花", "isbn": "978-4-16-390230-3",
                                                 "pickup_branch": "main"})
    assert bad.status_code == 422 and "isbn: 「978-4-16-390230-3」" in bad.text
    assert 'value="火花"' in bad.text      # what was typed is kept
    done = opac.post("/mylibrary/requests", data={"csrf_token": csrf, "title": "火花", "author": "又吉直樹",
                                                  "isbn": "9784163902302", "pickup_branch": "main"},
                     follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/mylibrary/requests?msg=request_sent"
    page = opac.get(done.headers["location"])
    assert "リクエストを受け付けました" in page.text and "火花" in page.text and "受付" in page.text
    rid = seeded.execute("SELECT id FROM purchase_request").fetchone()["id"]
    service.decide(seeded, ACTOR, rid, "declined", "品切れのため")
    page = opac.get("/mylibrary/requests")
    assert "ご提供できません" in page.text and "品切れのため" in page.text
    english = opac.get("/mylibrary/requests?lang=en")
    assert "Cannot be provided" in english.text and "Send the request" in english.text
    # No card number, name or typed title in any URL the OPAC produced.
    for link in [*HREF.findall(page.text), done.headers["location"]]:
        assert "P2" not in link and "図書" not in link and "火花" not in link
    forged = opac.post("/mylibrary/requests", data={"csrf_token": "forged", "title": "x", "pickup_branch": "main"})
    assert forged.status_code == 403
    assert seeded.execute("SELECT count(*) AS n FROM purchase_request").fetchone()["n"] == 1


def test_opac_cancel(opac: TestClient, internal: TestClient, seeded: psycopg.Connection,
                     patrons: dict[str, int]) -> None:
    from opac.internal import SESSION_COOKIE

    rid = submit(seeded, patrons["P2"], "取り消す本")
    opac.cookies.set(SESSION_COOKIE, session_for(internal, "P2"))
    page = opac.get("/mylibrary/requests")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert f'action="/mylibrary/requests/{rid}/cancel"' in page.text
    r = opac.post(f"/mylibrary/requests/{rid}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/mylibrary/requests?msg=request_cancelled"
    assert seeded.execute("SELECT status FROM purchase_request").fetchone()["status"] == "cancelled"
