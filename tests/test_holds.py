"""Holds (予約) through the API and the check-in that traps them: queue order, transit, the hold shelf,
cancellation and expiry handing the copy on at once, suspension, series order, and races."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api import db
from api.audit import Actor
from api.circulation import service as circulation
from api.errors import ShokaError
from api.holds import service as holds
from tests.conftest import token_for
from tests.test_circulation import add_patron

TODAY = date.today()


def add_title(conn: psycopg.Connection, key: str, copies: list[tuple[str, str]], title: str = "火花") -> int:
    rid = conn.execute("INSERT INTO bib_record (source, control_number, title, data) VALUES ('T', %s, %s, %s) "
                       "RETURNING id", (key, title, Jsonb({"title": title}))).fetchone()["id"]
    for barcode, branch in copies:
        conn.execute("""INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type)
                        SELECT %s, %s, id, id, 'book' FROM branch WHERE code = %s""", (rid, barcode, branch))
    return int(rid)


@pytest.fixture
def library(seeded: psycopg.Connection) -> dict[str, int]:
    with seeded.transaction():
        for card in ("P1", "P2", "P3", "P4"):
            add_patron(seeded, card)
        ids = {
            "hibana": add_title(seeded, "1", [("H1", "main")], "火花"),
            "two": add_title(seeded, "2", [("M1", "main"), ("E1", "east")], "二冊の本"),
        }
    return ids


@pytest.fixture
def counter(staff_client: TestClient, library: dict[str, int]) -> dict[str, str]:
    return token_for(staff_client, "counter")


def place(client: TestClient, headers: dict[str, str], card: str, record_id: int, pickup: str = "main"):
    return client.post("/api/v1/holds", headers=headers, json={"patron": card, "record_id": record_id,
                                                              "pickup_branch": pickup})


def lend(client: TestClient, headers: dict[str, str], card: str, item: str, branch: str = "main"):
    return client.post("/api/v1/circulation/checkout", headers=headers,
                       json={"patron": card, "item": item, "branch": branch})


def give_back(client: TestClient, headers: dict[str, str], item: str, branch: str = "main") -> dict:
    resp = client.post("/api/v1/circulation/checkin", headers=headers, json={"item": item, "branch": branch})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_queue_order_trap_on_shelf_and_collect(staff_client: TestClient, counter: dict[str, str],
                                               library: dict[str, int], seeded: psycopg.Connection) -> None:
    assert lend(staff_client, counter, "P1", "H1").status_code == 201
    first = place(staff_client, counter, "P2", library["hibana"])
    assert first.status_code == 201 and first.json() == {"id": first.json()["id"], "status": "placed", "position": 1}
    second = place(staff_client, counter, "P3", library["hibana"]).json()
    assert second["position"] == 2
    # The holder of the copy cannot renew while others wait.
    r = staff_client.post("/api/v1/circulation/renew", headers=counter, json={"item": "H1"})
    assert r.json()["error"]["code"] == "renewal_refused" and "予約" in r.json()["error"]["message"]
    back = give_back(staff_client, counter, "H1")
    assert back["hold"] == {"id": first.json()["id"], "pickup_branch": "main", "status": "on_shelf"}
    assert back["status"] == "on_hold_shelf"
    hold = seeded.execute("SELECT status, pickup_deadline FROM hold WHERE id = %s", (first.json()["id"],)).fetchone()
    assert hold["status"] == "on_shelf" and hold["pickup_deadline"] == TODAY + timedelta(days=7)
    notice = seeded.execute("SELECT kind, patron_id, data FROM notice").fetchone()
    assert notice["kind"] == "hold_ready" and notice["data"]["title"] == "火花"
    # Only the patron it waits for may borrow it.
    r = lend(staff_client, counter, "P3", "H1")
    assert r.status_code == 409 and r.json()["error"]["code"] == "hold_waiting"
    r = lend(staff_client, counter, "P2", "H1")
    assert r.status_code == 201
    assert seeded.execute("SELECT status FROM hold WHERE id = %s", (first.json()["id"],)).fetchone()["status"] == \
        "collected"
    listing = staff_client.get("/api/v1/holds", headers=counter, params={"patron": "P3"}).json()["holds"]
    assert [(h["id"], h["position"], h["status"]) for h in listing] == [(second["id"], 1, "placed")]


def test_refusals(staff_client: TestClient, counter: dict[str, str], library: dict[str, int],
                  seeded: psycopg.Connection) -> None:
    lend(staff_client, counter, "P1", "H1")
    cases = [
        ("P1", library["hibana"], "main", 409, "already_on_loan"),
        ("NOPE", library["hibana"], "main", 404, "unknown_patron"),
        ("P2", 999999, "main", 422, "validation_error"),
        ("P2", library["hibana"], "nowhere", 422, "validation_error"),
    ]
    with seeded.transaction():
        seeded.execute("UPDATE branch SET takes_holds = false WHERE code = 'east'")
        empty = add_title(seeded, "9", [], "所蔵なし")
    cases += [("P2", library["hibana"], "east", 422, "pickup_branch_not_allowed"),
              ("P2", empty, "main", 409, "not_holdable")]
    for card, rid, pickup, status, code in cases:
        r = place(staff_client, counter, card, rid, pickup)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (card, rid, pickup, r.text)
    assert place(staff_client, counter, "P2", library["hibana"]).status_code == 201
    r = place(staff_client, counter, "P2", library["hibana"])
    assert r.json()["error"]["code"] == "hold_exists"
    with seeded.transaction():
        seeded.execute("UPDATE loan_rule SET max_holds = 1")
    r = place(staff_client, counter, "P2", library["two"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "hold_limit_reached")
    assert seeded.execute("SELECT count(*) AS n FROM hold").fetchone()["n"] == 1


def test_transit_to_the_pickup_branch_then_shelf(staff_client: TestClient, counter: dict[str, str],
                                                 library: dict[str, int], seeded: psycopg.Connection) -> None:
    lend(staff_client, counter, "P1", "H1")
    hid = place(staff_client, counter, "P2", library["hibana"], "east").json()["id"]
    back = give_back(staff_client, counter, "H1")  # returned at main, wanted at east
    assert back["hold"] == {"id": hid, "pickup_branch": "east", "status": "in_transit"}
    assert back["status"] == "in_transit"
    assert lend(staff_client, counter, "P3", "H1").json()["error"]["code"] == "item_in_transit"
    arrived = give_back(staff_client, counter, "H1", "east")
    assert arrived["transit_received"] and arrived["hold"]["status"] == "on_shelf" and arrived["status"] == \
        "on_hold_shelf"
    row = seeded.execute("SELECT status, pickup_deadline FROM hold WHERE id = %s", (hid,)).fetchone()
    assert row["status"] == "on_shelf" and row["pickup_deadline"] is not None


def test_cancel_on_the_shelf_hands_the_copy_on_at_once(staff_client: TestClient, counter: dict[str, str],
                                                      library: dict[str, int], seeded: psycopg.Connection) -> None:
    lend(staff_client, counter, "P1", "H1")
    a = place(staff_client, counter, "P2", library["hibana"]).json()["id"]
    b = place(staff_client, counter, "P3", library["hibana"]).json()["id"]
    give_back(staff_client, counter, "H1")
    assert staff_client.delete(f"/api/v1/holds/{a}", headers=counter).status_code == 204
    statuses = {r["id"]: r["status"] for r in seeded.execute("SELECT id, status FROM hold").fetchall()}
    assert statuses == {a: "cancelled", b: "on_shelf"}
    assert seeded.execute("SELECT count(*) AS n FROM notice WHERE kind = 'hold_ready'").fetchone()["n"] == 2
    # The last hold cancelled: the copy goes back to the shelf.
    staff_client.delete(f"/api/v1/holds/{b}", headers=counter)
    assert seeded.execute("SELECT status FROM item WHERE barcode = 'H1'").fetchone()["status"] == "available"
    assert staff_client.delete(f"/api/v1/holds/{b}", headers=counter).json()["error"]["code"] == "hold_not_active"


def test_uncollected_holds_expire_and_the_next_patron_is_served(staff_client: TestClient, counter: dict[str, str],
                                                               library: dict[str, int],
                                                               seeded: psycopg.Connection) -> None:
    lend(staff_client, counter, "P1", "H1")
    a = place(staff_client, counter, "P2", library["hibana"]).json()["id"]
    b = place(staff_client, counter, "P3", library["hibana"]).json()["id"]
    give_back(staff_client, counter, "H1")
    assert holds.expire_uncollected(seeded, Actor.cli(), TODAY + timedelta(days=7)) == 0
    assert holds.expire_uncollected(seeded, Actor.cli(), TODAY + timedelta(days=8)) == 1
    rows = {r["id"]: r["status"] for r in seeded.execute("SELECT id, status FROM hold").fetchall()}
    assert rows == {a: "expired", b: "on_shelf"}


def test_suspended_holds_keep_their_place_but_are_skipped(staff_client: TestClient, counter: dict[str, str],
                                                         library: dict[str, int], seeded: psycopg.Connection) -> None:
    lend(staff_client, counter, "P1", "H1")
    a = place(staff_client, counter, "P2", library["hibana"]).json()["id"]
    b = place(staff_client, counter, "P3", library["hibana"]).json()["id"]
    r = staff_client.patch(f"/api/v1/holds/{a}", headers=counter,
                           json={"suspended_until": (TODAY + timedelta(days=10)).isoformat()})
    assert r.status_code == 200 and r.json()["position"] == 1
    assert give_back(staff_client, counter, "H1")["hold"]["id"] == b
    staff_client.patch(f"/api/v1/holds/{a}", headers=counter, json={"resume": True})
    r = staff_client.patch(f"/api/v1/holds/{b}", headers=counter, json={"pickup_branch": "east"})
    assert r.json()["error"]["code"] == "hold_not_changeable"


def test_returned_where_another_copy_waits_spares_a_transfer(staff_client: TestClient, counter: dict[str, str],
                                                             library: dict[str, int],
                                                             seeded: psycopg.Connection) -> None:
    """Queue: P2 picks up at east, P3 at main. M1 comes back at main while E1 sits on east's shelf:
    P2 will get E1 from east's own shelf, so M1 goes to P3 without travelling."""
    lend(staff_client, counter, "P1", "M1")
    a = place(staff_client, counter, "P2", library["two"], "east").json()["id"]
    b = place(staff_client, counter, "P3", library["two"], "main").json()["id"]
    back = give_back(staff_client, counter, "M1")
    assert back["hold"] == {"id": b, "pickup_branch": "main", "status": "on_shelf"}
    assert seeded.execute("SELECT status FROM hold WHERE id = %s", (a,)).fetchone()["status"] == "placed"


def test_series_holds_are_served_in_volume_order(seeded: psycopg.Connection, library: dict[str, int]) -> None:
    actor = Actor.cli()
    with seeded.transaction():
        vol1 = add_title(seeded, "v1", [("V1", "main")], "三国志 1")
        vol2 = add_title(seeded, "v2", [("V2", "main")], "三国志 2")
    p2 = seeded.execute("SELECT id FROM patron WHERE card = 'P2'").fetchone()["id"]
    h1 = holds.place_hold(seeded, actor, p2, vol1, "main", series_key="sangokushi", series_seq=1)
    h2 = holds.place_hold(seeded, actor, p2, vol2, "main", series_key="sangokushi", series_seq=2)
    circulation.checkout(seeded, actor, "P1", "V1", branch="main")
    circulation.checkout(seeded, actor, "P3", "V2", branch="main")
    # Volume 2 comes back first: it must wait until volume 1 has reached the patron.
    assert circulation.checkin(seeded, actor, "V2", branch="main").hold is None
    assert circulation.checkin(seeded, actor, "V1", branch="main").hold.id == h1.id
    circulation.checkout(seeded, actor, "P2", "V1", branch="main")  # collected
    circulation.checkout(seeded, actor, "P4", "V2", branch="main")
    assert circulation.checkin(seeded, actor, "V2", branch="main").hold.id == h2.id


def test_a_hold_cancelled_while_a_slow_counter_traps_is_never_served(seeded: psycopg.Connection, db_url: str,
                                                                     library: dict[str, int]) -> None:
    actor = Actor.cli()
    circulation.checkout(seeded, actor, "P1", "H1", branch="main")
    p2, p3 = (seeded.execute("SELECT id FROM patron WHERE card = %s", (c,)).fetchone()["id"] for c in ("P2", "P3"))
    first = holds.place_hold(seeded, actor, p2, library["hibana"], "main")
    second = holds.place_hold(seeded, actor, p3, library["hibana"], "main")
    if True:  # the patron cancels while the counter is between reading the queue and taking the hold
        with db.connect(db_url) as patron_conn, db.connect(db_url) as counter_conn:
            patron_conn.execute("BEGIN")
            patron_conn.execute("SELECT * FROM hold WHERE id = %s FOR UPDATE", (first.id,))
            result: dict[str, object] = {}

            def counter_checks_in(conn: psycopg.Connection = counter_conn) -> None:
                try:
                    result["hold"] = circulation.checkin(conn, actor, "H1", branch="main").hold
                except ShokaError as exc:
                    result["error"] = exc.code

            t = threading.Thread(target=counter_checks_in)
            t.start()
            t.join(1.0)
            assert t.is_alive(), "the counter should be waiting for the patron's transaction"
            patron_conn.execute("UPDATE hold SET status = 'cancelled', ended_at = now() WHERE id = %s", (first.id,))
            patron_conn.execute("COMMIT")
            t.join(30)
        assert result["hold"].id == second.id  # type: ignore[union-attr]
        assert seeded.execute("SELECT status FROM hold WHERE id = %s", (first.id,)).fetchone()["status"] == "cancelled"


def test_placing_holds_at_two_places_at_once_respects_the_limit(seeded: psycopg.Connection, db_url: str,
                                                                library: dict[str, int]) -> None:
    with seeded.transaction():
        seeded.execute("UPDATE loan_rule SET max_holds = 2")
        rids = [add_title(seeded, f"c{n}", [(f"C{n}", "main")], f"本{n}") for n in range(6)]
    p2 = seeded.execute("SELECT id FROM patron WHERE card = 'P2'").fetchone()["id"]
    barrier = threading.Barrier(len(rids))
    outcomes: list[str] = []

    def run(rid: int) -> None:
        with db.connect(db_url) as conn:
            barrier.wait()
            try:
                holds.place_hold(conn, Actor.cli(), p2, rid, "main")
                outcomes.append("ok")
            except ShokaError as exc:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=run, args=(rid,)) for rid in rids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["hold_limit_reached"] * 4 + ["ok"] * 2


def test_nightly_expiry_job_runs_through_rq(seeded: psycopg.Connection, library: dict[str, int], redis_url: str,
                                            db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import redis
    from rq import Queue, SimpleWorker

    from workers import jobs

    monkeypatch.setenv("DATABASE_URL", db_url)
    actor = Actor.cli()
    circulation.checkout(seeded, actor, "P1", "H1", branch="main")
    p2 = seeded.execute("SELECT id FROM patron WHERE card = 'P2'").fetchone()["id"]
    hold = holds.place_hold(seeded, actor, p2, library["hibana"], "main")
    circulation.checkin(seeded, actor, "H1", branch="main")
    seeded.execute("UPDATE hold SET pickup_deadline = current_date - 1 WHERE id = %s", (hold.id,))
    queue = Queue("test-expire-" + db_url.rsplit("/", 1)[1], connection=redis.Redis.from_url(redis_url))
    job = queue.enqueue(jobs.expire_holds)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    job.refresh()
    assert job.is_finished and job.return_value() == 1
    assert seeded.execute("SELECT status FROM item WHERE barcode = 'H1'").fetchone()["status"] == "available"


def test_a_copy_pulled_from_the_shelf_traps_at_check_in(staff_client: TestClient, counter: dict[str, str],
                                                        library: dict[str, int], seeded: psycopg.Connection) -> None:
    """The pull list sends staff to the shelf; scanning the copy in at the counter sets it aside."""
    hid = place(staff_client, counter, "P2", library["hibana"]).json()["id"]
    back = give_back(staff_client, counter, "H1")
    assert back["hold"] == {"id": hid, "pickup_branch": "main", "status": "on_shelf"}
    assert back["status"] == "on_hold_shelf" and back["loan_id"] is None
    # Scanned again: nothing more happens.
    again = give_back(staff_client, counter, "H1")
    assert "not_on_loan" in again["alerts"] and again["status"] == "on_hold_shelf"
    # With no hold waiting, an available copy scanned in is just a double scan.
    other = give_back(staff_client, counter, "M1")
    assert other["hold"] is None and "not_on_loan" in other["alerts"] and other["status"] == "available"
