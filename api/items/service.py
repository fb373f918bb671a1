"""Items: one row per physical copy. Every change writes the search outbox and the audit log in
the same transaction, so the index and the audit trail never miss a committed change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.errors import ShokaError, invalid, not_found

BARCODE_RE = re.compile(r"^[0-9A-Za-z-]{1,32}$")
# Why an item leaves the collection (除籍理由); free text is allowed beside these.
WITHDRAWAL_REASONS = ("lost", "damaged", "worn", "outdated", "duplicate", "not_returned", "transferred", "other")
EDITABLE_STATUSES = ("available", "in_processing", "missing", "lost", "damaged")


@dataclass(frozen=True)
class NewItem:
    record_id: int
    barcode: str
    branch: str
    item_type: str
    location: str | None = None
    call_number: str | None = None
    acquired_on: date | None = None
    price: int | None = None
    notes: str | None = None
    status: str = "available"


def _branch_id(conn: Connection[DictRow], code: str, field: str = "branch") -> int:
    row = conn.execute("SELECT id FROM branch WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise invalid(field, code, "その館コードはありません。", "no such branch code")
    return int(row["id"])


def _location_id(conn: Connection[DictRow], branch_id: int, code: str | None) -> int | None:
    if not code:
        return None
    row = conn.execute("SELECT id FROM location WHERE branch_id = %s AND code = %s", (branch_id, code)).fetchone()
    if row is None:
        raise invalid("location", code, "その館にその配架場所はありません。", "no such shelf location at that branch")
    return int(row["id"])


def _check_item_type(conn: Connection[DictRow], code: str) -> None:
    if not conn.execute("SELECT 1 FROM item_type WHERE code = %s", (code,)).fetchone():
        raise invalid("item_type", code, "その資料区分はありません。", "no such item type")


def _touch_record(conn: Connection[DictRow], record_id: int) -> None:
    conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (record_id,))


def create_item(conn: Connection[DictRow], actor: Actor, item: NewItem) -> int:
    """受入: add a copy of a record."""
    if not BARCODE_RE.match(item.barcode or ""):
        raise invalid("barcode", item.barcode, "英数字とハイフンで32文字以内です。",
                      "letters, digits and '-', at most 32 characters")
    if item.price is not None and item.price < 0:
        raise invalid("price", item.price, "価格は0以上の整数です。", "must be a whole number of yen, 0 or more")
    if item.status not in ("available", "in_processing"):
        raise invalid("status", item.status, "新しい所蔵は available か in_processing です。",
                      "a new item is available or in_processing")
    with conn.transaction():
        if not conn.execute("SELECT 1 FROM bib_record WHERE id = %s", (item.record_id,)).fetchone():
            raise invalid("record_id", item.record_id, "その書誌はありません。", "no such record")
        branch_id = _branch_id(conn, item.branch)
        location_id = _location_id(conn, branch_id, item.location)
        _check_item_type(conn, item.item_type)
        if conn.execute("SELECT 1 FROM item WHERE barcode = %s", (item.barcode,)).fetchone():
            raise ShokaError("barcode_taken", f"資料番号「{item.barcode}」は既に使われています。",
                             f"The barcode {item.barcode!r} is already in use.", status=409, field="barcode")
        row = conn.execute(
            """INSERT INTO item (record_id, barcode, branch_id, current_branch_id, location_id, call_number,
                                 item_type, status, acquired_on, price, notes)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, current_date), %s, %s) RETURNING id""",
            (item.record_id, item.barcode, branch_id, branch_id, location_id, item.call_number, item.item_type,
             item.status, item.acquired_on, item.price, item.notes)).fetchone()
        assert row is not None
        _touch_record(conn, item.record_id)
        record(conn, actor, "item.create", "item", item.barcode, {"record_id": item.record_id, "branch": item.branch})
        return int(row["id"])


def get_item(conn: Connection[DictRow], barcode: str) -> DictRow:
    row = conn.execute(
        """SELECT i.id, i.record_id, i.barcode, b.code AS branch, cb.code AS current_branch, l.code AS location,
                  i.call_number, i.item_type, i.status, i.acquired_on, i.price, i.notes, i.withdrawn_on,
                  i.withdrawal_reason, r.title
           FROM item i JOIN branch b ON b.id = i.branch_id JOIN branch cb ON cb.id = i.current_branch_id
           LEFT JOIN location l ON l.id = i.location_id JOIN bib_record r ON r.id = i.record_id
           WHERE i.barcode = %s""", (barcode,)).fetchone()
    if row is None:
        raise not_found("item", barcode)
    return row


def update_item(conn: Connection[DictRow], actor: Actor, barcode: str, changes: dict[str, Any]) -> None:
    """Edit an item's shelf data. Status changes that belong to circulation (on loan, in transit,
    on the hold shelf) and withdrawal have their own functions."""
    allowed = {"location", "call_number", "item_type", "status", "price", "notes", "acquired_on"}
    unknown = set(changes) - allowed
    if unknown:
        field = sorted(unknown)[0]
        raise invalid(field, changes[field], "この項目は変更できません。", "this field cannot be changed here")
    with conn.transaction():
        item = conn.execute("SELECT id, record_id, branch_id, status FROM item WHERE barcode = %s FOR UPDATE",
                            (barcode,)).fetchone()
        if item is None:
            raise not_found("item", barcode)
        if item["status"] == "withdrawn":
            raise ShokaError("item_withdrawn", "除籍済みの資料は変更できません。", "The item has been withdrawn.",
                             status=409)
        sets: dict[str, Any] = {}
        if "location" in changes:
            sets["location_id"] = _location_id(conn, item["branch_id"], changes["location"])
        if "item_type" in changes:
            _check_item_type(conn, changes["item_type"])
            sets["item_type"] = changes["item_type"]
        if "status" in changes:
            if changes["status"] not in EDITABLE_STATUSES or item["status"] not in EDITABLE_STATUSES:
                raise invalid("status", changes["status"], "この状態への変更は貸出・返却などの業務で行います。",
                              "this status changes through circulation, not by editing")
            sets["status"] = changes["status"]
        if "price" in changes:
            if changes["price"] is not None and int(changes["price"]) < 0:
                raise invalid("price", changes["price"], "価格は0以上の整数です。", "must be 0 or more")
            sets["price"] = changes["price"]
        for key in ("call_number", "notes", "acquired_on"):
            if key in changes:
                sets[key] = changes[key]
        if sets:
            assignments = ", ".join(f"{k} = %({k})s" for k in sets)
            conn.execute(f"UPDATE item SET {assignments}, updated_at = now() WHERE id = %(id)s",
                         {**sets, "id": item["id"]})
        _touch_record(conn, item["record_id"])
        record(conn, actor, "item.update", "item", barcode, {k: str(v) for k, v in changes.items()})


def transfer_item(conn: Connection[DictRow], actor: Actor, barcode: str, branch: str,
                  location: str | None = None) -> None:
    """所属変更: the item now belongs to another branch (not a temporary transit)."""
    with conn.transaction():
        item = conn.execute("SELECT id, record_id, status FROM item WHERE barcode = %s FOR UPDATE",
                            (barcode,)).fetchone()
        if item is None:
            raise not_found("item", barcode)
        if item["status"] in ("withdrawn", "on_loan"):
            raise ShokaError("item_not_transferable", "貸出中・除籍済みの資料は所属を変えられません。",
                             "An item on loan or withdrawn cannot be transferred.", status=409)
        branch_id = _branch_id(conn, branch)
        location_id = _location_id(conn, branch_id, location)
        conn.execute("UPDATE item SET branch_id = %s, current_branch_id = %s, location_id = %s, updated_at = now() "
                     "WHERE id = %s", (branch_id, branch_id, location_id, item["id"]))
        _touch_record(conn, item["record_id"])
        record(conn, actor, "item.transfer", "item", barcode, {"branch": branch, "location": location})


def withdraw_item(conn: Connection[DictRow], actor: Actor, barcode: str, reason: str,
                  on: date | None = None) -> None:
    """除籍: the item leaves the collection. The row stays for statistics and history."""
    if not (reason or "").strip():
        raise invalid("reason", reason, "除籍理由を入力してください。", "a reason is required")
    with conn.transaction():
        item = conn.execute("SELECT id, record_id, status FROM item WHERE barcode = %s FOR UPDATE",
                            (barcode,)).fetchone()
        if item is None:
            raise not_found("item", barcode)
        if item["status"] == "withdrawn":
            raise ShokaError("item_withdrawn", "既に除籍されています。", "The item is already withdrawn.", status=409)
        if item["status"] in ("on_loan", "on_hold_shelf", "in_transit"):
            raise ShokaError("item_in_circulation", "貸出中・取置中・回送中の資料は除籍できません。",
                             "An item on loan, on the hold shelf or in transit cannot be withdrawn.", status=409)
        conn.execute("UPDATE item SET status = 'withdrawn', withdrawn_on = coalesce(%s, current_date), "
                     "withdrawal_reason = %s, updated_at = now() WHERE id = %s", (on, reason.strip(), item["id"]))
        _touch_record(conn, item["record_id"])
        record(conn, actor, "item.withdraw", "item", barcode, {"reason": reason.strip()})
