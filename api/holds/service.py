"""Holds (予約): placing, the queue, trapping at check-in, the hold shelf (確保), cancelling, expiry.

The queue is the order of placement (placed_at, id) per title. There is no periodic rebuild of a
holds queue: check-in traps in real time (`trap`, called by api/circulation/service.py inside the
check-in transaction while the item row is locked), and a cancelled or expired hold hands its copy
to the next patron at once (`_reassign`).

Concurrency: placing locks the patron row (limits hold at two counters or browsers at once);
trapping reads the first candidate without a lock, then locks that hold and re-checks it, so a hold
cancelled by the patron while a slow counter traps is never served — the next one is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.circulation import rules as loan_rules
from api.circulation.service import HoldInfo, load_calendar, load_rules, patron_refusals, refusal
from api.errors import ShokaError, invalid, not_found
from api.patrons.service import standing

DB = Connection[DictRow]
ACTIVE = ("placed", "in_transit", "on_shelf", "in_locker")
PICKUP_DAYS_DEFAULT = 7   # 取置期間: open days of the pickup branch
STATUS_JA = {"placed": "予約中", "in_transit": "回送中", "on_shelf": "確保済み（受取可）",
             "in_locker": "ロッカーに用意済み", "collected": "受取済み", "cancelled": "取消", "expired": "期限切れ"}


@dataclass(frozen=True)
class HoldPlaced:
    id: int
    status: str
    position: int


def _setting(conn: DB, key: str, default: int) -> int:
    row = conn.execute("SELECT value FROM library_setting WHERE key = %s", (key,)).fetchone()
    return int(row["value"]) if row else default


def pickup_days(conn: DB) -> int:
    """Library setting `holds.pickup_days`: how many open days a trapped hold waits on the shelf."""
    return _setting(conn, "holds.pickup_days", PICKUP_DAYS_DEFAULT)


def check_pickup_branch(conn: DB, code: str) -> DictRow:
    """A branch that hands out holds (受取館), or a refusal naming the field."""
    row = conn.execute("SELECT id, code, name, name_en, takes_holds, active FROM branch WHERE code = %s",
                       (code,)).fetchone()
    if row is None:
        raise invalid("pickup_branch", code, "その館コードはありません。", "no such branch code")
    if not row["takes_holds"] or not row["active"]:
        raise ShokaError("pickup_branch_not_allowed", f"pickup_branch: 「{code}」では予約資料を受け取れません。",
                         f"pickup_branch: {code!r} does not hand out holds.", status=422, field="pickup_branch")
    return row


def _notify(conn: DB, kind: str, patron_id: int, key: str, data: dict[str, Any]) -> None:
    from api.notices.service import queue_notice

    queue_notice(conn, kind, patron_id, key, data)


def position(conn: DB, hold_id: int) -> int:
    """1 for the first in the queue of its title; 0 once the hold is trapped or ended."""
    row = conn.execute(
        """SELECT CASE WHEN h.status <> 'placed' THEN 0 ELSE
                  (SELECT count(*) FROM hold q WHERE q.record_id = h.record_id AND q.status = 'placed'
                     AND (q.placed_at, q.id) <= (h.placed_at, h.id)) END AS position
           FROM hold h WHERE h.id = %s""", (hold_id,)).fetchone()
    if row is None:
        raise not_found("hold", str(hold_id))
    return int(row["position"])


# -- placing --------------------------------------------------------------------------------------

def place_hold(conn: DB, actor: Actor, patron_id: int, record_id: int, pickup_branch: str, *,
               item_id: int | None = None, placed_by: str | None = None, today: date | None = None,
               series_key: str | None = None, series_seq: int | None = None,
               request_id: int | None = None) -> HoldPlaced:
    """予約: a title-level hold (or item-level when `item_id` is given) picked up at `pickup_branch`."""
    today = today or date.today()
    with conn.transaction():
        patron = conn.execute(
            "SELECT p.id, p.card, p.category FROM patron p WHERE p.id = %s FOR UPDATE", (patron_id,)).fetchone()
        if patron is None:
            raise not_found("patron", str(patron_id))
        for problem in patron_refusals(standing(conn, patron_id, today), today):
            if problem.code != "patron_has_overdue":
                raise problem
        branch = check_pickup_branch(conn, pickup_branch)
        rec = conn.execute("SELECT id, title FROM bib_record WHERE id = %s", (record_id,)).fetchone()
        if rec is None:
            raise invalid("record_id", record_id, "その書誌はありません。", "no such record")
        copies = conn.execute(
            """SELECT count(*) FILTER (WHERE i.status NOT IN ('withdrawn', 'lost', 'missing')) AS holdable,
                      count(*) FILTER (WHERE l.patron_id = %s) AS mine
               FROM item i LEFT JOIN loan l ON l.item_id = i.id AND l.returned_at IS NULL
               WHERE i.record_id = %s""", (patron_id, record_id)).fetchone()
        assert copies is not None
        if item_id is not None:
            item = conn.execute("SELECT record_id, status FROM item WHERE id = %s", (item_id,)).fetchone()
            if item is None or item["record_id"] != record_id or item["status"] == "withdrawn":
                raise invalid("item", item_id, "この書誌の資料ではありません。", "not a copy of this record")
        if copies["mine"]:
            raise refusal("already_on_loan", "この資料はすでに借りています。", "You already have this item on loan.",
                          field="record_id")
        if not copies["holdable"] and request_id is None:
            raise refusal("not_holdable", "この資料には予約できる所蔵がありません。",
                          "There is no copy of this title that can be reserved.", field="record_id")
        if conn.execute("SELECT 1 FROM hold WHERE patron_id = %s AND record_id = %s AND status = ANY(%s)",
                        (patron_id, record_id, list(ACTIVE))).fetchone():
            raise refusal("hold_exists", "この資料はすでに予約しています。", "You already have a hold on this title.",
                          field="record_id")
        limit = loan_rules.limit_rule(load_rules(conn), patron["category"], branch["code"]).max_holds
        active = conn.execute("SELECT count(*) AS n FROM hold WHERE patron_id = %s AND status = ANY(%s)",
                              (patron_id, list(ACTIVE))).fetchone()
        assert active is not None
        if int(active["n"]) >= limit:
            raise refusal("hold_limit_reached", f"予約できるのは {limit} 件までです（現在 {active['n']} 件）。",
                          f"Hold limit reached: {active['n']} of {limit}.", field="patron")
        row = conn.execute(
            """INSERT INTO hold (patron_id, record_id, item_id, pickup_branch_id, placed_by, series_key, series_seq,
                                 request_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (patron_id, record_id, item_id, branch["id"], placed_by or actor.name, series_key, series_seq,
             request_id)).fetchone()
        assert row is not None
        hold_id = int(row["id"])
        record(conn, actor, "hold.place", "hold", hold_id, {"record_id": record_id, "pickup": branch["code"]})
        return HoldPlaced(hold_id, "placed", position(conn, hold_id))


# -- trapping at check-in ---------------------------------------------------------------------------

_CANDIDATES = """
    SELECT h.id, h.pickup_branch_id FROM hold h
    WHERE h.status = 'placed' AND h.record_id = %(record)s AND (h.item_id IS NULL OR h.item_id = %(item)s)
      AND (h.suspended_until IS NULL OR h.suspended_until < %(today)s)
      AND (h.series_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM hold e WHERE e.series_key = h.series_key AND e.series_seq < h.series_seq
              AND e.status IN ('placed', 'in_transit', 'on_shelf', 'in_locker')))
    ORDER BY h.placed_at, h.id
    LIMIT 50"""


def _available_at(conn: DB, record_id: int, branch_id: int, except_item: int) -> bool:
    """Whether another copy sits on the shelf at the branch (so a hold there needs no transfer)."""
    return conn.execute(
        """SELECT 1 FROM item i WHERE i.record_id = %s AND i.current_branch_id = %s AND i.status = 'available'
             AND i.id <> %s AND NOT EXISTS (SELECT 1 FROM hold t WHERE t.trapped_item_id = i.id
                                            AND t.status IN ('in_transit', 'on_shelf', 'in_locker'))
           LIMIT 1""", (record_id, branch_id, except_item)).fetchone() is not None


def trap(conn: DB, item: DictRow, branch_id: int, today: date | None = None) -> HoldInfo | None:
    """At check-in (inside its transaction, item row locked): set the item aside for the next hold.

    An item already in transit for a hold is shelved when it reaches the pickup branch (or re-routed
    there). Otherwise holds are served in queue order, except that a hold whose pickup branch has a
    copy on its own shelf is left to that copy (the pull list), sparing a transfer.
    """
    today = today or date.today()
    current = conn.execute(
        """SELECT h.id, h.patron_id, h.pickup_branch_id, h.status, b.code AS pickup FROM hold h
           JOIN branch b ON b.id = h.pickup_branch_id
           WHERE h.trapped_item_id = %s AND h.status IN ('in_transit', 'on_shelf') FOR UPDATE OF h""",
        (item["id"],)).fetchone()
    if current is not None:
        if current["pickup_branch_id"] == branch_id:
            if current["status"] == "in_transit":
                _shelve(conn, current["id"], item, branch_id, today)
            return HoldInfo(current["id"], current["pickup"], "on_shelf", current["patron_id"])
        _send(conn, item, branch_id, current["pickup_branch_id"])
        return HoldInfo(current["id"], current["pickup"], "in_transit", current["patron_id"])
    skipped: set[int] = set()
    while True:
        candidates = [c for c in conn.execute(_CANDIDATES, {"record": item["record_id"], "item": item["id"],
                                                            "today": today}).fetchall() if c["id"] not in skipped]
        if not candidates:
            return None
        chosen = None
        for cand in candidates:
            if cand["pickup_branch_id"] == branch_id or not _available_at(conn, item["record_id"],
                                                                          cand["pickup_branch_id"], item["id"]):
                chosen = cand
                break
        chosen = chosen or candidates[0]
        hold = conn.execute(
            """SELECT h.id, h.patron_id, h.status, h.suspended_until, h.pickup_branch_id, b.code AS pickup
               FROM hold h JOIN branch b ON b.id = h.pickup_branch_id WHERE h.id = %s FOR UPDATE OF h""",
            (chosen["id"],)).fetchone()
        if hold is None or hold["status"] != "placed" or (
                hold["suspended_until"] is not None and hold["suspended_until"] >= today):
            skipped.add(chosen["id"])  # cancelled or suspended meanwhile: the next one
            continue
        conn.execute("UPDATE hold SET trapped_item_id = %s, trapped_at = now(), updated_at = now() WHERE id = %s",
                     (item["id"], hold["id"]))
        if hold["pickup_branch_id"] == branch_id:
            _shelve(conn, hold["id"], item, branch_id, today)
            return HoldInfo(hold["id"], hold["pickup"], "on_shelf", hold["patron_id"])
        conn.execute("UPDATE hold SET status = 'in_transit' WHERE id = %s", (hold["id"],))
        _send(conn, item, branch_id, hold["pickup_branch_id"])
        return HoldInfo(hold["id"], hold["pickup"], "in_transit", hold["patron_id"])


def _send(conn: DB, item: DictRow, from_branch: int, to_branch: int) -> None:
    conn.execute("UPDATE item_transit SET received_at = now() WHERE item_id = %s AND received_at IS NULL",
                 (item["id"],))
    conn.execute("INSERT INTO item_transit (item_id, from_branch_id, to_branch_id, reason) VALUES (%s, %s, %s, 'hold')",
                 (item["id"], from_branch, to_branch))
    conn.execute("UPDATE item SET status = 'in_transit', current_branch_id = %s, updated_at = now() WHERE id = %s",
                 (from_branch, item["id"]))


def _shelve(conn: DB, hold_id: int, item: DictRow, branch_id: int, today: date) -> None:
    """確保: on the hold shelf until the deadline, counted in the pickup branch's open days."""
    deadline = load_calendar(conn, branch_id, today).add_open_days(today, pickup_days(conn))
    row = conn.execute(
        """UPDATE hold SET status = 'on_shelf', shelved_at = now(), pickup_deadline = %s, updated_at = now()
           WHERE id = %s RETURNING patron_id, record_id""", (deadline, hold_id)).fetchone()
    assert row is not None
    conn.execute("UPDATE item SET status = 'on_hold_shelf', current_branch_id = %s, updated_at = now() WHERE id = %s",
                 (branch_id, item["id"]))
    info = conn.execute("SELECT r.title, b.name AS branch FROM bib_record r, branch b WHERE r.id = %s AND b.id = %s",
                        (row["record_id"], branch_id)).fetchone()
    assert info is not None
    _notify(conn, "hold_ready", row["patron_id"], f"hold_ready:{hold_id}",
            {"title": info["title"], "branch": info["branch"], "deadline": deadline.isoformat()})


def waiting_for(conn: DB, item: DictRow) -> HoldInfo | None:
    row = conn.execute(
        """SELECT h.id, h.patron_id, h.status, b.code AS pickup FROM hold h JOIN branch b ON b.id = h.pickup_branch_id
           WHERE h.trapped_item_id = %s AND h.status IN ('in_transit', 'on_shelf')""", (item["id"],)).fetchone()
    return HoldInfo(row["id"], row["pickup"], row["status"], row["patron_id"]) if row else None


def holds_waiting(conn: DB, record_id: int, item_id: int) -> int:
    row = conn.execute(
        """SELECT count(*) AS n FROM hold WHERE status = 'placed' AND record_id = %s
             AND (item_id IS NULL OR item_id = %s) AND (suspended_until IS NULL OR suspended_until < current_date)""",
        (record_id, item_id)).fetchone()
    return int(row["n"]) if row else 0


def fulfilled(conn: DB, patron_id: int, item: DictRow) -> int | None:
    """After a check-out: the patron's active hold on this title is collected (whichever copy they took)."""
    row = conn.execute(
        """UPDATE hold SET status = 'collected', ended_at = now(), end_reason = 'collected', updated_at = now()
           WHERE id = (SELECT id FROM hold WHERE patron_id = %s AND record_id = %s
                         AND status IN ('placed', 'in_transit', 'on_shelf') ORDER BY placed_at LIMIT 1)
           RETURNING id""", (patron_id, item["record_id"])).fetchone()
    return int(row["id"]) if row else None


# -- the patron's changes ---------------------------------------------------------------------------

def _own_hold(conn: DB, hold_id: int, patron_id: int | None) -> DictRow:
    row = conn.execute("SELECT * FROM hold WHERE id = %s FOR UPDATE", (hold_id,)).fetchone()
    if row is None or (patron_id is not None and row["patron_id"] != patron_id):
        raise not_found("hold", str(hold_id))
    return row


def cancel_hold(conn: DB, actor: Actor, hold_id: int, *, patron_id: int | None = None,
                reason: str = "cancelled", today: date | None = None) -> None:
    """取消. A trapped copy goes to the next patron at once."""
    with conn.transaction():
        hold = _own_hold(conn, hold_id, patron_id)
        if hold["status"] not in ("placed", "in_transit", "on_shelf"):
            raise refusal("hold_not_active", "この予約は取り消せません（終了済み）。", "This hold has already ended.")
        conn.execute("""UPDATE hold SET status = 'cancelled', ended_at = now(), end_reason = %s, updated_at = now()
                        WHERE id = %s""", (reason, hold_id))
        if hold["status"] == "on_shelf":
            _reassign(conn, hold["trapped_item_id"], today or date.today())
        # Last: the audit chain's lock is held from here to the commit.
        record(conn, actor, "hold.cancel", "hold", hold_id, {"reason": reason, "was": hold["status"]})


def _reassign(conn: DB, item_id: int, today: date) -> HoldInfo | None:
    """A copy freed from the hold shelf: the next hold gets it, else it goes back to the shelf (or home)."""
    item = conn.execute("SELECT id, record_id, branch_id, current_branch_id, status FROM item WHERE id = %s FOR UPDATE",
                        (item_id,)).fetchone()
    assert item is not None
    nxt = trap(conn, item, item["current_branch_id"], today)
    if nxt is None:
        if item["branch_id"] != item["current_branch_id"]:
            _send(conn, item, item["current_branch_id"], item["branch_id"])
            conn.execute("UPDATE item_transit SET reason = 'return' WHERE item_id = %s AND received_at IS NULL",
                         (item_id,))
        else:
            conn.execute("UPDATE item SET status = 'available', updated_at = now() WHERE id = %s", (item_id,))
        conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (item["record_id"],))
    return nxt


def suspend_hold(conn: DB, actor: Actor, hold_id: int, until: date | None, *, patron_id: int | None = None) -> None:
    """保留 until a date (None resumes). Only a hold not yet trapped can be suspended; it keeps its place."""
    with conn.transaction():
        hold = _own_hold(conn, hold_id, patron_id)
        if hold["status"] != "placed":
            raise refusal("hold_not_suspendable", "確保済み・終了済みの予約は保留にできません。",
                          "Only a hold still waiting in the queue can be suspended.")
        if until is not None and until < date.today():
            raise invalid("until", until.isoformat(), "今日以降の日付にしてください。", "must be today or later")
        conn.execute("UPDATE hold SET suspended_until = %s, updated_at = now() WHERE id = %s", (until, hold_id))
        record(conn, actor, "hold.suspend", "hold", hold_id, {"until": until.isoformat() if until else None})


def change_pickup(conn: DB, actor: Actor, hold_id: int, branch: str, *, patron_id: int | None = None) -> None:
    """受取館の変更: allowed while the hold waits in the queue."""
    with conn.transaction():
        hold = _own_hold(conn, hold_id, patron_id)
        if hold["status"] != "placed":
            raise refusal("hold_not_changeable", "確保済み・終了済みの予約は受取館を変更できません。",
                          "The pickup branch can only change while the hold waits in the queue.")
        row = check_pickup_branch(conn, branch)
        conn.execute("UPDATE hold SET pickup_branch_id = %s, updated_at = now() WHERE id = %s", (row["id"], hold_id))
        record(conn, actor, "hold.pickup", "hold", hold_id, {"pickup": branch})


def expire_uncollected(conn: DB, actor: Actor, today: date | None = None) -> int:
    """Nightly: holds left on the shelf past their deadline expire; each copy goes to the next patron."""
    today = today or date.today()
    done = 0
    ids = [r["id"] for r in conn.execute(
        "SELECT id FROM hold WHERE status = 'on_shelf' AND pickup_deadline < %s ORDER BY id", (today,)).fetchall()]
    for hold_id in ids:
        with conn.transaction():
            hold = conn.execute("SELECT id, status, trapped_item_id FROM hold WHERE id = %s FOR UPDATE",
                                (hold_id,)).fetchone()
            if hold is None or hold["status"] != "on_shelf":
                continue
            conn.execute("""UPDATE hold SET status = 'expired', ended_at = now(), end_reason = 'not_collected',
                            updated_at = now() WHERE id = %s""", (hold_id,))
            _reassign(conn, hold["trapped_item_id"], today)
            record(conn, actor, "hold.expire", "hold", hold_id, {})
            done += 1
    return done


# -- reading ---------------------------------------------------------------------------------------

def patron_holds(conn: DB, patron_id: int, *, include_ended: bool = False) -> list[dict[str, Any]]:
    """A patron's holds with titles, queue positions and pickup details (one query)."""
    ended = "" if include_ended else "AND h.status IN ('placed', 'in_transit', 'on_shelf', 'in_locker')"
    rows = conn.execute(
        f"""SELECT h.id, h.record_id, r.title, h.status, h.placed_at, h.suspended_until, h.pickup_deadline,
                   b.code AS pickup_branch, b.name AS pickup_branch_name, b.name_en AS pickup_branch_name_en,
                   h.item_id, lc.label AS locker_label, lb.name AS locker_bank,
                   CASE WHEN h.status = 'placed' THEN
                     (SELECT count(*) FROM hold q WHERE q.record_id = h.record_id AND q.status = 'placed'
                        AND (q.placed_at, q.id) <= (h.placed_at, h.id)) ELSE 0 END AS position
            FROM hold h JOIN bib_record r ON r.id = h.record_id JOIN branch b ON b.id = h.pickup_branch_id
            LEFT JOIN locker_compartment lc ON lc.id = h.locker_compartment_id
            LEFT JOIN locker_bank lb ON lb.id = lc.bank_id
            WHERE h.patron_id = %s {ended} ORDER BY h.placed_at, h.id""", (patron_id,)).fetchall()
    return [dict(r) for r in rows]


def hold_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in row.items()}
    out["position"] = int(row.get("position") or 0)
    return out
