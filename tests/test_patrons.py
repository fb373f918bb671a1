"""Patrons (利用者): registration and its validation, duplicates, search by every key, audit of views and
searches, blocks and suspensions (貸出停止), standing, card renewal, permissions, and the console pages
(in Japanese and English, with no card number or name in any URL)."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import date, timedelta
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.audit import Actor
from api.errors import ShokaError
from api.patrons import service
from tests.conftest import console_login, token_for

TODAY = date.today()
ACTOR = Actor("tester", "127.0.0.1")


# -- pure functions -----------------------------------------------------------------------------------

def _age_by_counting(birth: date, on: date) -> int:
    """Independent age: how many birthdays have passed, a 29 February birthday falling on 1 March."""
    age = 0
    for year in range(birth.year + 1, on.year + 1):
        try:
            birthday = date(year, birth.month, birth.day)
        except ValueError:
            birthday = date(year, 3, 1)
        if birthday <= on:
            age += 1
    return age


GROUP_TABLE = [(0, 5, "0-5"), (6, 12, "6-12"), (13, 15, "13-15"), (16, 18, "16-18"), (19, 29, "19-29"),
               (30, 39, "30-39"), (40, 49, "40-49"), (50, 59, "50-59"), (60, 69, "60-69"), (70, 200, "70+")]


def _group_of(age: int) -> str:
    return next(label for lo, hi, label in GROUP_TABLE if lo <= age <= hi)


@pytest.mark.parametrize("birth", [date(2000, 2, 29), date(2010, 4, 1), date(2013, 12, 31), date(1950, 6, 15),
                                   date(1992, 1, 1)])
def test_age_group_every_day_of_a_lifetime(birth: date) -> None:
    day = birth
    while day <= date(birth.year + 75, 12, 31):
        assert service.age_group(birth, day) == _group_of(_age_by_counting(birth, day)), day
        day += timedelta(days=1)


@pytest.mark.parametrize("birth,on,expected", [
    (date(2000, 2, 29), date(2006, 2, 28), "0-5"),     # turns 6 on 1 March in a common year
    (date(2000, 2, 29), date(2006, 3, 1), "6-12"),
    (date(2000, 2, 29), date(2012, 2, 29), "6-12"),    # 12 on the leap day itself
    (date(2010, 4, 1), date(2023, 3, 31), "6-12"),
    (date(2010, 4, 1), date(2023, 4, 1), "13-15"),
    (date(2007, 8, 10), date(2025, 8, 10), "16-18"),   # 18th birthday
    (date(2007, 8, 10), date(2026, 8, 10), "19-29"),
    (date(1950, 6, 15), date(2020, 6, 14), "60-69"),
    (date(1950, 6, 15), date(2020, 6, 15), "70+"),
    (date(1985, 1, 1), date(2025, 12, 31), "40-49"),
    (None, date(2025, 1, 1), "unknown"),
    (date(2026, 1, 2), date(2026, 1, 1), "unknown"),   # born after the day asked about
    (date(2026, 1, 1), date(2026, 1, 1), "0-5"),
])
def test_age_group_hand_computed(birth: date | None, on: date, expected: str) -> None:
    assert service.age_group(birth, on) == expected


def test_add_years_keeps_the_day_and_folds_the_leap_day() -> None:
    assert service.add_years(date(2024, 2, 29), 3) == date(2027, 2, 28)
    assert service.add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)
    assert service.add_years(date(2025, 12, 31), 1) == date(2026, 12, 31)


@pytest.mark.parametrize("typed,stored,key", [
    ("やまだ　たろう", "ヤマダ タロウ", "ヤマダタロウ"),
    ("ﾔﾏﾀﾞ ﾀﾛｳ", "ヤマダ タロウ", "ヤマダタロウ"),         # half-width kana with a voiced mark
    ("ヤマダ  タロウ ", "ヤマダ タロウ", "ヤマダタロウ"),
    ("きょうこ", "キョウコ", "キヨウコ"),                  # small kana fold to large in the key
    ("ユーコ", "ユーコ", "ユコ"),                          # the long-vowel mark is not in the key
    ("ゔぃくとる", "ヴィクトル", "ビクトル"),
])
def test_reading_is_stored_as_katakana_and_folded_for_the_key(typed: str, stored: str, key: str) -> None:
    assert service.clean_reading(typed) == stored
    assert service.reading_key(stored) == key


@pytest.mark.parametrize("query,kinds", [
    ("1000123", {"card": "1000123", "phone": "1000123"}),
    ("A1000123A", {"card": "1000123", "name": "A1000123A"}),  # scanner start/stop characters
    ("03-1234-5678", {"card": "03-1234-5678", "phone": "0312345678"}),
    ("０３（１２３４）５６７８", {"phone": "0312345678"}),
    ("山田", {"name": "山田"}),
    ("やまだ", {"name": "やまだ", "reading": "ヤマダ"}),
    ("山田　太郎", {"name": "山田 太郎"}),
    ("yamada", {"card": "yamada", "name": "yamada"}),
    ("   ", {}),
])
def test_one_search_box_is_classified(query: str, kinds: dict[str, str]) -> None:
    assert service.classify_query(query) == kinds


# -- fixtures -----------------------------------------------------------------------------------------

BASE = {"card": "1000001", "name": "山田 太郎", "name_reading": "ヤマダ タロウ", "category": "general",
        "branch": "main"}


def _register(client: TestClient, headers: dict[str, str], **fields: object) -> dict:
    r = client.post("/api/v1/patrons", headers=headers, json={**BASE, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def _audit(conn: psycopg.Connection, action: str) -> list[dict]:
    return conn.execute("SELECT actor, subject_type, subject_id, details FROM audit_log WHERE action = %s ORDER BY id",
                        (action,)).fetchall()


@pytest.fixture
def admin(staff_client: TestClient) -> dict[str, str]:
    return token_for(staff_client, "admin")


def _loan(conn: psycopg.Connection, patron_id: int, barcode: str, due: date, title: str = "それから") -> None:
    with conn.transaction():
        record = conn.execute("INSERT INTO bib_record (source, control_number, title, data) "
                              "VALUES ('LOCAL', %s, %s, %s) RETURNING id",
                              (barcode, title, Jsonb({"title": title}))).fetchone()
        item = conn.execute("INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, status) "
                            "SELECT %s, %s, id, id, 'book', 'on_loan' FROM branch WHERE code = 'main' RETURNING id",
                            (record["id"], barcode)).fetchone()
        conn.execute("INSERT INTO loan (item_id, patron_id, branch_id, due_date, patron_category, age_group, "
                     "item_type) SELECT %s, %s, id, %s, 'general', '30-39', 'book' FROM branch WHERE code = 'main'",
                     (item["id"], patron_id, due))


# -- registration ---------------------------------------------------------------------------------------

def test_register_returns_id_and_card_and_stores_katakana(staff_client: TestClient, seeded: psycopg.Connection,
                                                          admin: dict[str, str]) -> None:
    body = _register(staff_client, admin, name_reading="やまだ　たろう", birth_date="1980-05-05",
                     phone="０３-1234-5678", postal_code="1234567", email="taro@example.jp", keep_history=True)
    assert set(body) == {"id", "card"} and body["card"] == "1000001"
    row = seeded.execute("SELECT * FROM patron WHERE id = %s", (body["id"],)).fetchone()
    assert row["name_reading"] == "ヤマダ タロウ" and row["reading_key"] == "ヤマダタロウ"
    assert row["phone"] == "03-1234-5678" and row["phone_digits"] == "0312345678"
    assert row["postal_code"] == "123-4567" and row["keep_history"] is True
    # 一般 cards run three years (card_years in the migration).
    expected = date(TODAY.year + 3, TODAY.month, TODAY.day if (TODAY.month, TODAY.day) != (2, 29) else 28)
    assert row["expires_on"] == expected
    create = _audit(seeded, "patron.create")
    assert len(create) == 1 and create[0]["subject_id"] == "1000001" and create[0]["actor"] == "admin"
    assert create[0]["details"]["duplicate_override"] is False


def test_scanner_characters_are_stripped_and_categories_set_the_expiry(staff_client: TestClient,
                                                                       seeded: psycopg.Connection,
                                                                       admin: dict[str, str]) -> None:
    body = _register(staff_client, admin, card="A2000001B", category="nonresident")
    assert body["card"] == "2000001"
    row = seeded.execute("SELECT expires_on FROM patron WHERE id = %s", (body["id"],)).fetchone()
    assert row["expires_on"] == service.add_years(TODAY, 1)  # 市外: one year
    given = _register(staff_client, admin, card="2000002", name_reading="ベツ", expires_on="2031-03-31")
    assert seeded.execute("SELECT expires_on FROM patron WHERE id = %s",
                          (given["id"],)).fetchone()["expires_on"] == date(2031, 3, 31)


TOMORROW = (TODAY + timedelta(days=1)).isoformat()
YESTERDAY = (TODAY - timedelta(days=1)).isoformat()


@pytest.mark.parametrize("fields,field,value,code", [
    ({"card": "bad card!"}, "card", "bad card!", "barcode_chars"),
    ({"card": "１２３４５６７８９０" * 3 + "１２３"}, "card", "1234567890", "barcode_chars"),  # 33 characters
    ({"card": ""}, "card", "", "barcode_empty"),
    ({"card": "9784003101056"}, "card", "9784003101056", "book_jan"),   # the ISBN bar on a book's cover
    ({"name": "   "}, "name", "   ", "validation_error"),
    ({"name": "山" * 101}, "name", "山" * 101, "validation_error"),
    ({"name_reading": "山田"}, "name_reading", "山田", "validation_error"),
    ({"name_reading": "Yamada"}, "name_reading", "Yamada", "validation_error"),
    ({"name_reading": ""}, "name_reading", "", "validation_error"),
    ({"birth_date": TOMORROW}, "birth_date", TOMORROW, "validation_error"),
    ({"birth_date": "1899-12-31"}, "birth_date", "1899-12-31", "validation_error"),
    ({"birth_date": "1980-13-01"}, "birth_date", "1980-13-01", "validation_error"),
    ({"email": "taro.example.jp"}, "email", "taro.example.jp", "validation_error"),
    ({"email": "taro@example"}, "email", "taro@example", "validation_error"),
    ({"phone": "abc-defg"}, "phone", "abc-defg", "validation_error"),
    ({"phone": "1234"}, "phone", "1234", "validation_error"),
    ({"postal_code": "12-34567"}, "postal_code", "12-34567", "validation_error"),
    ({"category": "spaceship"}, "category", "spaceship", "validation_error"),
    ({"branch": "nowhere"}, "branch", "nowhere", "validation_error"),
    ({"expires_on": YESTERDAY}, "expires_on", YESTERDAY, "validation_error"),
    ({"notes": "x" * 2001}, "notes", "xxxxxxxx", "validation_error"),
])
def test_every_bad_field_is_refused_by_name_and_value(staff_client: TestClient, seeded: psycopg.Connection,
                                                      admin: dict[str, str], fields: dict, field: str, value: str,
                                                      code: str) -> None:
    for lang in ("ja", "en"):
        r = staff_client.post(f"/api/v1/patrons?lang={lang}", headers=admin, json={**BASE, **fields})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == code and error["field"] == field
        message = error["message"]
        assert value[:10] in message and (field in message or "card" in message)
    assert seeded.execute("SELECT count(*) AS n FROM patron").fetchone()["n"] == 0
    assert _audit(seeded, "patron.create") == []


def test_card_must_be_unique_and_follow_the_card_ranges(staff_client: TestClient, seeded: psycopg.Connection,
                                                        admin: dict[str, str]) -> None:
    _register(staff_client, admin)
    dup = staff_client.post("/api/v1/patrons", headers=admin, json={**BASE, "name_reading": "ベツジン"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "card_taken"
    assert dup.json()["error"]["field"] == "card"
    # Cards starting with 2 are 8 digits with a 7DR check digit: 2000000 mod 7 = 2.
    seeded.execute("INSERT INTO barcode_rule (kind, name, prefix, length, check_scheme) "
                   "VALUES ('patron', 'cards', '2', 8, '7dr')")
    short = staff_client.post("/api/v1/patrons", headers=admin, json={**BASE, "card": "2000"})
    assert short.status_code == 422 and short.json()["error"]["code"] == "barcode_length"
    wrong = staff_client.post("/api/v1/patrons", headers=admin, json={**BASE, "card": "20000003"})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "barcode_check_digit"
    assert wrong.json()["error"]["field"] == "card"
    ok = _register(staff_client, admin, card="20000002", name_reading="ニバンメ")
    assert ok["card"] == "20000002"


def test_possible_duplicate_names_the_existing_card_and_can_be_overridden(staff_client: TestClient,
                                                                          seeded: psycopg.Connection,
                                                                          admin: dict[str, str]) -> None:
    _register(staff_client, admin, birth_date="1980-05-05")
    again = {**BASE, "card": "1000002", "name": "山田 太朗", "name_reading": "やまだ たろう",
             "birth_date": "1980-05-05"}
    r = staff_client.post("/api/v1/patrons", headers=admin, json=again)
    assert r.status_code == 409 and r.json()["error"]["code"] == "possible_duplicate"
    assert "1000001" in r.json()["error"]["message"]
    assert seeded.execute("SELECT count(*) AS n FROM patron").fetchone()["n"] == 1
    # Same reading, another birth date, or no birth date: not a duplicate.
    _register(staff_client, admin, card="1000003", birth_date="1980-05-06")
    _register(staff_client, admin, card="1000004")
    forced = staff_client.post("/api/v1/patrons", headers=admin, json={**again, "allow_duplicate": True})
    assert forced.status_code == 201
    overrides = [a["details"]["duplicate_override"] for a in _audit(seeded, "patron.create")]
    assert overrides == [False, False, False, True]


def test_two_registrations_of_one_card_at_once_give_one_patron(seeded: psycopg.Connection, db_url: str) -> None:
    """Both pass the "card free?" check; the unique index decides and the second gets card_taken."""
    from api import db

    outcome: dict[str, object] = {}

    def second(conn: psycopg.Connection) -> None:
        try:
            service.register_patron(conn, ACTOR, service.NewPatron("3000001", "乙", "オツ", "general", "main"))
            outcome["second"] = "registered"
        except ShokaError as exc:
            outcome["second"] = exc.code

    with db.connect(db_url) as a, db.connect(db_url) as b:
        with a.transaction():
            service.register_patron(a, ACTOR, service.NewPatron("3000001", "甲", "コウ", "general", "main"))
            thread = threading.Thread(target=second, args=(b,))
            thread.start()
            for _ in range(2000):  # until the second registration waits on the first's uncommitted row
                row = seeded.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                     (b.info.backend_pid,)).fetchone()
                if row and row["wait_event_type"] == "Lock":
                    break
                time.sleep(0.005)
            else:
                pytest.fail("the second registration never waited for the first")
        thread.join()
    assert outcome == {"second": "card_taken"}
    assert seeded.execute("SELECT name FROM patron WHERE card = '3000001'").fetchall() == [{"name": "甲"}]


# -- search and views ---------------------------------------------------------------------------------

@pytest.fixture
def people(staff_client: TestClient, admin: dict[str, str]) -> dict[str, int]:
    rows = [("1000001", "山田 太郎", "ヤマダ タロウ", "03-1234-5678"),
            ("1000002", "山田 花子", "やまだ はなこ", None),
            ("1000003", "山本 一郎", "ヤマモト イチロウ", "090-1111-2222"),
            ("1000004", "田中 京子", "たなか きょうこ", None),
            ("1000005", "100%果汁", "カジュウ", None)]
    out = {}
    for card, name, reading, phone in rows:
        out[card] = _register(staff_client, admin, card=card, name=name, name_reading=reading, phone=phone)["id"]
    return out


@pytest.mark.parametrize("params,cards,kinds", [
    ({"card": "1000003"}, ["1000003"], ["card"]),
    ({"card": "1000"}, [], ["card"]),                              # exact, never a prefix
    ({"q": "1000002"}, ["1000002"], ["card", "phone"]),
    ({"q": "山田"}, ["1000001", "1000002"], ["name"]),
    ({"q": "山"}, ["1000001", "1000002", "1000003"], ["name"]),
    ({"q": "やま"}, ["1000001", "1000002", "1000003"], ["name", "reading"]),
    ({"q": "ﾔﾏﾀﾞ"}, ["1000001", "1000002"], ["name", "reading"]),
    ({"q": "やまだ はな"}, ["1000002"], ["name", "reading"]),
    ({"q": "タナカキヨウコ"}, ["1000004"], ["name", "reading"]),  # small kana folded
    ({"q": "0312345678"}, ["1000001"], ["card", "phone"]),
    ({"q": "03-1234-5678"}, ["1000001"], ["card", "phone"]),
    ({"q": "０９０（１１１１）２２２２"}, ["1000003"], ["phone"]),
    ({"q": "%"}, [], ["name"]),                                     # LIKE characters are literal
    ({"q": "100%"}, ["1000005"], ["name"]),
])
def test_search_by_each_key(staff_client: TestClient, seeded: psycopg.Connection, admin: dict[str, str],
                            people: dict[str, int], params: dict, cards: list[str], kinds: list[str]) -> None:
    r = staff_client.get("/api/v1/patrons", headers=admin, params=params)
    assert r.status_code == 200, r.text
    assert sorted(p["card"] for p in r.json()["patrons"]) == cards
    assert r.json()["kinds"] == kinds
    audit = _audit(seeded, "patron.search")
    assert len(audit) == 1 and audit[0]["details"] == {"hits": len(cards), "kinds": kinds, "truncated": False}
    text = json.dumps(audit[0], ensure_ascii=False, default=str)
    query = next(iter(params.values()))
    assert query not in text  # the query text itself is never recorded
    assert audit[0]["subject_id"] == ""


def test_search_limit_reports_truncation(staff_client: TestClient, seeded: psycopg.Connection, admin: dict[str, str],
                                         people: dict[str, int]) -> None:
    r = staff_client.get("/api/v1/patrons", headers=admin, params={"q": "山", "limit": 2})
    assert [p["card"] for p in r.json()["patrons"]] == ["1000001", "1000002"]  # ヤマダタロウ, ヤマダハナコ by reading
    assert r.json()["truncated"] is True
    assert _audit(seeded, "patron.search")[0]["details"] == {"hits": 2, "kinds": ["name"], "truncated": True}
    for params in ({}, {"q": "  "}, {"q": "山", "limit": 0}):
        bad = staff_client.get("/api/v1/patrons", headers=admin, params=params)
        assert bad.status_code == 422 and bad.json()["error"]["field"] in ("q", "limit")


def test_every_view_of_a_record_is_audited_with_the_card(staff_client: TestClient, seeded: psycopg.Connection,
                                                         admin: dict[str, str], people: dict[str, int]) -> None:
    viewer = token_for(staff_client, "viewer")
    pid = people["1000003"]
    r = staff_client.get(f"/api/v1/patrons/{pid}", headers=viewer)
    assert r.status_code == 200 and r.json()["card"] == "1000003" and r.json()["name_reading"] == "ヤマモト イチロウ"
    assert r.json()["standing"]["blocked"] is False and r.json()["blocks"] == []
    assert staff_client.get(f"/api/v1/patrons/{pid}/loans", headers=viewer).json() == {"loans": []}
    views = _audit(seeded, "patron.view")
    assert [(v["actor"], v["subject_id"], v["details"]["id"]) for v in views] == [("viewer", "1000003", pid)] * 2
    assert staff_client.get("/api/v1/patrons/999999", headers=viewer).status_code == 404
    # Circulation's own look-up is not a staff view.
    assert service.find_by_card(seeded, "1000003")["id"] == pid and service.find_by_card(seeded, "nope") is None
    assert len(_audit(seeded, "patron.view")) == 2


def test_update_normalises_audits_field_names_only_and_keeps_cards_unique(
        staff_client: TestClient, seeded: psycopg.Connection, admin: dict[str, str], people: dict[str, int]) -> None:
    pid = people["1000001"]
    r = staff_client.patch(f"/api/v1/patrons/{pid}", headers=admin,
                           json={"name_reading": "やまだ　たろー", "phone": "0120-000-111", "category": "child",
                                 "keep_history": True})
    assert r.status_code == 200, r.text
    assert r.json()["name_reading"] == "ヤマダ タロー" and r.json()["category"] == "child"
    row = seeded.execute("SELECT reading_key, phone_digits, keep_history FROM patron WHERE id = %s", (pid,)).fetchone()
    assert (row["reading_key"], row["phone_digits"], row["keep_history"]) == ("ヤマダタロ", "0120000111", True)
    update = _audit(seeded, "patron.update")
    assert len(update) == 1 and update[0]["subject_id"] == "1000001"
    assert update[0]["details"] == {"id": pid, "fields": ["category", "keep_history", "name_reading", "phone"],
                                    "category": "child", "keep_history": True}
    # Saving the same values again changes nothing and records nothing.
    staff_client.patch(f"/api/v1/patrons/{pid}", headers=admin, json={"phone": "0120-000-111"})
    assert len(_audit(seeded, "patron.update")) == 1
    taken = staff_client.patch(f"/api/v1/patrons/{pid}", headers=admin, json={"card": "1000002"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "card_taken"
    for body, field in [({"name_reading": "太郎"}, "name_reading"), ({"email": "x"}, "email"),
                        ({"branch": "nowhere"}, "branch"), ({"expires_on": None}, "expires_on"),
                        ({"birth_date": TOMORROW}, "birth_date"), ({"card": "no good"}, "card")]:
        bad = staff_client.patch(f"/api/v1/patrons/{pid}", headers=admin, json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, (body, bad.text)
    reissued = staff_client.patch(f"/api/v1/patrons/{pid}", headers=admin, json={"card": "1000099"})
    assert reissued.json()["card"] == "1000099"
    last = _audit(seeded, "patron.update")[-1]
    assert last["subject_id"] == "1000099" and last["details"]["previous_card"] == "1000001"
    assert staff_client.patch("/api/v1/patrons/999999", headers=admin, json={"notes": "x"}).status_code == 404
    typo = staff_client.patch(f"/api/v1/patrons/{pid}", headers=admin, json={"birthdate": "1980-01-01"})
    assert typo.status_code == 422 and typo.json()["error"]["field"] == "birthdate"


# -- blocks, suspensions, standing, loans ---------------------------------------------------------------

def test_blocks_and_suspensions_through_the_api(staff_client: TestClient, seeded: psycopg.Connection,
                                                admin: dict[str, str], people: dict[str, int]) -> None:
    pid, other = people["1000001"], people["1000002"]
    r = staff_client.post(f"/api/v1/patrons/{pid}/blocks", headers=admin,
                          json={"kind": "manual", "reason": "住所確認まで"})
    assert r.status_code == 201 and r.json()["standing"]["reasons"] == ["blocked"]
    manual = r.json()["id"]
    until = (TODAY + timedelta(days=14)).isoformat()
    r = staff_client.post(f"/api/v1/patrons/{pid}/blocks", headers=admin,
                          json={"kind": "suspension", "reason": "延滞14日", "ends_on": until})
    standing = r.json()["standing"]
    assert standing["reasons"] == ["blocked", "suspended"] and standing["suspended_until"] == until
    for body, field in [({"kind": "suspension", "reason": "延滞"}, "ends_on"),
                        ({"kind": "fine", "reason": "x"}, "kind"),
                        ({"kind": "manual", "reason": "  "}, "reason"),
                        ({"kind": "manual", "reason": "x", "starts_on": "2030-01-02", "ends_on": "2030-01-01"},
                         "ends_on")]:
        bad = staff_client.post(f"/api/v1/patrons/{pid}/blocks", headers=admin, json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field, body
    assert staff_client.delete(f"/api/v1/patrons/{other}/blocks/{manual}", headers=admin).status_code == 404
    lifted = staff_client.delete(f"/api/v1/patrons/{pid}/blocks/{manual}", headers=admin)
    assert lifted.status_code == 200 and lifted.json()["standing"]["reasons"] == ["suspended"]
    again = staff_client.delete(f"/api/v1/patrons/{pid}/blocks/{manual}", headers=admin)
    assert again.status_code == 409 and again.json()["error"]["code"] == "block_lifted"
    row = seeded.execute("SELECT lifted_by, created_by FROM patron_block WHERE id = %s", (manual,)).fetchone()
    assert row["lifted_by"] == "admin" and row["created_by"] == "admin"
    actions = [a["subject_id"] for a in _audit(seeded, "patron.block_add") + _audit(seeded, "patron.block_lift")]
    assert actions == ["1000001"] * 3


def test_standing_on_each_side_of_the_block_dates(seeded: psycopg.Connection) -> None:
    pid = service.register_patron(seeded, ACTOR, service.NewPatron("4000001", "甲", "コウ", "general", "main",
                                                                   expires_on=date(2030, 3, 31)),
                                  today=date(2026, 4, 1))
    service.add_block(seeded, ACTOR, pid, "suspension", "延滞", starts_on=date(2026, 5, 1), ends_on=date(2026, 5, 10))
    service.add_block(seeded, ACTOR, pid, "suspension", "延滞", starts_on=date(2026, 5, 5), ends_on=date(2026, 5, 20))
    service.add_block(seeded, ACTOR, pid, "manual", "要確認", starts_on=date(2026, 6, 1))
    expected = {date(2026, 4, 30): ((), None), date(2026, 5, 1): (("suspended",), date(2026, 5, 10)),
                date(2026, 5, 5): (("suspended",), date(2026, 5, 20)),
                date(2026, 5, 20): (("suspended",), date(2026, 5, 20)), date(2026, 5, 21): ((), None),
                date(2026, 5, 31): ((), None), date(2026, 6, 1): (("blocked",), None),
                date(2030, 3, 31): (("blocked",), None), date(2030, 4, 1): (("blocked", "expired"), None)}
    for day, (reasons, until) in expected.items():
        s = service.standing(seeded, pid, day)
        assert (s.reasons, s.suspended_until, s.blocked) == (reasons, until, bool(reasons)), day


def test_current_loans_and_overdue_count(staff_client: TestClient, seeded: psycopg.Connection,
                                         admin: dict[str, str]) -> None:
    group = _register(staff_client, admin, card="5000001", name="第一小学校", name_reading="ダイイチショウガッコウ",
                      category="group", contact_name="佐藤 先生")["id"]
    _loan(seeded, group, "9000001", TODAY - timedelta(days=1), "門")
    _loan(seeded, group, "9000002", TODAY, "こころ")
    _loan(seeded, group, "9000003", TODAY + timedelta(days=7), "三四郎")
    r = staff_client.get(f"/api/v1/patrons/{group}/loans", headers=admin)
    loans = r.json()["loans"]
    assert [(x["item_barcode"], x["title"], x["overdue"]) for x in loans] == [
        ("9000001", "門", True), ("9000002", "こころ", False), ("9000003", "三四郎", False)]
    standing = staff_client.get(f"/api/v1/patrons/{group}", headers=admin).json()["standing"]
    assert (standing["current_loans"], standing["overdue_loans"], standing["reasons"]) == (3, 1, ["overdue"])
    seeded.execute("UPDATE loan SET returned_at = now() "
                   "WHERE item_id = (SELECT id FROM item WHERE barcode = '9000001')")
    assert service.standing(seeded, group).reasons == ()
    assert len(service.current_loans(seeded, group)) == 2


def test_renew_card_extends_by_the_category_years(staff_client: TestClient, seeded: psycopg.Connection,
                                                  admin: dict[str, str]) -> None:
    pid = service.register_patron(seeded, ACTOR, service.NewPatron("6000001", "甲", "コウ", "general", "main",
                                                                   expires_on=date(2027, 2, 28)),
                                  today=date(2026, 1, 1))
    assert service.renew_card(seeded, ACTOR, pid, today=date(2026, 6, 1)) == date(2030, 2, 28)   # still valid
    seeded.execute("UPDATE patron SET expires_on = '2024-02-29' WHERE id = %s", (pid,))
    assert service.renew_card(seeded, ACTOR, pid, today=date(2025, 7, 7)) == date(2028, 7, 7)    # expired
    r = staff_client.post(f"/api/v1/patrons/{pid}/renew-card", headers=admin)
    assert r.json()["expires_on"] == "2031-07-07"
    assert [a["details"]["to"] for a in _audit(seeded, "patron.renew_card")] == ["2030-02-28", "2028-07-07",
                                                                                  "2031-07-07"]


# -- permissions ----------------------------------------------------------------------------------------

def test_viewer_reads_but_cannot_change_and_counter_can(staff_client: TestClient, seeded: psycopg.Connection,
                                                        people: dict[str, int]) -> None:
    pid = people["1000001"]
    viewer = token_for(staff_client, "viewer")
    assert staff_client.get("/api/v1/patrons", headers=viewer, params={"q": "山田"}).status_code == 200
    before = seeded.execute("SELECT count(*) AS n FROM patron_block").fetchone()["n"]
    for method, path, body in [("POST", "/api/v1/patrons", {**BASE, "card": "7000001"}),
                               ("PATCH", f"/api/v1/patrons/{pid}", {"notes": "x"}),
                               ("POST", f"/api/v1/patrons/{pid}/blocks", {"kind": "manual", "reason": "x"}),
                               ("DELETE", f"/api/v1/patrons/{pid}/blocks/1", None),
                               ("POST", f"/api/v1/patrons/{pid}/renew-card", None)]:
        r = staff_client.request(method, path, headers=viewer, json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", path
    assert seeded.execute("SELECT count(*) AS n FROM patron_block").fetchone()["n"] == before
    assert seeded.execute("SELECT notes FROM patron WHERE id = %s", (pid,)).fetchone()["notes"] is None
    # The built-in counter role grants patrons:view and patrons:update (migration 0001).
    counter = token_for(staff_client, "counter")
    assert staff_client.post("/api/v1/patrons", headers=counter,
                             json={**BASE, "card": "7000002", "name_reading": "カウンター"}).status_code == 201
    assert staff_client.patch(f"/api/v1/patrons/{pid}", headers=counter, json={"notes": "x"}).status_code == 200
    assert staff_client.get("/api/v1/patrons", params={"q": "山田"}).status_code == 401


# -- console --------------------------------------------------------------------------------------------

PERSONAL = ("1000001", "山田", "ヤマダ", "やまだ", "0312345678", "03-1234-5678", "taro@example.jp")
URL_ATTR = re.compile(r'(?:href|action|src|formaction)="([^"]*)"')


def _assert_no_personal_data_in_urls(html: str) -> int:
    urls = URL_ATTR.findall(html)
    for url in urls:
        for value in PERSONAL:
            assert value not in url and quote(value) not in url, (url, value)
    return len(urls)


def test_console_register_duplicate_warning_detail_edit_and_search(staff_client: TestClient,
                                                                   seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "counter")
    form = {"csrf_token": csrf, "card": "1000001", "name": "山田　太郎", "name_reading": "やまだ たろう",
            "birth_date": "1980-05-05", "category": "general", "branch": "main", "phone": "03-1234-5678",
            "email": "taro@example.jp", "postal_code": "", "address": "長野市1-2-3", "expires_on": "", "notes": "",
            "contact_name": ""}
    new = staff_client.get("/patrons/new")
    assert new.status_code == 200 and 'for="name_reading"' in new.text and 'id="name_reading"' in new.text
    _assert_no_personal_data_in_urls(new.text)
    r = staff_client.post("/patrons", data=form, follow_redirects=False)
    assert r.status_code == 303
    location = r.headers["location"]
    pid = seeded.execute("SELECT id FROM patron WHERE card = '1000001'").fetchone()["id"]
    assert location == f"/patrons/{pid}?msg=created"

    detail = staff_client.get(location)
    assert detail.status_code == 200 and "山田 太郎" in detail.text and "ヤマダ タロウ" in detail.text
    assert "貸出できます。" in detail.text and "登録しました。" in detail.text
    assert _assert_no_personal_data_in_urls(detail.text) >= 4
    assert [v["subject_id"] for v in _audit(seeded, "patron.view")] == ["1000001"]

    # The same person again: a warning page listing the existing record, then "register anyway".
    dup = staff_client.post("/patrons", data={**form, "card": "1000002"}, follow_redirects=False)
    assert dup.status_code == 409 and "それでも登録する" in dup.text and f'href="/patrons/{pid}"' in dup.text
    assert 'value="やまだ たろう"' in dup.text  # what was typed is kept
    _assert_no_personal_data_in_urls(dup.text)
    forced = staff_client.post("/patrons", data={**form, "card": "1000002", "allow_duplicate": "1"},
                               follow_redirects=False)
    assert forced.status_code == 303
    _assert_no_personal_data_in_urls(forced.headers["location"])

    bad = staff_client.post("/patrons", data={**form, "card": "1000003", "name_reading": "山田"})
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text and "name_reading" in bad.text

    # Search: one box; a card goes straight to the record, a name lists both.
    by_card = staff_client.get("/patrons", params={"q": "1000001"}, follow_redirects=False)
    assert by_card.status_code == 303 and by_card.headers["location"] == f"/patrons/{pid}"
    listing = staff_client.get("/patrons", params={"q": "やまだ"})
    assert listing.status_code == 200 and listing.text.count('href="/patrons/') >= 2
    _assert_no_personal_data_in_urls(listing.text.replace('value="やまだ"', ""))
    assert [a["details"]["hits"] for a in _audit(seeded, "patron.search")] == [1, 2]

    edit = staff_client.get(f"/patrons/{pid}/edit")
    assert edit.status_code == 200 and 'value="1000001"' in edit.text
    _assert_no_personal_data_in_urls(edit.text)
    saved = staff_client.post(f"/patrons/{pid}/edit", data={
        **form, "name_reading": "ヤマダ タロウ", "expires_on": "2030-03-31", "keep_history": "on"},
        follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == f"/patrons/{pid}?msg=saved"
    row = seeded.execute("SELECT expires_on, keep_history FROM patron WHERE id = %s", (pid,)).fetchone()
    assert (row["expires_on"], row["keep_history"]) == (date(2030, 3, 31), True)


def test_console_blocks_renewal_and_loans(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    pid = service.register_patron(seeded, ACTOR, service.NewPatron("5000001", "第一小学校", "ダイイチショウガッコウ",
                                                                   "group", "main", contact_name="佐藤 先生"))
    _loan(seeded, pid, "9000001", TODAY - timedelta(days=3), "門")
    csrf = console_login(staff_client, "counter")
    page = staff_client.get(f"/patrons/{pid}")
    assert "佐藤 先生" in page.text and "団体貸出中の資料" in page.text and "門" in page.text
    assert "<strong>延滞</strong>" in page.text and "返却期限を過ぎた資料が 1 点あります。" in page.text
    r = staff_client.post(f"/patrons/{pid}/blocks", data={"csrf_token": csrf, "kind": "suspension", "reason": "延滞",
                                                          "starts_on": "", "ends_on": ""})
    assert r.status_code == 422 and "ends_on" in r.text and 'value="延滞"' in r.text
    r = staff_client.post(f"/patrons/{pid}/blocks", data={"csrf_token": csrf, "kind": "manual", "reason": "要連絡",
                                                          "starts_on": "", "ends_on": ""}, follow_redirects=False)
    assert r.status_code == 303
    page = staff_client.get(f"/patrons/{pid}")
    assert "貸出禁止が設定されています。" in page.text and "要連絡" in page.text
    block_id = seeded.execute("SELECT id FROM patron_block WHERE patron_id = %s", (pid,)).fetchone()["id"]
    assert f'action="/patrons/{pid}/blocks/{block_id}/lift"' in page.text
    r = staff_client.post(f"/patrons/{pid}/blocks/{block_id}/lift", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert seeded.execute("SELECT lifted_by FROM patron_block WHERE id = %s", (block_id,)).fetchone()["lifted_by"] \
        == "counter"
    r = staff_client.post(f"/patrons/{pid}/renew-card", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and len(_audit(seeded, "patron.renew_card")) == 1
    forged = staff_client.post(f"/patrons/{pid}/renew-card", data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403


def test_console_viewer_sees_but_cannot_change(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    pid = service.register_patron(seeded, ACTOR, service.NewPatron("1000001", "山田 太郎", "ヤマダ タロウ",
                                                                   "general", "main"))
    csrf = console_login(staff_client, "viewer")
    page = staff_client.get(f"/patrons/{pid}")
    assert page.status_code == 200 and "山田 太郎" in page.text
    assert "/edit" not in page.text and "renew-card" not in page.text and 'action="/patrons/' not in page.text
    assert "/patrons/new" not in staff_client.get("/patrons").text
    assert staff_client.get("/patrons/new").status_code == 403
    assert staff_client.get(f"/patrons/{pid}/edit").status_code == 403
    for path in ("/patrons", f"/patrons/{pid}/edit", f"/patrons/{pid}/blocks", f"/patrons/{pid}/renew-card"):
        r = staff_client.post(path, data={"csrf_token": csrf, **{k: v for k, v in BASE.items()}},
                              follow_redirects=False)
        assert r.status_code == 403, path
    assert seeded.execute("SELECT count(*) AS n FROM patron").fetchone()["n"] == 1


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_console_pages_render_in_both_languages(staff_client: TestClient, seeded: psycopg.Connection,
                                                lang: str) -> None:
    pid = service.register_patron(seeded, ACTOR, service.NewPatron("1000001", "山田 太郎", "ヤマダ タロウ",
                                                                   "general", "main", phone="03-1234-5678",
                                                                   email="taro@example.jp"))
    service.add_block(seeded, ACTOR, pid, "suspension", "延滞", ends_on=TODAY + timedelta(days=3))
    console_login(staff_client, "admin")
    expected = {
        "ja": {"/patrons": "利用者番号・氏名・ヨミ・電話番号", "/patrons/new": "利用登録",
               f"/patrons/{pid}": "貸出停止中です", f"/patrons/{pid}/edit": "利用者情報の変更",
               "/patrons?q=ヤマダ": "ヨミ"},
        "en": {"/patrons": "Card number, name, reading or phone", "/patrons/new": "Register a patron",
               f"/patrons/{pid}": "Lending is suspended until", f"/patrons/{pid}/edit": "Edit patron",
               "/patrons?q=ヤマダ": "Reading"},
    }[lang]
    labels_ja = ("利用者区分", "有効期限", "貸出禁止・貸出停止", "生年月日", "登録館")
    for path, text in expected.items():
        sep = "&" if "?" in path else "?"
        r = staff_client.get(f"{path}{sep}lang={lang}")
        assert r.status_code == 200, (path, r.status_code)
        assert f'<html lang="{lang}">' in r.text and text in r.text, path
        if lang == "en":
            assert not any(label in r.text for label in labels_ja), path
        _assert_no_personal_data_in_urls(r.text.replace("?lang=", "").replace('value="ヤマダ"', ""))
