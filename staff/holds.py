"""Staff console: holds (予約) — overview, holds on a title, the pull list (予約資料の抜き取りリスト), the hold
shelf (予約棚), expired holds and transfers (回送).

Patrons appear by card number only, never by name: the card is all the counter needs. A page that lists
cards is audited as `hold.list` with the cards shown. Seeing needs circulation:view; placing, cancelling,
trapping a pulled copy and running expiry need circulation:update and the form's CSRF token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.audit import record
from api.barcodes.nw7 import parse_scan, rules_for_branch
from api.barcodes.service import load_rules as load_barcode_rules
from api.branches import service as branches
from api.circulation.service import STATUS_JA, refusal
from api.deps import DB, get_conn
from api.errors import ShokaError, invalid, not_found
from api.holds import service as holds
from api.patrons.service import find_by_card
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
JST = ZoneInfo("Asia/Tokyo")
QUEUE_PAGE = 100          # placed holds per page of a title's queue
EXPIRED_DAYS = 30
TRAPPED = ("in_transit", "on_shelf", "in_locker")


# -- the pull list: which copies on the shelves fill waiting holds (pure) -------------------------------

@dataclass(frozen=True)
class WaitingHold:
    """A hold that trapping would serve now (placed, not suspended, its turn in a series), in queue order."""

    id: int
    record_id: int
    pickup_branch_id: int
    item_id: int | None = None      # an item-level hold: only this copy fills it


@dataclass(frozen=True)
class ShelfCopy:
    """A copy standing on the shelves (status available) at `branch_id`."""

    id: int
    record_id: int
    branch_id: int


def allocate(holds_in_queue: Sequence[WaitingHold], copies: Sequence[ShelfCopy]) -> dict[int, int]:
    """Copy id → hold id: the copies to pull from the shelves, and the hold each one fills.

    Per title, the first holds in the queue are served, as many as there are copies (an item-level hold
    only by its own copy). A hold takes a copy from its pickup branch's shelf when there is one (no
    transfer, as trapping at check-in prefers); holds whose branch has none take, after that, copies from
    the branches with the most left over, so no copy that a served hold could use in place is sent away.
    `copies` come in shelf order: the first is taken first.
    """
    queues: dict[int, list[WaitingHold]] = {}
    for hold in holds_in_queue:
        queues.setdefault(hold.record_id, []).append(hold)
    shelves: dict[int, dict[int, list[ShelfCopy]]] = {}
    for copy in copies:
        shelves.setdefault(copy.record_id, {}).setdefault(copy.branch_id, []).append(copy)
    out: dict[int, int] = {}
    for record_id, queue in queues.items():
        free = shelves.get(record_id, {})
        unclaimed = sum(len(c) for c in free.values())  # copies not yet taken nor promised to a remote hold
        remote: list[WaitingHold] = []
        for hold in queue:
            if unclaimed == 0:
                break
            if hold.item_id is not None:
                mine = [c for branch in free.values() for c in branch if c.id == hold.item_id]
                if not mine:
                    continue
                copy = mine[0]
                free[copy.branch_id].remove(copy)
            elif free.get(hold.pickup_branch_id):
                copy = free[hold.pickup_branch_id].pop(0)
            else:
                remote.append(hold)
                unclaimed -= 1
                continue
            out[copy.id] = hold.id
            unclaimed -= 1
        for hold in remote:
            branch = max(sorted(free), key=lambda b: len(free[b]))  # most copies left; lowest id on a tie
            out[free[branch].pop(0).id] = hold.id
    return out


# The holds trapping would consider (api/holds/service.py, _CANDIDATES): placed, not suspended today, and in
# a series only once no earlier volume is still active.
_WAITING = """
    SELECT h.id, h.record_id, h.pickup_branch_id, h.item_id, h.placed_at FROM hold h
    WHERE h.status = 'placed' AND h.record_id = ANY(%(records)s)
      AND (h.suspended_until IS NULL OR h.suspended_until < %(today)s)
      AND (h.series_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM hold e WHERE e.series_key = h.series_key AND e.series_seq < h.series_seq
              AND e.status IN ('placed', 'in_transit', 'on_shelf', 'in_locker')))
    ORDER BY h.record_id, h.placed_at, h.id"""


def pull_list(conn: DB, branch_id: int, today: date) -> list[dict[str, Any]]:
    """予約資料の抜き取りリスト: one line per copy to fetch from this branch's shelves, in shelf order."""
    # From the waiting holds to their titles' copies here: the LIMIT makes it an index probe per title, not a
    # scan of every item on the shelves.
    records = [r["record_id"] for r in conn.execute(
        """SELECT t.record_id FROM (SELECT DISTINCT record_id FROM hold WHERE status = 'placed') AS t
           CROSS JOIN LATERAL (SELECT 1 FROM item i WHERE i.record_id = t.record_id AND i.status = 'available'
                                 AND i.current_branch_id = %s LIMIT 1) AS here""", (branch_id,)).fetchall()]
    if not records:
        return []
    waiting = conn.execute(_WAITING, {"records": records, "today": today}).fetchall()
    if not waiting:
        return []
    copies = conn.execute(
        """SELECT i.id, i.record_id, i.current_branch_id, i.barcode, i.call_number, r.title,
                  l.code AS location, l.name AS location_name, l.name_en AS location_name_en
           FROM item i JOIN bib_record r ON r.id = i.record_id LEFT JOIN location l ON l.id = i.location_id
           WHERE i.record_id = ANY(%s) AND i.status = 'available'
             AND NOT EXISTS (SELECT 1 FROM hold t WHERE t.trapped_item_id = i.id
                               AND t.status IN ('in_transit', 'on_shelf', 'in_locker'))""",
        (sorted({w["record_id"] for w in waiting}),)).fetchall()
    copies = sorted(copies, key=_shelf_order)
    chosen = allocate([WaitingHold(w["id"], w["record_id"], w["pickup_branch_id"], w["item_id"]) for w in waiting],
                      [ShelfCopy(c["id"], c["record_id"], c["current_branch_id"]) for c in copies])
    by_hold = {w["id"]: w for w in waiting}
    oldest: dict[int, datetime] = {}
    count: dict[int, int] = {}
    for w in waiting:
        oldest.setdefault(w["record_id"], w["placed_at"])
        count[w["record_id"]] = count.get(w["record_id"], 0) + 1
    names = _branch_names(conn)
    lines = []
    for c in copies:
        if c["current_branch_id"] != branch_id or c["id"] not in chosen:
            continue
        hold = by_hold[chosen[c["id"]]]
        lines.append({"barcode": c["barcode"], "title": c["title"], "call_number": c["call_number"] or "",
                      "location": c["location"] or "", "location_name": c["location_name"] or "",
                      "location_name_en": c["location_name_en"] or c["location_name"] or "",
                      "oldest": _when(oldest[c["record_id"]]), "waiting": count[c["record_id"]],
                      "record_id": c["record_id"], "pickup": names[hold["pickup_branch_id"]],
                      "transfer": hold["pickup_branch_id"] != branch_id})
    return lines


def _shelf_order(copy: Any) -> tuple[str, str, str, str]:
    return (copy["location"] or "", copy["call_number"] or "", copy["title"], copy["barcode"])


# -- helpers ----------------------------------------------------------------------------------------------

def _when(value: datetime | None) -> str:
    return value.astimezone(JST).strftime("%Y-%m-%d %H:%M") if value else ""


def _branch_names(conn: DB) -> dict[int, dict[str, str]]:
    return {r["id"]: {"code": r["code"], "name": r["name"], "name_en": r["name_en"] or r["name"]}
            for r in conn.execute("SELECT id, code, name, name_en FROM branch").fetchall()}


def _branch(conn: DB, ctx: Console, requested: str) -> tuple[int, str]:
    """The branch a page is about: the one asked for, else the staff member's own, else the first."""
    code = requested.strip() or ctx.principal.branch_code
    if code:
        row = conn.execute("SELECT id, code FROM branch WHERE code = %s", (code,)).fetchone()
        if row is None:
            raise invalid("branch", code, "その館コードはありません。", "no such branch code")
    else:
        row = conn.execute("SELECT id, code FROM branch WHERE active ORDER BY id LIMIT 1").fetchone()
        if row is None:
            raise invalid("branch", "", "館が登録されていません。", "no branch has been set up")
    return int(row["id"]), str(row["code"])


def _common(conn: DB, code: str, page: str) -> dict[str, Any]:
    return {"branch": code, "branches": branches.list_branches(conn, active_only=True), "holds_page": page}


def _audit_cards(conn: DB, request: Request, ctx: Console, subject_type: str, subject_id: str | int,
                 page: str, cards: list[str]) -> None:
    """Listing patrons' cards is a view of personal data: one audit row naming the cards shown."""
    if cards:
        with conn.transaction():
            record(conn, ctx.actor(request), "hold.list", subject_type, subject_id,
                   {"page": page, "cards": sorted(set(cards))})


def _error(request: Request, exc: ShokaError) -> str:
    return exc.message(request_lang(request))


@router.get("/holds/holds.css")
def holds_css() -> Response:
    """The pages' few styles, and a print layout for the pull list (the console's CSP allows no inline styles)."""
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


CSS = """
.holds-nav ul { display: flex; flex-wrap: wrap; gap: .5rem; list-style: none; padding: 0; margin: 0 0 .5rem; }
.holds-nav a { display: block; padding: .3rem 1rem; border: 1px solid #ccc; border-radius: 4px; text-decoration: none; }
.holds-nav a[aria-current="page"] { background: #0b5394; color: #fff; }
tr.late td { background: #fde8e8; }
.late-mark { color: #b00020; font-weight: bold; }
.counts td { text-align: right; }
.tick { width: 2.5rem; text-align: center; }
@media print {
  .top, .main-nav, .holds-nav, .skip, form, .no-print { display: none !important; }
  main { padding: 0; max-width: none; }
  body { font-size: 10.5pt; }
  table { width: 100%; } th, td { border: 1px solid #000; padding: 2pt 4pt; }
  tr { break-inside: avoid; } thead { display: table-header-group; }
  a { color: inherit; text-decoration: none; }
}
"""


# -- overview ---------------------------------------------------------------------------------------------

@router.get("/holds")
def overview(request: Request, branch: str = "", ctx: Console = Depends(allowed("circulation", "view")),
             conn: DB = Depends(get_conn)) -> Response:
    """予約: what waits for this branch today, with links to each list."""
    branch_id, code = _branch(conn, ctx, branch)
    today = date.today()
    counts = conn.execute(
        """SELECT (SELECT count(*) FROM hold WHERE status = 'placed') AS placed,
                  (SELECT count(*) FROM hold WHERE status = 'placed' AND pickup_branch_id = %(b)s) AS placed_here,
                  (SELECT count(*) FROM hold WHERE status = 'on_shelf' AND pickup_branch_id = %(b)s) AS shelf,
                  (SELECT count(*) FROM hold WHERE status = 'on_shelf' AND pickup_branch_id = %(b)s
                     AND pickup_deadline < %(today)s) AS late,
                  (SELECT count(*) FROM item_transit WHERE received_at IS NULL AND to_branch_id = %(b)s) AS incoming,
                  (SELECT count(*) FROM item_transit WHERE received_at IS NULL AND from_branch_id = %(b)s)
                     AS outgoing,
                  (SELECT count(*) FROM hold WHERE status = 'expired' AND pickup_branch_id = %(b)s
                     AND ended_at >= now() - make_interval(days => %(days)s)) AS expired""",
        {"b": branch_id, "today": today, "days": EXPIRED_DAYS}).fetchone()
    busiest = conn.execute(
        """SELECT q.record_id, q.n, r.title FROM (
               SELECT record_id, count(*) AS n FROM hold WHERE status = 'placed' GROUP BY record_id
               ORDER BY count(*) DESC, record_id LIMIT 20) AS q
           JOIN bib_record r ON r.id = q.record_id ORDER BY q.n DESC, q.record_id""").fetchall()
    return render(request, "holds.html", ctx, counts=counts, pull=len(pull_list(conn, branch_id, today)),
                  busiest=busiest, days=EXPIRED_DAYS, **_common(conn, code, "overview"))


@router.get("/holds/records")
def find_record(record_id: str = "", ctx: Console = Depends(allowed("circulation", "view"))) -> Response:
    """The overview's 書誌ID box."""
    if not record_id.strip().isdigit():
        raise invalid("record_id", record_id, "書誌IDは数字です。", "a record ID is a number")
    return RedirectResponse(f"/holds/records/{int(record_id)}", status_code=303)


# -- holds on a title ---------------------------------------------------------------------------------------

def _title_page(request: Request, ctx: Console, conn: DB, record_id: int, page: int = 1, *, error: str = "",
                status_code: int = 200, form: dict[str, str] | None = None) -> Response:
    title = conn.execute("SELECT id, title FROM bib_record WHERE id = %s", (record_id,)).fetchone()
    if title is None:
        raise not_found("record", str(record_id))
    names = _branch_names(conn)
    copies = conn.execute(
        """SELECT i.barcode, i.status, i.call_number, i.current_branch_id, i.branch_id FROM item i
           WHERE i.record_id = %s AND i.status <> 'withdrawn' ORDER BY i.branch_id, i.barcode""",
        (record_id,)).fetchall()
    trapped = conn.execute(
        """SELECT h.id, h.patron_id, p.card, h.status, h.pickup_branch_id, h.placed_at, h.trapped_at,
                  h.pickup_deadline, i.barcode
           FROM hold h JOIN patron p ON p.id = h.patron_id LEFT JOIN item i ON i.id = h.trapped_item_id
           WHERE h.record_id = %s AND h.status = ANY(%s) ORDER BY h.trapped_at, h.id""",
        (record_id, list(TRAPPED))).fetchall()
    waiting = conn.execute("SELECT count(*) AS n FROM hold WHERE record_id = %s AND status = 'placed'",
                           (record_id,)).fetchone()
    total = int(waiting["n"]) if waiting else 0
    pages = max(1, -(-total // QUEUE_PAGE))
    page = min(max(page, 1), pages)
    queue = conn.execute(
        """SELECT h.id, h.patron_id, p.card, h.pickup_branch_id, h.placed_at, h.suspended_until, h.placed_by,
                  h.series_key, h.series_seq, i.barcode AS item_barcode,
                  row_number() OVER (ORDER BY h.placed_at, h.id) AS position
           FROM hold h JOIN patron p ON p.id = h.patron_id LEFT JOIN item i ON i.id = h.item_id
           WHERE h.record_id = %s AND h.status = 'placed'
           ORDER BY h.placed_at, h.id LIMIT %s OFFSET %s""",
        (record_id, QUEUE_PAGE, (page - 1) * QUEUE_PAGE)).fetchall()
    today = date.today()
    _audit_cards(conn, request, ctx, "record", record_id, "title",
                 [r["card"] for r in trapped] + [r["card"] for r in queue])
    trapped_rows = [{**dict(r), "pickup": names[r["pickup_branch_id"]], "placed_at": _when(r["placed_at"]),
                     "trapped_at": _when(r["trapped_at"])} for r in trapped]
    queue_rows = [{**dict(r), "pickup": names[r["pickup_branch_id"]], "placed_at": _when(r["placed_at"]),
                   "suspended": r["suspended_until"] is not None and r["suspended_until"] >= today}
                  for r in queue]
    copy_rows = [{**dict(c), "home": names[c["branch_id"]], "here": names[c["current_branch_id"]]} for c in copies]
    pickups = [b for b in branches.list_branches(conn, active_only=True) if b["takes_holds"]]
    default_pickup = ctx.principal.branch_code or (pickups[0]["code"] if pickups else "")
    return render(request, "holds_title.html", ctx, status_code=status_code, title=title, copies=copy_rows,
                  trapped=trapped_rows, queue=queue_rows, total=total, page=page, pages=pages, pickups=pickups,
                  error=error, form=form or {"card": "", "pickup_branch": default_pickup, "item": ""},
                  done=request.query_params.get("done", ""), placed_position=request.query_params.get("position", ""),
                  **_common(conn, ctx.principal.branch_code or "", "title"))


@router.get("/holds/records/{record_id}")
def title_holds(record_id: int, request: Request, page: int = 1,
                ctx: Console = Depends(allowed("circulation", "view")), conn: DB = Depends(get_conn)) -> Response:
    """Holds on a title (書誌ごとの予約): the trapped ones, then the queue in order with positions."""
    return _title_page(request, ctx, conn, record_id, page)


@router.post("/holds/records/{record_id}")
def title_place(record_id: int, request: Request, card: str = Form(""), pickup_branch: str = Form(""),
                item: str = Form(""), ctx: Console = Depends(allowed("circulation", "update", post=True)),
                conn: DB = Depends(get_conn)) -> Response:
    """予約受付 at the counter: a hold for the patron with this card (item-level when a barcode is given)."""
    form = {"card": card, "pickup_branch": pickup_branch, "item": item}
    try:
        code = card.strip()
        if not code:
            raise invalid("card", card, "利用者カードの番号を入力してください。", "enter the patron's card number")
        patron = find_by_card(conn, code)
        if patron is None:
            raise ShokaError("unknown_patron", f"card: 利用者番号「{code}」の利用者はいません。",
                             f"card: no patron with card {code!r}.", status=404, field="card")
        item_id = None
        if item.strip():
            row = conn.execute("SELECT id FROM item WHERE barcode = %s", (item.strip(),)).fetchone()
            if row is None:
                raise invalid("item", item.strip(), "その資料はありません。", "no such item")
            item_id = int(row["id"])
        placed = holds.place_hold(conn, ctx.actor(request), int(patron["id"]), record_id, pickup_branch,
                                  item_id=item_id, placed_by=ctx.principal.username)
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _title_page(request, ctx, conn, record_id, error=_error(request, exc), status_code=exc.status,
                           form=form)
    return RedirectResponse(f"/holds/records/{record_id}?done=placed&position={placed.position}", status_code=303)


@router.post("/holds/{hold_id}/cancel")
def hold_cancel(hold_id: int, request: Request, ctx: Console = Depends(allowed("circulation", "update", post=True)),
                conn: DB = Depends(get_conn)) -> Response:
    """取消 by staff; a copy on the hold shelf goes to the next patron at once."""
    row = conn.execute("SELECT record_id FROM hold WHERE id = %s", (hold_id,)).fetchone()
    if row is None:
        raise not_found("hold", str(hold_id))
    try:
        holds.cancel_hold(conn, ctx.actor(request), hold_id, reason="staff")
    except ShokaError as exc:
        return _title_page(request, ctx, conn, int(row["record_id"]), error=_error(request, exc),
                           status_code=exc.status)
    return RedirectResponse(f"/holds/records/{row['record_id']}?done=cancelled", status_code=303)


# -- pull list ----------------------------------------------------------------------------------------------

def _pull_page(request: Request, ctx: Console, conn: DB, branch: str, *, scanned: dict[str, Any] | None = None,
               error: str = "", status_code: int = 200) -> Response:
    branch_id, code = _branch(conn, ctx, branch)
    return render(request, "holds_pull.html", ctx, status_code=status_code,
                  lines=pull_list(conn, branch_id, date.today()), scanned=scanned, error=error,
                  printed_at=_when(datetime.now(JST)), **_common(conn, code, "pull"))


@router.get("/holds/pull")
def pull(request: Request, branch: str = "", ctx: Console = Depends(allowed("circulation", "view")),
         conn: DB = Depends(get_conn)) -> Response:
    return _pull_page(request, ctx, conn, branch)


@router.post("/holds/pull")
def pull_scan(request: Request, branch: str = Form(""), item: str = Form(""),
              ctx: Console = Depends(allowed("circulation", "update", post=True)),
              conn: DB = Depends(get_conn)) -> Response:
    """A copy fetched from the shelf is scanned here: it is trapped for the next hold at once."""
    try:
        branch_id, code = _branch(conn, ctx, branch)
        scanned = trap_pulled(conn, item, branch_id, code, date.today())
    except ShokaError as exc:
        return _pull_page(request, ctx, conn, branch, error=_error(request, exc), status_code=exc.status)
    return _pull_page(request, ctx, conn, branch, scanned=scanned)


def trap_pulled(conn: DB, raw: str, branch_id: int, branch_code: str, today: date) -> dict[str, Any]:
    """Trap a copy taken from the shelves at `branch_id` (as check-in would): on the hold shelf here, or in
    transit to the pickup branch. Refused when the copy is not on the shelf."""
    code = parse_scan(raw, rules_for_branch(load_barcode_rules(conn), branch_code), "item")
    with conn.transaction():
        item = conn.execute(
            """SELECT i.id, i.record_id, i.barcode, i.status, i.branch_id, i.current_branch_id, r.title
               FROM item i JOIN bib_record r ON r.id = i.record_id WHERE i.barcode = %s FOR UPDATE OF i""",
            (code,)).fetchone()
        if item is None:
            raise refusal("unknown_item", f"item: 資料番号「{code}」の資料はありません。読み取り直してください。",
                          f"item: no item with barcode {code!r}; scan it again.", 404, "item")
        if item["status"] != "available":
            shown = STATUS_JA[item["status"]]
            raise refusal("item_not_on_shelf", f"item: 資料「{code}」は書架にありません（{shown}）。",
                          f"item: {code!r} is not on the shelf (its status is {item['status']}).", 409, "item")
        hold = holds.trap(conn, item, branch_id, today)
        if hold is not None:
            conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (item["record_id"],))
    names = {b["code"]: b for b in _branch_names(conn).values()}
    return {"barcode": code, "title": item["title"], "status": hold.status if hold else "",
            "pickup": names[hold.pickup_branch] if hold else None}


# -- hold shelf ---------------------------------------------------------------------------------------------

@router.get("/holds/shelf")
def shelf(request: Request, branch: str = "", ctx: Console = Depends(allowed("circulation", "view")),
          conn: DB = Depends(get_conn)) -> Response:
    """予約棚: holds waiting to be collected here, earliest deadline first; past deadlines marked."""
    branch_id, code = _branch(conn, ctx, branch)
    today = date.today()
    rows = conn.execute(
        """SELECT h.id, h.patron_id, p.card, h.record_id, r.title, i.barcode, i.call_number, h.shelved_at,
                  h.pickup_deadline
           FROM hold h JOIN patron p ON p.id = h.patron_id JOIN bib_record r ON r.id = h.record_id
           JOIN item i ON i.id = h.trapped_item_id
           WHERE h.status = 'on_shelf' AND h.pickup_branch_id = %s ORDER BY h.pickup_deadline, h.id""",
        (branch_id,)).fetchall()
    _audit_cards(conn, request, ctx, "branch", code, "shelf", [r["card"] for r in rows])
    lines = [{**dict(r), "shelved_at": _when(r["shelved_at"]), "late": r["pickup_deadline"] < today} for r in rows]
    return render(request, "holds_shelf.html", ctx, lines=lines, today=today, late=sum(1 for x in lines if x["late"]),
                  expired=request.query_params.get("expired", ""), **_common(conn, code, "shelf"))


@router.post("/holds/shelf/expire")
def shelf_expire(request: Request, branch: str = Form(""),
                 ctx: Console = Depends(allowed("circulation", "update", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    """Run now what the nightly batch does: holds past their pickup deadline expire and each copy goes to the
    next patron (or back to the shelf). The batch has no branch filter, so this covers every branch."""
    _, code = _branch(conn, ctx, branch)
    done = holds.expire_uncollected(conn, ctx.actor(request), date.today())
    return RedirectResponse(f"/holds/shelf?branch={code}&expired={done}", status_code=303)


# -- expired holds ------------------------------------------------------------------------------------------

@router.get("/holds/expired")
def expired(request: Request, branch: str = "", ctx: Console = Depends(allowed("circulation", "view")),
            conn: DB = Depends(get_conn)) -> Response:
    """期限切れ: holds not collected by their deadline in the last 30 days, and where each copy is now."""
    branch_id, code = _branch(conn, ctx, branch)
    names = _branch_names(conn)
    rows = conn.execute(
        """SELECT h.id, h.patron_id, p.card, h.record_id, r.title, h.pickup_deadline, h.ended_at, i.barcode,
                  i.status AS item_status, i.current_branch_id
           FROM hold h JOIN patron p ON p.id = h.patron_id JOIN bib_record r ON r.id = h.record_id
           LEFT JOIN item i ON i.id = h.trapped_item_id
           WHERE h.status = 'expired' AND h.pickup_branch_id = %s
             AND h.ended_at >= now() - make_interval(days => %s)
           ORDER BY h.ended_at DESC, h.id DESC""", (branch_id, EXPIRED_DAYS)).fetchall()
    _audit_cards(conn, request, ctx, "branch", code, "expired", [r["card"] for r in rows])
    lines = [{**dict(r), "ended_at": _when(r["ended_at"]),
              "here": names[r["current_branch_id"]] if r["current_branch_id"] else None} for r in rows]
    return render(request, "holds_expired.html", ctx, lines=lines, days=EXPIRED_DAYS, **_common(conn, code, "expired"))


# -- transfers ----------------------------------------------------------------------------------------------

@router.get("/holds/transfers")
def transfers(request: Request, branch: str = "", ctx: Console = Depends(allowed("circulation", "view")),
              conn: DB = Depends(get_conn)) -> Response:
    """回送: copies in transit from this branch and to it, not yet received, oldest first."""
    branch_id, code = _branch(conn, ctx, branch)
    names = _branch_names(conn)
    sql = """SELECT x.id, x.reason, x.sent_at, x.from_branch_id, x.to_branch_id, i.barcode, i.call_number, r.title,
                    i.record_id
             FROM item_transit x JOIN item i ON i.id = x.item_id JOIN bib_record r ON r.id = i.record_id
             WHERE x.received_at IS NULL AND x.{end}_branch_id = %s ORDER BY x.sent_at, x.id"""

    def rows(end: str) -> list[dict[str, Any]]:
        return [{**dict(r), "sent_at": _when(r["sent_at"]), "source": names[r["from_branch_id"]],
                 "destination": names[r["to_branch_id"]]}
                for r in conn.execute(sql.format(end=end), (branch_id,)).fetchall()]

    return render(request, "holds_transfers.html", ctx, outgoing=rows("from"), incoming=rows("to"),
                  **_common(conn, code, "transfers"))
