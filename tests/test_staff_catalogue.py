"""Staff catalogue: search on the engine, exact lookups, record with items, receive and withdraw."""

from __future__ import annotations

from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from indexer.sync import apply_outbox
from indexer.tantivy_engine import TantivyEngine
from tests.conftest import console_login, token_for


def _setup(conn: psycopg.Connection, client: TestClient, tmp_path: Path) -> int:
    with conn.transaction():
        rid = conn.execute("INSERT INTO bib_record (source, control_number, title, title_reading, data) "
                           "VALUES ('JTNDL', '9', '草枕', 'クサマクラ', %s) RETURNING id",
                           (Jsonb({"title": "草枕", "title_reading": "クサマクラ"}),)).fetchone()["id"]
        conn.execute("INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number) "
                     "SELECT %s, '5000001', id, id, 'book', '913.6/ナ' FROM branch WHERE code = 'main'", (rid,))
        conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (rid,))
    engine = TantivyEngine(tmp_path / "index")
    apply_outbox(conn, engine)
    client.app.state.engine = engine  # type: ignore[attr-defined]
    return int(rid)


def test_staff_api_search_and_lookups(staff_client: TestClient, seeded: psycopg.Connection, tmp_path: Path) -> None:
    rid = _setup(seeded, staff_client, tmp_path)
    headers = token_for(staff_client, "counter")  # catalogue:view
    found = staff_client.get("/api/v1/catalog/search", params={"q": "くさまくら"}, headers=headers).json()
    assert [h["id"] for h in found["hits"]] == [rid] and found["hits"][0]["items"] == 1
    for params in ({"barcode": "5000001"}, {"call_number": "913.6/"}, {"record_id": rid}):
        assert [h["id"] for h in staff_client.get("/api/v1/catalog/search", params=params,
                                                  headers=headers).json()["hits"]] == [rid]
    record = staff_client.get(f"/api/v1/catalog/records/{rid}", headers=headers).json()
    assert record["items"][0]["barcode"] == "5000001" and record["record"]["title"] == "草枕"
    assert staff_client.get("/api/v1/catalog/search", params={"q": "x"}).status_code == 401


def test_console_receive_and_withdraw(staff_client: TestClient, seeded: psycopg.Connection, tmp_path: Path) -> None:
    rid = _setup(seeded, staff_client, tmp_path)
    csrf = console_login(staff_client, "admin")
    page = staff_client.get("/catalogue", params={"barcode": "5000001"})
    assert page.status_code == 200 and "草枕" in page.text  # a barcode goes straight to the record
    r = staff_client.post(f"/catalogue/records/{rid}/items", data={"csrf_token": csrf, "barcode": "5000002",
                                                                    "branch": "east", "item_type": "book"})
    assert r.status_code == 200 and "5000002" in r.text
    bad = staff_client.post(f"/catalogue/records/{rid}/items", data={"csrf_token": csrf, "barcode": "5000002",
                                                                      "branch": "east", "item_type": "book"})
    assert bad.status_code == 409 and "既に使われています" in bad.text
    r = staff_client.post("/catalogue/items/5000002/withdraw", data={"csrf_token": csrf, "reason": "破損"})
    assert r.status_code == 200
    assert seeded.execute("SELECT status FROM item WHERE barcode = '5000002'").fetchone()["status"] == "withdrawn"
    results = staff_client.get("/catalogue", params={"q": "草枕"})
    assert f'/catalogue/records/{rid}' in results.text


def test_console_edits_record_and_item_and_transfers(staff_client: TestClient, seeded: psycopg.Connection,
                                                     tmp_path: Path) -> None:
    rid = _setup(seeded, staff_client, tmp_path)
    csrf = console_login(staff_client, "admin")
    assert staff_client.get(f"/catalogue/records/{rid}/edit").status_code == 200
    r = staff_client.post(f"/catalogue/records/{rid}/edit", data={"csrf_token": csrf, "title": "草枕（改版）",
                                                                   "title_reading": "クサマクラ", "year": "1906"})
    assert r.status_code == 200 and "草枕（改版）" in r.text
    bad = staff_client.post(f"/catalogue/records/{rid}/edit", data={"csrf_token": csrf, "title": "x", "year": "明治"})
    assert bad.status_code == 422 and "year" in bad.text
    page = staff_client.get("/catalogue/items/5000001")
    assert page.status_code == 200 and "913.6/ナ" in page.text
    r = staff_client.post("/catalogue/items/5000001", data={"csrf_token": csrf, "call_number": "913.6/ナツ",
                                                            "item_type": "book", "status": "missing", "price": "800"})
    assert r.status_code == 200
    row = seeded.execute("SELECT call_number, status, price FROM item WHERE barcode = '5000001'").fetchone()
    assert row == {"call_number": "913.6/ナツ", "status": "missing", "price": 800}
    r = staff_client.post("/catalogue/items/5000001/transfer", data={"csrf_token": csrf, "branch": "east"})
    assert r.status_code == 200
    assert seeded.execute("SELECT b.code FROM item i JOIN branch b ON b.id = i.branch_id "
                          "WHERE barcode = '5000001'").fetchone()["code"] == "east"


def test_console_adds_shelf_locations(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    r = staff_client.post("/admin/branches/main/locations", data={"csrf_token": csrf, "location_code": "closed",
                                                                  "name": "書庫"})
    assert r.status_code == 200 and "書庫" in r.text
    bad = staff_client.post("/admin/branches/main/locations", data={"csrf_token": csrf, "location_code": "closed",
                                                                    "name": "書庫"})
    assert bad.status_code == 409
