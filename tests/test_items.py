"""Items (所蔵): receive, edit, transfer and withdraw, through the API, with outbox and audit rows."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from tests.conftest import token_for


@pytest.fixture
def record_id(seeded: psycopg.Connection) -> int:
    with seeded.transaction():
        seeded.execute("INSERT INTO location (branch_id, code, name) SELECT id, 'stacks', '一般書架' FROM branch "
                       "WHERE code IN ('main', 'east')")
        row = seeded.execute(
            "INSERT INTO bib_record (source, control_number, title, title_reading, data) "
            "VALUES ('JTNDL', '000001', 'それから', 'ソレカラ', %s) RETURNING id",
            (Jsonb({"title": "それから"}),)).fetchone()
    return int(row["id"])


def _outbox(conn: psycopg.Connection, record_id: int) -> int:
    return conn.execute("SELECT count(*) AS n FROM search_outbox WHERE record_id = %s", (record_id,)).fetchone()["n"]


def test_receive_edit_transfer_withdraw(staff_client: TestClient, seeded: psycopg.Connection, record_id: int) -> None:
    admin = token_for(staff_client, "admin")
    r = staff_client.post("/api/v1/items", headers=admin, json={
        "record_id": record_id, "barcode": "1000001", "branch": "main", "item_type": "book",
        "location": "stacks", "call_number": "913.6/ナ", "price": 1800})
    assert r.status_code == 201, r.text
    item = staff_client.get("/api/v1/items/1000001", headers=admin).json()
    assert item["status"] == "available" and item["branch"] == "main" and item["location"] == "stacks"
    assert item["acquired_on"] is not None and item["price"] == 1800
    r = staff_client.patch("/api/v1/items/1000001", headers=admin,
                           json={"call_number": "913.6/ナツ", "notes": "帯あり"})
    assert r.json()["call_number"] == "913.6/ナツ"
    r = staff_client.post("/api/v1/items/1000001/transfer", headers=admin,
                          json={"branch": "east", "location": "stacks"})
    assert r.json()["branch"] == "east" and r.json()["current_branch"] == "east"
    r = staff_client.post("/api/v1/items/1000001/withdraw", headers=admin, json={"reason": "damaged"})
    assert r.json()["status"] == "withdrawn" and r.json()["withdrawal_reason"] == "damaged"
    again = staff_client.post("/api/v1/items/1000001/withdraw", headers=admin, json={"reason": "damaged"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "item_withdrawn"
    assert _outbox(seeded, record_id) == 4
    actions = [row["action"] for row in seeded.execute(
        "SELECT action FROM audit_log WHERE subject_type = 'item' ORDER BY id").fetchall()]
    assert actions == ["item.create", "item.update", "item.transfer", "item.withdraw"]


@pytest.mark.parametrize("body,field,code", [
    ({"barcode": "bad barcode!"}, "barcode", "validation_error"),
    ({"branch": "nowhere"}, "branch", "validation_error"),
    ({"item_type": "spaceship"}, "item_type", "validation_error"),
    ({"location": "attic"}, "location", "validation_error"),
    ({"record_id": 999999}, "record_id", "validation_error"),
    ({"status": "on_loan"}, "status", "validation_error"),
    ({"price": -5}, "price", "validation_error"),
])
def test_bad_item_input_names_the_field(staff_client: TestClient, seeded: psycopg.Connection, record_id: int,
                                        body: dict, field: str, code: str) -> None:
    admin = token_for(staff_client, "admin")
    base = {"record_id": record_id, "barcode": "1000002", "branch": "main", "item_type": "book"}
    r = staff_client.post("/api/v1/items", headers=admin, json={**base, **body})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["field"] == field
    assert seeded.execute("SELECT count(*) AS n FROM item").fetchone()["n"] == 0
    assert _outbox(seeded, record_id) == 0


def test_duplicate_barcode_and_circulation_statuses_are_refused(staff_client: TestClient, seeded: psycopg.Connection,
                                                                record_id: int) -> None:
    admin = token_for(staff_client, "admin")
    body = {"record_id": record_id, "barcode": "1000003", "branch": "main", "item_type": "book"}
    assert staff_client.post("/api/v1/items", headers=admin, json=body).status_code == 201
    dup = staff_client.post("/api/v1/items", headers=admin, json=body)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "barcode_taken"
    r = staff_client.patch("/api/v1/items/1000003", headers=admin, json={"status": "in_transit"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "status"
    seeded.execute("UPDATE item SET status = 'on_loan' WHERE barcode = '1000003'")
    r = staff_client.post("/api/v1/items/1000003/withdraw", headers=admin, json={"reason": "lost"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "item_in_circulation"
    assert staff_client.get("/api/v1/items/404404", headers=admin).status_code == 404


def test_opac_sees_holdings_but_not_item_internals(seeded: psycopg.Connection, opac_db_url: str,
                                                   record_id: int) -> None:
    with seeded.transaction():
        seeded.execute("INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, price, notes) "
                       "SELECT %s, '2000001', id, id, 'book', 1500, '職員メモ' FROM branch WHERE code = 'main'",
                       (record_id,))
    with psycopg.connect(opac_db_url, autocommit=True) as opac:
        rows = opac.execute("SELECT * FROM opac_holding WHERE record_id = %s", (record_id,)).fetchall()
        assert len(rows) == 1
        columns = [d.name for d in opac.execute("SELECT * FROM opac_holding LIMIT 0").description]
        assert "price" not in columns and "notes" not in columns and "barcode" not in columns
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            opac.execute("SELECT price FROM item")


def test_locations_are_data_per_branch(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    admin = token_for(staff_client, "admin")
    r = staff_client.post("/api/v1/branches/east/locations", headers=admin,
                          json={"code": "kids", "name": "児童書架", "name_en": "Children's shelves"})
    assert r.status_code == 201
    assert staff_client.get("/api/v1/branches/east/locations", headers=admin).json() == [
        {"code": "kids", "name": "児童書架", "name_en": "Children's shelves"}]
    dup = staff_client.post("/api/v1/branches/east/locations", headers=admin, json={"code": "kids", "name": "x"})
    assert dup.status_code == 409
    bad = staff_client.post("/api/v1/branches/east/locations", headers=admin, json={"code": "Kids!", "name": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "code"
    assert staff_client.post("/api/v1/branches/nowhere/locations", headers=admin,
                             json={"code": "a", "name": "x"}).status_code == 404


def test_record_edit_updates_columns_readings_outbox_and_audit(staff_client: TestClient, seeded: psycopg.Connection,
                                                                record_id: int) -> None:
    admin = token_for(staff_client, "admin")
    r = staff_client.patch(f"/api/v1/catalog/records/{record_id}", headers=admin,
                           json={"title": "門", "year": 1911, "ndc": "913.6", "isbns": ["4-00-310105-7"]})
    assert r.status_code == 200, r.text
    row = seeded.execute("SELECT title, title_reading, pub_year, ndc, isbns, data FROM bib_record WHERE id = %s",
                         (record_id,)).fetchone()
    assert (row["title"], row["pub_year"], row["ndc"], row["isbns"]) == ("門", 1911, "913.6", ["9784003101056"])
    assert row["title_reading"] and "title" in row["data"]["readings_generated"] and row["data"]["edited_locally"]
    assert _outbox(seeded, record_id) == 1
    audit = seeded.execute("SELECT details FROM audit_log WHERE action = 'catalog.record_update'").fetchone()
    assert audit["details"]["before"]["title"] == "それから" and audit["details"]["after"]["title"] == "門"
    for body, field in [({"title": " "}, "title"), ({"year": 20000}, "year"), ({"ndc": "novel"}, "ndc"),
                        ({"isbns": ["123"]}, "isbns")]:
        bad = staff_client.patch(f"/api/v1/catalog/records/{record_id}", headers=admin, json=body)
        assert bad.status_code == 422 and bad.json()["error"]["field"] == field
    counter = token_for(staff_client, "counter")
    assert staff_client.patch(f"/api/v1/catalog/records/{record_id}", headers=counter,
                              json={"title": "x"}).status_code == 403
