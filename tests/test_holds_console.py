"""The holds screens of the staff console (予約): holds on a title, the pull list, the hold shelf, expired holds
and transfers, on data made through the holds and circulation services; the pull list's allocation (pure)."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.audit import Actor
from api.circulation import service as circulation
from api.holds import service as holds
from staff.holds import ShelfCopy, WaitingHold, allocate, pull_list
from tests.conftest import console_login
from tests.test_circulation import add_patron

TODAY = date.today()
ACTOR = Actor.cli()
NAME = "図書 太郎"          # every patron add_patron makes has this name: it must appear on no page
READING = "トショ タロウ"


# -- allocate (pure) --------------------------------------------------------------------------------------

A, B, C = 1, 2, 3  # branch ids


def hold(n: int, pickup: int, record: int = 1, item: int | None = None) -> WaitingHold:
    return WaitingHold(n, record, pickup, item)


def copy(n: int, branch: int, record: int = 1) -> ShelfCopy:
    return ShelfCopy(n, record, branch)


@pytest.mark.parametrize(("queue", "copies", "expected"), [
    # Each hold takes a copy from its own pickup branch, whatever the queue order.
    ([hold(1, B), hold(2, A)], [copy(10, A), copy(20, B)], {10: 2, 20: 1}),
    # Two holds at A, copies at A and B: the second needs a transfer from B.
    ([hold(1, A), hold(2, A)], [copy(10, A), copy(20, B)], {10: 1, 20: 2}),
    # No copy at A: the branch with the most copies left sends one (its first in shelf order).
    ([hold(1, A)], [copy(20, B), copy(30, C), copy(31, C)], {30: 1}),
    # The first hold (A, no copy there) is served before a later hold at B takes B's copy: queue order wins.
    ([hold(1, A), hold(2, B)], [copy(20, B)], {20: 1}),
    # A remote hold takes what no served local hold needs: C's copy, not B's (which hold 2 takes in place).
    ([hold(1, A), hold(2, B)], [copy(20, B), copy(30, C)], {20: 2, 30: 1}),
    # More copies than holds: only the first copy in shelf order is pulled.
    ([hold(1, A)], [copy(11, A), copy(10, A)], {11: 1}),
    # An item-level hold is filled by its own copy only; the title-level hold after it by another.
    ([hold(1, A, item=20), hold(2, A)], [copy(10, A), copy(20, B)], {20: 1, 10: 2}),
    ([hold(1, A, item=99), hold(2, A)], [copy(10, A)], {10: 2}),
    # Titles are independent.
    ([hold(1, A, record=1), hold(2, A, record=2)], [copy(10, A, record=2)], {10: 2}),
    ([], [copy(10, A)], {}),
    ([hold(1, A)], [], {}),
])
def test_allocate_examples(queue: list[WaitingHold], copies: list[ShelfCopy], expected: dict[int, int]) -> None:
    assert allocate(queue, copies) == expected


def test_allocate_serves_the_queue_in_order_with_the_fewest_transfers() -> None:
    """Every queue of up to four title-level holds over three branches × every stock of 0-2 copies per branch:
    the first min(holds, copies) holds are served, each copy once, and the transfers are the fewest possible
    for serving those holds: served - Σ_branch min(served holds picking up there, copies there)."""
    cases = 0
    for n in range(5):
        for pickups in itertools.product((A, B, C), repeat=n):
            queue = [hold(i + 1, p) for i, p in enumerate(pickups)]
            for stock in itertools.product(range(3), repeat=3):
                copies = [copy(100 * b + k, b) for b, count in zip((A, B, C), stock, strict=True)
                          for k in range(count)]
                got = allocate(queue, copies)
                served = min(n, len(copies))
                assert sorted(got.values()) == list(range(1, served + 1)), (pickups, stock, got)
                assert set(got) <= {c.id for c in copies}
                branch_of = {c.id: c.branch_id for c in copies}
                transfers = sum(1 for c, h in got.items() if branch_of[c] != pickups[h - 1])
                demand = [pickups[:served].count(b) for b in (A, B, C)]
                fewest = served - sum(min(d, s) for d, s in zip(demand, stock, strict=True))
                assert transfers == fewest, (pickups, stock, got)
                cases += 1
    assert cases == sum(3 ** n for n in range(5)) * 27


# -- fixtures ------------------------------------------------------------------------------------------------

def add_title(conn: psycopg.Connection, key: str, title: str, copies: list[tuple[str, str, str, str | None]]) -> int:
    """A record with copies (barcode, branch, call number, location code or None)."""
    rid = conn.execute("INSERT INTO bib_record (source, control_number, title, data) VALUES ('T', %s, %s, %s) "
                       "RETURNING id", (key, title, Jsonb({"title": title}))).fetchone()["id"]
    for barcode, branch, call_number, location in copies:
        conn.execute(
            """INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number, location_id)
               SELECT %s, %s, b.id, b.id, 'book', %s, (SELECT l.id FROM location l WHERE l.branch_id = b.id
                                                       AND l.code = %s)
               FROM branch b WHERE b.code = %s""", (rid, barcode, call_number, location, branch))
    return int(rid)


def patron_id(conn: psycopg.Connection, card: str) -> int:
    return int(conn.execute("SELECT id FROM patron WHERE card = %s", (card,)).fetchone()["id"])


def place(conn: psycopg.Connection, card: str, record_id: int, pickup: str = "main", **kw: object) -> int:
    return holds.place_hold(conn, ACTOR, patron_id(conn, card), record_id, pickup, **kw).id  # type: ignore[arg-type]


@pytest.fixture
def lib(seeded: psycopg.Connection) -> dict[str, int]:
    """Titles and holds for the pull list at main (and east); see test_pull_list_is_exactly_the_copies_to_fetch."""
    conn = seeded
    with conn.transaction():
        conn.execute("INSERT INTO location (branch_id, code, name, name_en) SELECT id, 'a-general', '一般書架', "
                     "'General shelves' FROM branch WHERE code = 'main'")
        conn.execute("INSERT INTO location (branch_id, code, name, name_en) SELECT id, 'b-children', '児童書架', "
                     "'Children' FROM branch WHERE code = 'main'")
        for n in range(1, 9):
            add_patron(conn, f"P{n}")
        ids = {
            # two copies at main: the one on the general shelves comes first in shelf order
            "hibana": add_title(conn, "1", "火花", [("H1", "main", "913.6/マ", "b-children"),
                                                  ("H2", "main", "913.6/マ", "a-general")]),
            "two": add_title(conn, "2", "二冊の本", [("M1", "main", "913.6/ニ", "a-general"),
                                                  ("E1", "east", "913.6/ニ", None)]),
            "suspended": add_title(conn, "3", "保留の本", [("S1", "main", "210/ホ", "a-general")]),
            "vol1": add_title(conn, "4", "三国志 1", [("V1", "main", "923/サ/1", "a-general")]),
            "vol2": add_title(conn, "5", "三国志 2", [("V2", "main", "923/サ/2", "a-general")]),
            "served": add_title(conn, "6", "確保済みの本", [("Q1", "main", "159/カ", "a-general"),
                                                        ("Q2", "main", "159/カ", "a-general")]),
            "remote": add_title(conn, "7", "東館だけの本", [("E7", "east", "007/ト", None)]),
            "popular": add_title(conn, "8", "人気の本", [("X8", "main", "001/ニ", "a-general")]),
            "itemlevel": add_title(conn, "9", "指定の本", [("I1", "main", "002/シ", "a-general"),
                                                       ("I2", "main", "002/シ", "a-general")]),
        }
    place(conn, "P1", ids["hibana"])
    place(conn, "P1", ids["two"], "east")
    place(conn, "P2", ids["two"], "main")
    h = place(conn, "P3", ids["suspended"])
    holds.suspend_hold(conn, ACTOR, h, TODAY + timedelta(days=10))
    circulation.checkout(conn, ACTOR, "P4", "V1", branch="main")
    place(conn, "P1", ids["vol1"], series_key="sangokushi", series_seq=1)
    place(conn, "P1", ids["vol2"], series_key="sangokushi", series_seq=2)
    circulation.checkout(conn, ACTOR, "P5", "Q1", branch="main")
    place(conn, "P2", ids["served"])
    assert circulation.checkin(conn, ACTOR, "Q1", branch="main").hold is not None  # Q1 trapped; Q2 not needed
    place(conn, "P1", ids["remote"], "main")
    for card in ("P1", "P2", "P3"):
        place(conn, card, ids["popular"])
    place(conn, "P2", ids["itemlevel"], item_id=int(conn.execute("SELECT id FROM item WHERE barcode = 'I2'")
                                                  .fetchone()["id"]))
    return ids


@pytest.fixture
def clerk(staff_client: TestClient, lib: dict[str, int]) -> tuple[TestClient, str]:
    return staff_client, console_login(staff_client, "counter")


def no_personal_names(page: str) -> None:
    assert NAME not in page and READING not in page and "タロウ" not in page


def cells(page: str, table_caption: str) -> list[list[str]]:
    """The body rows of the table whose caption starts with `table_caption`, as lists of cell texts."""
    part = page.split(f"<caption>{table_caption}", 1)[1].split("</table>", 1)[0]
    body = part.split("<tbody>", 1)[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]


def branch_id(conn: psycopg.Connection, code: str) -> int:
    return int(conn.execute("SELECT id FROM branch WHERE code = %s", (code,)).fetchone()["id"])


# -- pull list --------------------------------------------------------------------------------------------

def test_pull_list_is_exactly_the_copies_to_fetch(seeded: psycopg.Connection, lib: dict[str, int]) -> None:
    main = pull_list(seeded, branch_id(seeded, "main"), TODAY)
    # In shelf order (location code, call number): X8 once for three holds, I2 (the copy the item-level hold
    # names), M1 for P2 (P1 picks up at east, from E1), H2 (the general-shelf copy of 火花, not H1). Not S1 (its
    # only hold suspended), V2 (volume 1 not yet served), Q2 (its one hold already has Q1), E7 (at east).
    assert [line["barcode"] for line in main] == ["X8", "I2", "M1", "H2"]
    assert [line["location_name"] for line in main] == ["一般書架"] * 4
    assert all(not line["transfer"] for line in main)
    x8 = main[0]
    assert (x8["title"], x8["call_number"], x8["waiting"]) == ("人気の本", "001/ニ", 3)
    first = seeded.execute("SELECT min(placed_at) AS t FROM hold WHERE record_id = %s", (lib["popular"],)).fetchone()
    assert x8["oldest"] == first["t"].astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")
    east = pull_list(seeded, branch_id(seeded, "east"), TODAY)
    assert [(line["barcode"], line["transfer"], line["pickup"]["code"]) for line in east] == [
        ("E7", True, "main"), ("E1", False, "east")]


def test_pulled_copies_are_trapped_when_scanned(clerk: tuple[TestClient, str], seeded: psycopg.Connection,
                                                lib: dict[str, int]) -> None:
    client, csrf = clerk
    page = client.get("/holds/pull", params={"branch": "main"})
    assert page.status_code == 200
    assert [row[4] for row in cells(page.text, "抜き取る資料")] == ["X8", "I2", "M1", "H2"]
    assert "書架から抜き取り" in page.text and 'media="print"' not in page.text  # print rules live in holds.css
    no_personal_names(page.text)
    for barcode in ("X8", "I2", "M1", "H2"):
        r = client.post("/holds/pull", data={"csrf_token": csrf, "branch": "main", "item": barcode})
        assert r.status_code == 200 and "予約棚へ置いてください" in r.text, barcode
        assert seeded.execute("SELECT status FROM item WHERE barcode = %s", (barcode,)).fetchone()["status"] == \
            "on_hold_shelf"
    trapped = {r["barcode"]: r["card"] for r in seeded.execute(
        """SELECT i.barcode, p.card FROM hold h JOIN item i ON i.id = h.trapped_item_id
           JOIN patron p ON p.id = h.patron_id WHERE h.status = 'on_shelf'""").fetchall()}
    assert trapped == {"X8": "P1", "I2": "P2", "H2": "P1", "M1": "P2", "Q1": "P2"}
    assert pull_list(seeded, branch_id(seeded, "main"), TODAY) == []
    assert "抜き取る資料はありません" in client.get("/holds/pull", params={"branch": "main"}).text
    # A copy nobody can have now (its only hold suspended; a later volume) goes back: nothing changes.
    for barcode in ("S1", "V2", "H1"):
        r = client.post("/holds/pull", data={"csrf_token": csrf, "branch": "main", "item": barcode})
        assert "書架に戻してください" in r.text
        assert seeded.execute("SELECT status FROM item WHERE barcode = %s", (barcode,)).fetchone()["status"] == \
            "available"
    # Not on the shelf, or unknown: refused with the barcode named.
    r = client.post("/holds/pull", data={"csrf_token": csrf, "branch": "main", "item": "X8"})
    assert r.status_code == 409 and "X8" in r.text and "書架にありません" in r.text
    r = client.post("/holds/pull", data={"csrf_token": csrf, "branch": "main", "item": "NOPE1"})
    assert r.status_code == 404 and "NOPE1" in r.text
    # East's copy for the main hold travels.
    r = client.post("/holds/pull", data={"csrf_token": csrf, "branch": "east", "item": "E7"})
    assert "受取館へ回送してください" in r.text and "中央図書館" in r.text
    assert seeded.execute("SELECT status FROM hold WHERE record_id = %s", (lib["remote"],)).fetchone()["status"] == \
        "in_transit"


def test_pull_list_in_english(clerk: tuple[TestClient, str]) -> None:
    client, _ = clerk
    page = client.get("/holds/pull", params={"branch": "east", "lang": "en"}).text
    assert "Pull list for holds" in page and "Copies to pull (2)" in page and "(transfer)" in page
    assert "抜き取る資料" not in page


# -- holds on a title -----------------------------------------------------------------------------------------

def test_title_queue_place_and_cancel(clerk: tuple[TestClient, str], seeded: psycopg.Connection,
                                      lib: dict[str, int]) -> None:
    client, csrf = clerk
    rid = lib["popular"]
    page = client.get(f"/holds/records/{rid}")
    assert page.status_code == 200 and "人気の本" in page.text
    assert [row[:3] for row in cells(page.text, "順番待ちの予約")] == [
        ["1", "P1", "中央図書館"], ["2", "P2", "中央図書館"], ["3", "P3", "中央図書館"]]
    no_personal_names(page.text)
    audit = seeded.execute("SELECT subject_type, subject_id, details FROM audit_log WHERE action = 'hold.list' "
                           "ORDER BY id DESC LIMIT 1").fetchone()
    assert (audit["subject_type"], audit["subject_id"]) == ("record", str(rid))
    assert audit["details"]["cards"] == ["P1", "P2", "P3"]
    # Staff place a hold for P4, who picks up at east.
    r = client.post(f"/holds/records/{rid}", data={"csrf_token": csrf, "card": "P4", "pickup_branch": "east"},
                    follow_redirects=False)
    assert r.status_code == 303 and "P4" not in r.headers["location"]
    page = client.get(r.headers["location"])
    assert "予約を受け付けました（4 番目）" in page.text
    assert cells(page.text, "順番待ちの予約")[3][:3] == ["4", "P4", "東分館"]
    # Refusals keep the form and say why.
    r = client.post(f"/holds/records/{rid}", data={"csrf_token": csrf, "card": "P4", "pickup_branch": "main"})
    assert r.status_code == 409 and "すでに予約しています" in r.text
    r = client.post(f"/holds/records/{rid}", data={"csrf_token": csrf, "card": "NOBODY", "pickup_branch": "main"})
    assert r.status_code == 404 and "NOBODY" in r.text and 'value="NOBODY"' in r.text
    # Trap the copy for P1, then cancel P1's hold: the copy goes to P2 at once.
    client.post("/holds/pull", data={"csrf_token": csrf, "branch": "main", "item": "X8"})
    page = client.get(f"/holds/records/{rid}").text
    trapped_rows = cells(page, "確保済み・回送中の予約")
    assert [row[:3] for row in trapped_rows] == [["P1", "確保済み（受取可）", "X8"]]
    assert [row[:2] for row in cells(page, "順番待ちの予約")] == [["1", "P2"], ["2", "P3"], ["3", "P4"]]
    p1 = seeded.execute("SELECT id FROM hold WHERE record_id = %s AND status = 'on_shelf'", (rid,)).fetchone()["id"]
    r = client.post(f"/holds/{p1}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "予約を取り消しました" in page
    assert [row[:3] for row in cells(page, "確保済み・回送中の予約")] == [["P2", "確保済み（受取可）", "X8"]]
    r = client.post(f"/holds/{p1}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 409 and "取り消せません" in r.text
    assert client.get("/holds/records/999999").status_code == 404


def test_title_page_in_english_and_paged(clerk: tuple[TestClient, str], seeded: psycopg.Connection,
                                         lib: dict[str, int]) -> None:
    client, _ = clerk
    with seeded.transaction():
        for n in range(101, 206):
            add_patron(seeded, f"P{n}")
    for n in range(101, 206):
        place(seeded, f"P{n}", lib["hibana"])
    page = client.get(f"/holds/records/{lib['hibana']}", params={"lang": "en"}).text
    assert "Holds waiting in the queue (106) — page 1 of 2" in page and "Place a hold" in page
    assert [row[0] for row in cells(page, "Holds waiting in the queue")] == [str(n) for n in range(1, 101)]
    page = client.get(f"/holds/records/{lib['hibana']}", params={"page": 2, "lang": "ja"}).text
    assert [row[:2] for row in cells(page, "順番待ちの予約")][-1] == ["106", "P205"]
    assert len(cells(page, "順番待ちの予約")) == 6


def test_suspended_and_series_holds_are_shown(clerk: tuple[TestClient, str], lib: dict[str, int]) -> None:
    client, _ = clerk
    page = client.get(f"/holds/records/{lib['suspended']}").text
    assert f"{(TODAY + timedelta(days=10)).isoformat()} まで保留" in page
    page = client.get(f"/holds/records/{lib['vol2']}").text
    assert "巻数順（2）" in page


def test_catalogue_record_links_to_its_holds(staff_client: TestClient, lib: dict[str, int]) -> None:
    console_login(staff_client, "admin")
    page = staff_client.get(f"/catalogue/records/{lib['hibana']}").text
    assert f'href="/holds/records/{lib["hibana"]}"' in page


# -- hold shelf and expiry ----------------------------------------------------------------------------------

def test_hold_shelf_deadlines_and_expiry(clerk: tuple[TestClient, str], seeded: psycopg.Connection,
                                         lib: dict[str, int]) -> None:
    client, csrf = clerk
    with seeded.transaction():  # main closes the day after tomorrow: one more day to collect
        seeded.execute("INSERT INTO calendar_day (branch_id, day, closed, reason) SELECT id, %s, true, '休館' "
                       "FROM branch WHERE code = 'main'", (TODAY + timedelta(days=2),))
    for barcode in ("X8", "H2"):
        client.post("/holds/pull", data={"csrf_token": csrf, "branch": "main", "item": barcode})
    deadline = (TODAY + timedelta(days=8)).isoformat()  # 7 open days, one of the 8 calendar days closed
    # 火花's hold has waited past its deadline: it was shelved nine days ago.
    with seeded.transaction():
        seeded.execute("UPDATE hold SET pickup_deadline = %s WHERE record_id = %s AND status = 'on_shelf'",
                       (TODAY - timedelta(days=1), lib["hibana"]))
    place(seeded, "P7", lib["hibana"])  # the next patron in line for 火花
    page = client.get("/holds/shelf", params={"branch": "main"}).text
    rows = cells(page, "受取を待つ資料")
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (f"{(TODAY - timedelta(days=1)).isoformat()} 期限切れ", "P1", "H2"),
        ((TODAY + timedelta(days=7)).isoformat(), "P2", "Q1"),  # trapped before the closed day was entered
        (deadline, "P1", "X8")]
    assert page.count('<tr class="late">') == 1 and "うち期限切れ 1 冊" in page
    no_personal_names(page)
    audit = seeded.execute("SELECT details FROM audit_log WHERE action = 'hold.list' ORDER BY id DESC LIMIT 1"
                           ).fetchone()
    assert audit["details"] == {"page": "shelf", "cards": ["P1", "P2"]}
    # Run expiry now: 火花's hold expires and H2 goes straight to P7.
    r = client.post("/holds/shelf/expire", data={"csrf_token": csrf, "branch": "main"}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "1 件を期限切れにしました" in page
    rows = cells(page, "受取を待つ資料")
    assert [(r[1], r[3]) for r in rows] == [("P2", "Q1"), ("P1", "X8"), ("P7", "H2")]
    assert rows[2][0] == deadline and '<tr class="late">' not in page
    # The expired list shows it, with where the copy is now.
    page = client.get("/holds/expired", params={"branch": "main"}).text
    rows = cells(page, "期限切れの予約")
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        ((TODAY - timedelta(days=1)).isoformat(), "P1", "火花", "H2", "予約確保中（中央図書館）")]
    no_personal_names(page)
    en = client.get("/holds/expired", params={"branch": "main", "lang": "en"}).text
    assert "Expired holds (1)" in en and "予約確保中" not in en
    en = client.get("/holds/shelf", params={"branch": "main", "lang": "en"}).text
    assert "Awaiting pickup (3, of which 0 past the deadline)" in en and "Expire uncollected holds now" in en


# -- transfers ------------------------------------------------------------------------------------------------

def test_transfers_in_and_out(clerk: tuple[TestClient, str], seeded: psycopg.Connection,
                              lib: dict[str, int]) -> None:
    client, _ = clerk
    with seeded.transaction():
        seeded.execute("INSERT INTO branch (code, name) VALUES ('west', '西分館')")
    # E1, east's only copy of 二冊の本, comes back at main while P1 waits for it at east: sent for the hold.
    circulation.checkout(seeded, ACTOR, "P6", "E1", branch="east")
    sent = circulation.checkin(seeded, ACTOR, "E1", branch="main")
    assert sent.hold is not None and (sent.hold.status, sent.hold.pickup_branch) == ("in_transit", "east")
    # H1 comes back at main: P1, first in line, has suspended the hold, so P8 at east gets it.
    circulation.checkout(seeded, ACTOR, "P6", "H1", branch="main")
    place(seeded, "P8", lib["hibana"], "east")
    first = seeded.execute("SELECT id FROM hold WHERE record_id = %s ORDER BY id LIMIT 1", (lib["hibana"],)).fetchone()
    holds.suspend_hold(seeded, ACTOR, first["id"], TODAY + timedelta(days=3))
    sent = circulation.checkin(seeded, ACTOR, "H1", branch="main")
    assert sent.hold is not None and (sent.hold.status, sent.hold.pickup_branch) == ("in_transit", "east")
    # S1 comes back at west; its one hold is suspended: it goes home to main.
    circulation.checkout(seeded, ACTOR, "P6", "S1", branch="main")
    assert circulation.checkin(seeded, ACTOR, "S1", branch="west").transfer_to == "main"
    page = client.get("/holds/transfers", params={"branch": "main"}).text
    outgoing = cells(page, "この館から回送中")
    assert [(r[1], r[2], r[4], r[5]) for r in outgoing] == [
        ("E1", "二冊の本", "東分館", "予約（受取館へ）"), ("H1", "火花", "東分館", "予約（受取館へ）")]
    incoming = cells(page, "この館へ回送中")
    assert [(r[1], r[4], r[5]) for r in incoming] == [("S1", "西分館", "返却（所蔵館へ）")]
    no_personal_names(page)
    page = client.get("/holds/transfers", params={"branch": "east"}).text
    assert [(r[1], r[4]) for r in cells(page, "この館へ回送中")] == [("E1", "中央図書館"), ("H1", "中央図書館")]
    assert cells(page, "この館から回送中") == [["ありません"]]
    # H1 arrives at east (scanned on the check-in screen): received, no longer listed, on east's hold shelf.
    arrived = circulation.checkin(seeded, ACTOR, "H1", branch="east")
    assert arrived.transit_received and arrived.hold is not None and arrived.hold.status == "on_shelf"
    page = client.get("/holds/transfers", params={"branch": "east", "lang": "en"}).text
    assert [r[1] for r in cells(page, "In transit to this branch")] == ["E1"]
    assert "Hold (to the pickup branch)" in page


# -- overview, permissions, languages ------------------------------------------------------------------------

def test_overview_counts(clerk: tuple[TestClient, str], lib: dict[str, int]) -> None:
    client, _ = clerk
    page = client.get("/holds").text  # the clerk's own branch, main
    values = dict((re.sub(r"<[^>]+>", "", k).strip(), v) for k, v in re.findall(
        r'<tr><th scope="row">(.*?)</th><td>(?:<span[^>]*>)?(\d+)', page))
    assert values["書架から抜き取る資料"] == "4"
    assert values["予約棚で受取を待つ資料"] == "1"
    assert values["順番待ちの予約（全館）"] == "11"
    assert values["順番待ちの予約（この館で受取）"] == "10"
    assert "人気の本" in page
    en = client.get("/holds", params={"lang": "en", "branch": "east"}).text
    assert "Holds at east" in en and "Titles with the longest queues" in en


@pytest.mark.parametrize("path", ["/holds", "/holds/pull", "/holds/shelf", "/holds/expired", "/holds/transfers",
                                  "/holds/records/{rid}"])
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_viewer_sees_every_screen_without_actions(staff_client: TestClient, lib: dict[str, int], path: str,
                                                  lang: str) -> None:
    console_login(staff_client, "viewer")
    r = staff_client.get(path.format(rid=lib["popular"]), params={"lang": lang, "branch": "main"})
    assert r.status_code == 200, r.text
    assert f'<html lang="{lang}">' in r.text
    assert 'method="post" action="/holds' not in r.text and "/cancel" not in r.text
    no_personal_names(r.text)


def test_acting_needs_update_and_the_csrf_token(staff_client: TestClient, seeded: psycopg.Connection,
                                                lib: dict[str, int]) -> None:
    hold_id = seeded.execute("SELECT id FROM hold WHERE record_id = %s ORDER BY id LIMIT 1",
                             (lib["popular"],)).fetchone()["id"]
    posts = [(f"/holds/records/{lib['popular']}", {"card": "P5", "pickup_branch": "main"}),
             (f"/holds/{hold_id}/cancel", {}), ("/holds/pull", {"branch": "main", "item": "X8"}),
             ("/holds/shelf/expire", {"branch": "main"})]
    csrf = console_login(staff_client, "viewer")
    for path, data in posts:
        r = staff_client.post(path, data={"csrf_token": csrf, **data})
        assert r.status_code == 403 and "circulation:update" in r.text, path
    console_login(staff_client, "counter")
    for path, data in posts:
        r = staff_client.post(path, data={"csrf_token": "wrong", **data})
        assert r.status_code == 403 and "フォームの有効期限" in r.text, path
    assert seeded.execute("SELECT count(*) AS n FROM hold WHERE status = 'cancelled'").fetchone()["n"] == 0
    assert seeded.execute("SELECT status FROM item WHERE barcode = 'X8'").fetchone()["status"] == "available"
    assert seeded.execute("SELECT count(*) AS n FROM hold h JOIN patron p ON p.id = h.patron_id "
                          "WHERE p.card = 'P5'").fetchone()["n"] == 0


def test_unknown_branch_is_named(clerk: tuple[TestClient, str]) -> None:
    client, _ = clerk
    r = client.get("/holds/shelf", params={"branch": "nowhere"})
    assert r.status_code == 422 and "nowhere" in r.text


def test_print_stylesheet(staff_client: TestClient) -> None:
    r = staff_client.get("/holds/holds.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css") and "@media print" in r.text
