"""リクエスト (purchase requests): titles the library lacks, asked for by patrons from the OPAC.

States: received (受付) → ordering (購入手配中) or borrowing (相互貸借で取寄せ中) → arrived (到着: a hold is
placed for the requester); declined (謝絶, with a reason) and cancelled (取消) end a request. Each staff
decision is audited and announced to the patron by a `request_decided` notice, in the same transaction.

When the title arrives, staff link the request to its catalogue record and a hold is placed for the
requester, queued from the time of the request: patrons who reserved the new title after the request
was made wait behind the one who asked for it.

A request whose ISBN the catalogue already has (bib_record.isbns) is pointed out to staff.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from stdnum import isbn as stdnum_isbn
from stdnum.exceptions import ValidationError

from api.audit import Actor, record
from api.circulation.service import patron_refusals
from api.errors import ShokaError, invalid, not_found
from api.holds import service as holds
from api.patrons.service import standing

DB = Connection[DictRow]
STATUSES = ("received", "ordering", "borrowing", "declined", "arrived", "cancelled")
OPEN = ("received", "ordering", "borrowing")
STATUS_JA = {"received": "受付", "ordering": "購入手配中", "borrowing": "相互貸借で取寄せ中", "declined": "謝絶",
             "arrived": "到着（予約済み）", "cancelled": "取消"}
STATUS_EN = {"received": "received", "ordering": "being ordered", "borrowing": "borrowing from another library",
             "declined": "declined", "arrived": "arrived (hold placed)", "cancelled": "cancelled"}
# Staff decisions (arrival has its own function, as it needs the record).
DECISIONS = ("ordering", "borrowing", "declined", "cancelled")
TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"ordering", "borrowing", "declined", "cancelled", "arrived"}),
    "ordering": frozenset({"borrowing", "declined", "cancelled", "arrived"}),
    "borrowing": frozenset({"ordering", "declined", "cancelled", "arrived"}),
    "declined": frozenset(),
    "arrived": frozenset(),
    "cancelled": frozenset(),
}
MAX_LENGTHS = {"title": 500, "author": 200, "publisher": 200, "note": 1000, "reason": 500}
DASHES = "-‐‑‒–—―−ー"   # hyphens as typed on Japanese keyboards (ー: the long-vowel mark, often mistyped)
MAX_OPEN_DEFAULT = 10   # open requests per patron (library setting `requests.max_open`)


# -- pure ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestForm:
    """A purchase request as the patron wrote it, cleaned."""

    title: str
    pickup_branch: str
    author: str | None = None
    publisher: str | None = None
    isbn: str | None = None        # ISBN-13, digits only, as in bib_record.isbns
    note: str | None = None


def clean_isbn(value: str | None) -> str | None:
    """An ISBN-10 or -13, with or without hyphens, full- or half-width → ISBN-13 digits; '' → None."""
    text = unicodedata.normalize("NFKC", value or "").strip()
    compact = "".join(ch for ch in text if ch not in DASHES and not ch.isspace())
    if not compact:
        return None
    if compact.startswith("192") and len(compact) == 13:
        raise invalid("isbn", value, "これは本の裏表紙の2段目のバーコード（書籍JAN）です。"
                      "ISBN（978 または 979 で始まる番号）を入力してください。",
                      "this is the second (price) barcode on the back cover; enter the ISBN (978 or 979...)")
    try:
        return str(stdnum_isbn.to_isbn13(stdnum_isbn.validate(compact)))
    except ValidationError:
        raise invalid("isbn", value, "ISBN として正しくありません（桁数かチェックディジットが違います）。",
                      "not a valid ISBN (wrong length or check digit)") from None


def _text(field: str, value: str | None, *, one_line: bool = True) -> str | None:
    text = unicodedata.normalize("NFKC", value or "")
    text = " ".join(text.split()) if one_line else text.strip()
    if not text:
        return None
    if len(text) > MAX_LENGTHS[field]:
        raise invalid(field, value, f"{MAX_LENGTHS[field]}文字以内で入力してください。",
                      f"at most {MAX_LENGTHS[field]} characters")
    return text


def clean_request(*, title: str | None, pickup_branch: str | None, author: str | None = None,
                  publisher: str | None = None, isbn: str | None = None, note: str | None = None) -> RequestForm:
    """Check and normalise the form (NFKC, spaces collapsed); errors name the field and the value."""
    cleaned_title = _text("title", title)
    if cleaned_title is None:
        raise invalid("title", title or "", "書名を入力してください。", "the title is required")
    branch = (pickup_branch or "").strip()
    if not branch:
        raise invalid("pickup_branch", pickup_branch or "", "受取館を選んでください。", "choose a pickup branch")
    return RequestForm(cleaned_title, branch, _text("author", author), _text("publisher", publisher),
                       clean_isbn(isbn), _text("note", note, one_line=False))


def transition_refusal(current: str, new: str) -> ShokaError | None:
    """Why a request in `current` cannot move to `new` (None when it can)."""
    if new not in STATUSES:
        return invalid("status", new, f"{', '.join(STATUSES)} のいずれかです。", f"use one of {', '.join(STATUSES)}")
    if new in TRANSITIONS.get(current, frozenset()):
        return None
    return ShokaError("request_transition_refused",
                      f"status: 「{STATUS_JA.get(current, current)}」のリクエストを"
                      f"「{STATUS_JA[new]}」にはできません。",
                      f"status: a request that is {STATUS_EN.get(current, current)} cannot become {STATUS_EN[new]}.",
                      status=409, field="status")


# -- the patron's side ------------------------------------------------------------------------------

def _max_open(conn: DB) -> int:
    row = conn.execute("SELECT value FROM library_setting WHERE key = 'requests.max_open'").fetchone()
    return int(row["value"]) if row else MAX_OPEN_DEFAULT


def submit_request(conn: DB, actor: Actor, patron_id: int, form: RequestForm, *, today: date | None = None) -> int:
    """A patron's purchase request (from the OPAC, or entered by staff for them). Returns its id."""
    today = today or date.today()
    with conn.transaction():
        if conn.execute("SELECT 1 FROM patron WHERE id = %s FOR UPDATE", (patron_id,)).fetchone() is None:
            raise not_found("patron", str(patron_id))
        for problem in patron_refusals(standing(conn, patron_id, today), today):
            if problem.code != "patron_has_overdue":
                raise problem
        branch = holds.check_pickup_branch(conn, form.pickup_branch)
        mine = conn.execute("SELECT id, title, isbn FROM purchase_request WHERE patron_id = %s AND status = ANY(%s)",
                            (patron_id, list(OPEN))).fetchall()
        for other in mine:
            if (form.isbn and other["isbn"] == form.isbn) or (not form.isbn and other["title"] == form.title):
                shown = form.isbn or form.title
                raise ShokaError("request_exists", f"「{shown}」は既にリクエストしています。",
                                 f"You have already requested {shown!r}.", status=409,
                                 field="isbn" if form.isbn else "title")
        limit = _max_open(conn)
        if len(mine) >= limit:
            raise ShokaError("request_limit_reached",
                             f"受付中のリクエストは {limit} 件までです（現在 {len(mine)} 件）。",
                             f"You can have at most {limit} open requests (you have {len(mine)}).", status=409)
        row = conn.execute(
            """INSERT INTO purchase_request (patron_id, title, author, publisher, isbn, note, pickup_branch_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (patron_id, form.title, form.author, form.publisher, form.isbn, form.note, branch["id"])).fetchone()
        assert row is not None
        request_id = int(row["id"])
        record(conn, actor, "request.create", "purchase_request", request_id, {"pickup": branch["code"]})
        return request_id


_SELECT = """
    SELECT r.id, r.patron_id, r.title, r.author, r.publisher, r.isbn, r.note, r.status, r.decline_reason,
           r.record_id, r.hold_id, r.created_at, r.updated_at, r.decided_by,
           b.code AS pickup_branch, b.name AS pickup_branch_name, b.name_en AS pickup_branch_name_en,
           h.status AS hold_status
    FROM purchase_request r JOIN branch b ON b.id = r.pickup_branch_id LEFT JOIN hold h ON h.id = r.hold_id"""


def patron_requests(conn: DB, patron_id: int) -> list[dict[str, Any]]:
    """A patron's own requests, newest first, for My Library (no staff names)."""
    rows = conn.execute(_SELECT + " WHERE r.patron_id = %s ORDER BY r.created_at DESC, r.id DESC",
                        (patron_id,)).fetchall()
    return [{k: v for k, v in dict(r).items() if k not in ("patron_id", "decided_by")} for r in rows]


def cancel_own(conn: DB, actor: Actor, request_id: int, patron_id: int) -> None:
    """The patron withdraws a request staff have not acted on yet."""
    with conn.transaction():
        row = conn.execute("SELECT status FROM purchase_request WHERE id = %s AND patron_id = %s FOR UPDATE",
                           (request_id, patron_id)).fetchone()
        if row is None:
            raise not_found("request", str(request_id))
        if row["status"] != "received":
            raise ShokaError("request_not_cancellable",
                             "図書館で手配を始めたリクエストは取り消せません。図書館にお問い合わせください。",
                             "The library has already acted on this request; please contact the library.",
                             status=409)
        conn.execute("UPDATE purchase_request SET status = 'cancelled', updated_at = now() WHERE id = %s",
                     (request_id,))
        record(conn, actor, "request.cancel", "purchase_request", request_id, {"by": "patron"})


# -- the staff queue ---------------------------------------------------------------------------------

def _held(conn: DB, isbns: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Records the catalogue already has for these ISBNs (the GIN index on bib_record.isbns)."""
    if not isbns:
        return {}
    rows = conn.execute("SELECT id, title, isbns FROM bib_record WHERE isbns && %s::text[] ORDER BY id",
                        (isbns,)).fetchall()
    found: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        for isbn in set(r["isbns"]) & set(isbns):
            found.setdefault(isbn, []).append({"id": r["id"], "title": r["title"]})
    return found


def list_requests(conn: DB, *, status: str | None = "open", limit: int = 200) -> list[dict[str, Any]]:
    """The queue, oldest first: `status` 'open' (received, ordering, borrowing), one state, or None for all.
    Each open row carries `held`: catalogue records with its ISBN (the library may have it already)."""
    if status not in (None, "open", *STATUSES):
        raise invalid("status", status, f"open, {', '.join(STATUSES)} のいずれかです。",
                      f"use open or one of {', '.join(STATUSES)}")
    wanted = list(OPEN) if status == "open" else list(STATUSES) if status is None else [status]
    rows = [dict(r) for r in conn.execute(_SELECT + " WHERE r.status = ANY(%s) ORDER BY r.created_at, r.id LIMIT %s",
                                          (wanted, limit)).fetchall()]
    held = _held(conn, sorted({r["isbn"] for r in rows if r["isbn"] and r["status"] in OPEN}))
    for r in rows:
        r["held"] = held.get(r["isbn"], []) if r["status"] in OPEN else []
    return rows


def get_request(conn: DB, request_id: int) -> dict[str, Any]:
    row = conn.execute(_SELECT + " WHERE r.id = %s", (request_id,)).fetchone()
    if row is None:
        raise not_found("request", str(request_id))
    out = dict(row)
    out["held"] = _held(conn, [out["isbn"]]).get(out["isbn"], []) if out["isbn"] else []
    out["hold_position"] = holds.position(conn, out["hold_id"]) if out["hold_id"] else None
    return out


def _notify(conn: DB, row: DictRow, decision: str, reason: str | None = None) -> None:
    from api.notices.service import queue_notice

    data: dict[str, Any] = {"title": row["title"], "decision": decision, "branch": row["branch_name"],
                            "branch_en": row["branch_name_en"]}
    if reason:
        data["reason"] = reason
    queue_notice(conn, "request_decided", row["patron_id"], f"request_decided:{row['id']}:{decision}", data)


def _lock(conn: DB, request_id: int) -> DictRow:
    row = conn.execute(
        """SELECT r.id, r.patron_id, r.title, r.status, r.created_at, b.code AS branch, b.name AS branch_name,
                  b.name_en AS branch_name_en
           FROM purchase_request r JOIN branch b ON b.id = r.pickup_branch_id WHERE r.id = %s FOR UPDATE OF r""",
        (request_id,)).fetchone()
    if row is None:
        raise not_found("request", str(request_id))
    return row


def decide(conn: DB, actor: Actor, request_id: int, status: str, reason: str | None = None) -> None:
    """Staff move a request on: ordering (購入), borrowing (相互貸借), declined (謝絶, reason required) or
    cancelled. The patron is told of ordering, borrowing and declined by a `request_decided` notice."""
    if status not in DECISIONS:
        raise invalid("status", status, f"{', '.join(DECISIONS)} のいずれかです（到着は書誌を指定して登録します）。",
                      f"use one of {', '.join(DECISIONS)} (arrival is recorded with the record)")
    why = _text("reason", reason, one_line=False)
    if status == "declined" and why is None:
        raise invalid("reason", reason or "", "謝絶の理由を入力してください（利用者にお知らせします）。",
                      "a declined request needs a reason (the patron is told)")
    with conn.transaction():
        row = _lock(conn, request_id)
        problem = transition_refusal(row["status"], status)
        if problem is not None:
            raise problem
        conn.execute(
            """UPDATE purchase_request SET status = %s, decline_reason = %s, decided_by = %s, updated_at = now()
               WHERE id = %s""", (status, why if status == "declined" else None, actor.name, request_id))
        details: dict[str, Any] = {"status": status, "was": row["status"]}
        if status == "declined":
            details["reason"] = why
        record(conn, actor, f"request.{status}", "purchase_request", request_id, details)
        if status != "cancelled":  # a cancellation is the patron's wish, told at the counter or by phone
            _notify(conn, row, status, why)


@dataclass(frozen=True)
class Arrived:
    request_id: int
    hold_id: int
    position: int
    linked_existing: bool = False   # the patron had already reserved the record themselves


def mark_arrived(conn: DB, actor: Actor, request_id: int, record_id: int, *, today: date | None = None) -> Arrived:
    """到着: link the request to its catalogue record and place a hold for the requester, queued from the
    time of the request. A hold the patron already placed on that record is linked instead."""
    with conn.transaction():
        row = _lock(conn, request_id)
        problem = transition_refusal(row["status"], "arrived")
        if problem is not None:
            raise problem
        if conn.execute("SELECT 1 FROM bib_record WHERE id = %s", (record_id,)).fetchone() is None:
            raise invalid("record_id", record_id, "その書誌はありません。", "no such record")
        linked = False
        try:
            placed = holds.place_hold(conn, actor, row["patron_id"], record_id, row["branch"], placed_by=actor.name,
                                      today=today, request_id=request_id)
            hold_id = placed.id
            # Queued from the request: those who reserved the title after it was asked for come later.
            conn.execute("UPDATE hold SET placed_at = least(placed_at, %s) WHERE id = %s",
                         (row["created_at"], hold_id))
        except ShokaError as exc:
            if exc.code != "hold_exists":
                raise
            existing = conn.execute(
                """SELECT id FROM hold WHERE patron_id = %s AND record_id = %s
                     AND status IN ('placed', 'in_transit', 'on_shelf', 'in_locker') FOR UPDATE""",
                (row["patron_id"], record_id)).fetchone()
            assert existing is not None
            hold_id, linked = int(existing["id"]), True
            conn.execute("UPDATE hold SET request_id = coalesce(request_id, %s) WHERE id = %s", (request_id, hold_id))
        conn.execute(
            """UPDATE purchase_request SET status = 'arrived', record_id = %s, hold_id = %s, decided_by = %s,
                      updated_at = now() WHERE id = %s""", (record_id, hold_id, actor.name, request_id))
        record(conn, actor, "request.arrived", "purchase_request", request_id,
               {"record_id": record_id, "hold_id": hold_id, "was": row["status"], "linked_existing": linked})
        _notify(conn, row, "arrived")
        return Arrived(request_id, hold_id, holds.position(conn, hold_id), linked)
