"""Staff console: the circulation counter (貸出・返却カウンター), built for a barcode scanner.

A keyboard-wedge scanner types the code and Enter, so every screen is one form whose scan field has
the focus when the page arrives; the next scan goes straight in. Every alert has its own colour and
sound (staff/static/counter.js plays it; the page works without JavaScript, silently).

No personal data in URLs: the patron's card travels in POST bodies only, and the counter pages are
POST → page (no redirect carrying state). The patron is looked up once per visit with an audit row
(patron.view); loans themselves are not audited (see api/circulation/service.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.audit import record
from api.circulation import receipts, service
from api.deps import DB, get_conn
from api.errors import ShokaError
from api.patrons import service as patrons
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
WORKSTATION_COOKIE = "shoka_workstation"


@dataclass(frozen=True)
class Alert:
    """One message on the counter screen. `tone` picks colour and sound: ok, warn, error, info, hold."""

    tone: str
    text: str
    code: str = ""
    overridable: bool = False


# The colour/sound family of each outcome; anything not listed is an error.
TONES = {
    "checkout": "ok", "checkin": "ok", "renew": "ok", "already_on_loan_to_patron": "info",
    "not_on_loan": "info", "transfer": "transfer", "hold": "hold", "found": "info", "overdue": "warn",
    "limit_reached": "warn", "patron_has_overdue": "warn", "patron_expired": "warn",
    "item_on_loan": "error", "patron_blocked": "error", "patron_suspended": "error",
}


def _alert(exc: ShokaError, lang: str) -> Alert:
    return Alert(TONES.get(exc.code, "error"), exc.message(lang), exc.code, exc.code in service.OVERRIDABLE)


def _workstation(request: Request, conn: DB) -> dict[str, Any] | None:
    code = request.cookies.get(WORKSTATION_COOKIE)
    if not code:
        return None
    try:
        return dict(receipts.get_workstation(conn, code))
    except ShokaError:
        return None


def _branch(ctx: Console, ws: dict[str, Any] | None) -> str | None:
    return ws["branch"] if ws else ctx.principal.branch_code


def _patron_panel(conn: DB, card: str, today: date) -> dict[str, Any] | None:
    row = patrons.find_by_card(conn, card)
    if row is None:
        return None
    standing = patrons.standing(conn, row["id"], today)
    return {"row": row, "standing": standing, "loans": patrons.current_loans(conn, row["id"], today)}


# When several alerts come at once, the one that needs the clerk most sets the sound.
SOUND_PRIORITY = ("error", "warn", "hold", "transfer", "info", "ok")


def _sound(alerts: list[Alert]) -> str | None:
    tones = {a.tone for a in alerts}
    return next((t for t in SOUND_PRIORITY if t in tones), None)


def _page(request: Request, ctx: Console, conn: DB, mode: str, **context: Any) -> Response:
    for key in ("alerts", "done", "done_titles", "receipt_lines"):
        context.setdefault(key, [])
    for key in ("panel", "card", "refused_item", "patron_value"):
        context.setdefault(key, None)
    context["sound"] = _sound(context["alerts"])
    ws = _workstation(request, conn)
    workstations = conn.execute(
        "SELECT w.code, w.name, b.code AS branch FROM workstation w JOIN branch b ON b.id = w.branch_id "
        "ORDER BY w.code").fetchall()
    return render(request, "counter.html", ctx, mode=mode, workstation=ws, workstations=workstations,
                  counter_branch=_branch(ctx, ws), **context)


@router.get("/circulation")
def counter_home(ctx: Console = Depends(allowed("circulation", "view"))) -> Response:
    return RedirectResponse("/circulation/checkout", status_code=303)


def _counter_form(mode: str) -> Any:
    def page(request: Request, conn: DB = Depends(get_conn),
             ctx: Console = Depends(allowed("circulation", "view"))) -> Response:
        return _page(request, ctx, conn, mode)

    return page


for _mode in ("checkout", "checkin", "renew"):
    router.add_api_route(f"/circulation/{_mode}", _counter_form(_mode), methods=["GET"], name=f"counter_{_mode}")


@router.post("/circulation/checkout")
def counter_checkout(request: Request, patron: str = Form(""), item: str = Form(""),
                     done: list[str] = Form(default_factory=list), override: str = Form(""),
                     checkin_first: str = Form(""), conn: DB = Depends(get_conn),
                     ctx: Console = Depends(allowed("circulation", "update", post=True))) -> Response:
    """One scan at the check-out counter: first the patron's card, then items one by one."""
    lang = request_lang(request)
    today = date.today()
    ws = _workstation(request, conn)
    branch = _branch(ctx, ws)
    alerts: list[Alert] = []
    card = patron.strip()
    if not card:
        return _page(request, ctx, conn, "checkout")
    panel = _patron_panel(conn, card, today)
    if panel is None:
        try:
            service.checkout(conn, ctx.actor(request), card, "-", branch=branch,
                             staff_branch=ctx.principal.branch_code)
        except ShokaError as exc:  # says why: unknown patron, an item scanned here, a book's JAN ...
            if exc.code != "unknown_item":
                return _page(request, ctx, conn, "checkout", alerts=[_alert(exc, lang)], patron_value=card)
        return _page(request, ctx, conn, "checkout", alerts=[Alert("error", service._unknown_patron(
            conn, card, []).message(lang), "unknown_patron")], patron_value=card)
    if not item.strip() and not done:
        # The patron has just been brought up at the counter: that is a view of their record.
        with conn.transaction():
            record(conn, ctx.actor(request), "patron.view", "patron", panel["row"]["card"],
                   {"id": panel["row"]["id"], "via": "counter"})
        for reason in _standing_alerts(panel, lang):
            alerts.append(reason)
    elif item.strip():
        if checkin_first:
            try:
                service.checkin(conn, ctx.actor(request), item, branch=branch, staff_branch=ctx.principal.branch_code)
            except ShokaError as exc:
                alerts.append(_alert(exc, lang))
        try:
            result = service.checkout(conn, ctx.actor(request), card, item, branch=branch,
                                      staff_branch=ctx.principal.branch_code,
                                      override=[override] if override else [])
            if result.already_on_loan_to_patron:
                alerts.append(Alert("info", _t(lang, f"「{result.title}」はこの利用者に貸出済みです（二重読み取り）。",
                                               f"{result.title!r} is already on loan to this patron (scanned twice)."),
                                    "already_on_loan_to_patron"))
            else:
                done = [*done, result.item]
                due = result.due_date.isoformat()
                alerts.append(Alert("ok", _t(lang, f"貸出しました：「{result.title}」 返却期限 {due}",
                                             f"Checked out: {result.title!r}, due {due}"), "checkout"))
        except ShokaError as exc:
            alerts.append(_alert(exc, lang))
            if exc.code in ("patron_blocked", "patron_suspended", "patron_expired", "patron_has_overdue",
                            "limit_reached", "item_on_loan"):
                return _page(request, ctx, conn, "checkout", alerts=alerts, panel=_patron_panel(conn, card, today),
                             card=card, done=done, refused_item=item.strip())
        panel = _patron_panel(conn, card, today)
    return _page(request, ctx, conn, "checkout", alerts=alerts, panel=panel, card=card, done=done)


def _t(lang: str, ja: str, en: str) -> str:
    return en if lang == "en" else ja


def _standing_alerts(panel: dict[str, Any], lang: str) -> list[Alert]:
    standing = panel["standing"]
    out = []
    for block in standing.blocks:
        if block.kind == "manual":
            out.append(Alert("error", _t(lang, f"貸出禁止：{block.reason}", f"Blocked: {block.reason}"),
                             "patron_blocked"))
    if standing.suspended_until:
        until = standing.suspended_until.isoformat()
        out.append(Alert("error", _t(lang, f"貸出停止中（{until} まで）", f"Lending suspended until {until}"),
                         "patron_suspended"))
    if standing.expired:
        out.append(Alert("warn", _t(lang, "利用者カードの有効期限が切れています。", "The card has expired."),
                         "patron_expired"))
    if standing.overdue_loans:
        out.append(Alert("warn", _t(lang, f"延滞資料が {standing.overdue_loans} 点あります。",
                                    f"{standing.overdue_loans} overdue item(s)."), "patron_has_overdue"))
    return out


@router.post("/circulation/checkin")
def counter_checkin(request: Request, item: str = Form(""), done: list[str] = Form(default_factory=list),
                    conn: DB = Depends(get_conn),
                    ctx: Console = Depends(allowed("circulation", "update", post=True))) -> Response:
    lang = request_lang(request)
    ws = _workstation(request, conn)
    alerts: list[Alert] = []
    if item.strip():
        try:
            result = service.checkin(conn, ctx.actor(request), item, branch=_branch(ctx, ws),
                                     staff_branch=ctx.principal.branch_code)
            alerts.extend(_checkin_alerts(result, lang))
            if result.loan_id is not None or result.transit_received:
                done = [*done, result.item]
        except ShokaError as exc:
            alerts.append(_alert(exc, lang))
    return _page(request, ctx, conn, "checkin", alerts=alerts, done=done, done_titles=_titles(conn, done))


def _checkin_alerts(result: service.CheckinResult, lang: str) -> list[Alert]:
    out: list[Alert] = []
    if "not_on_loan" in result.alerts:
        out.append(Alert("info", _t(lang, f"「{result.title}」は貸出中ではありません（返却済み）。",
                                    f"{result.title!r} is not on loan (already checked in)."), "not_on_loan"))
    elif result.transit_received:
        out.append(Alert("ok", _t(lang, f"回送資料を受け取りました：「{result.title}」",
                                  f"Transit received: {result.title!r}"), "checkin"))
    else:
        out.append(Alert("ok", _t(lang, f"返却しました：「{result.title}」", f"Checked in: {result.title!r}"),
                         "checkin"))
    if "found" in result.alerts:
        out.append(Alert("info", _t(lang, "不明・紛失扱いだった資料です。貸出可に戻しました。",
                                    "This item was missing or lost; it is available again."), "found"))
    if result.overdue_days:
        text = _t(lang, f"延滞 {result.overdue_days} 日でした。", f"Returned {result.overdue_days} day(s) late.")
        if result.suspended_until:
            text += _t(lang, f" {result.suspended_until.isoformat()} まで貸出停止にしました。",
                       f" Lending suspended until {result.suspended_until.isoformat()}.")
        out.append(Alert("warn", text, "overdue"))
    if result.transfer_to:
        out.append(Alert("transfer", _t(lang, f"他館の資料です。回送してください → {result.transfer_to}",
                                        f"Belongs to another branch: send it to {result.transfer_to}"), "transfer"))
    if result.hold is not None:
        place = _t(lang, "予約棚へ" if result.hold.status == "on_shelf" else f"{result.hold.pickup_branch} へ回送",
                   "to the hold shelf" if result.hold.status == "on_shelf" else f"send to {result.hold.pickup_branch}")
        out.append(Alert("hold", _t(lang, f"予約があります。{place}", f"A hold is waiting: {place}"), "hold"))
    return out


def _titles(conn: DB, barcodes: list[str]) -> list[dict[str, Any]]:
    if not barcodes:
        return []
    rows = conn.execute("SELECT i.barcode, r.title, i.status FROM item i JOIN bib_record r ON r.id = i.record_id "
                        "WHERE i.barcode = ANY(%s)", (barcodes,)).fetchall()
    found = {r["barcode"]: r for r in rows}
    return [dict(found[b]) for b in reversed(barcodes) if b in found]


@router.post("/circulation/renew")
def counter_renew(request: Request, item: str = Form(""), done: list[str] = Form(default_factory=list),
                  conn: DB = Depends(get_conn),
                  ctx: Console = Depends(allowed("circulation", "update", post=True))) -> Response:
    lang = request_lang(request)
    ws = _workstation(request, conn)
    alerts: list[Alert] = []
    if item.strip():
        try:
            result = service.renew(conn, ctx.actor(request), item, branch=_branch(ctx, ws),
                                   staff_branch=ctx.principal.branch_code)
            done = [*done, result.item]
            due = result.due_date.isoformat()
            alerts.append(Alert("ok", _t(lang, f"延長しました：「{result.title}」 新しい返却期限 {due}",
                                         f"Renewed: {result.title!r}, now due {due}"), "renew"))
        except ShokaError as exc:
            alerts.append(_alert(exc, lang))
    return _page(request, ctx, conn, "renew", alerts=alerts, done=done, done_titles=_titles(conn, done))


@router.post("/circulation/receipt")
def counter_receipt(request: Request, kind: str = Form(...), done: list[str] = Form(default_factory=list),
                    patron: str = Form(""), reprint: str = Form(""), conn: DB = Depends(get_conn),
                    ctx: Console = Depends(allowed("circulation", "print", post=True))) -> Response:
    """Print the receipt for this visit (or reprint the last one), then start the next visit."""
    lang = request_lang(request)
    ws = _workstation(request, conn)
    mode = kind if kind in ("checkout", "checkin", "renew") else "checkout"
    try:
        if reprint:
            outcome = receipts.reprint_last(conn, ctx.actor(request), workstation=ws["code"] if ws else None)
        elif not done:
            return _page(request, ctx, conn, mode)
        else:
            outcome = receipts.issue(conn, ctx.actor(request), mode, done, patron_card=patron or None,
                                     workstation=ws["code"] if ws else None, branch=_branch(ctx, ws),
                                     library_name=request.app.state.settings.library_name, lang=lang)
    except ShokaError as exc:
        return _page(request, ctx, conn, mode, alerts=[_alert(exc, lang)])
    if outcome.printed:
        alerts = [Alert("ok", _t(lang, "レシートを印刷しました。", "Receipt printed."), "receipt")]
    else:
        reason = outcome.error.message(lang) if outcome.error else ""
        alerts = [Alert("warn", _t(lang, f"貸出・返却は完了しています。レシートは印刷できませんでした：{reason}",
                                   f"The transactions are done; the receipt was not printed: {reason}"),
                        "receipt_failed")]
    return _page(request, ctx, conn, mode, alerts=alerts, receipt_lines=outcome.lines,
                 receipt_failed=not outcome.printed)


@router.post("/circulation/workstation")
def choose_workstation(request: Request, workstation: str = Form(""), conn: DB = Depends(get_conn),
                       ctx: Console = Depends(allowed("circulation", "view", post=True))) -> Response:
    """This PC is counter `workstation` (its branch and receipt printer); remembered in a cookie."""
    response = RedirectResponse("/circulation/checkout", status_code=303)
    if workstation:
        receipts.get_workstation(conn, workstation)
        response.set_cookie(WORKSTATION_COOKIE, workstation, max_age=5 * 365 * 86400, httponly=True,
                            samesite="strict")
    else:
        response.delete_cookie(WORKSTATION_COOKIE)
    return response


# -- 団体貸出: groups and their loans -------------------------------------------------------------

@router.get("/circulation/groups")
def group_list(request: Request, conn: DB = Depends(get_conn),
               ctx: Console = Depends(allowed("circulation", "view"))) -> Response:
    """Registered groups (schools, reading circles) with how much they have out and when it is due."""
    groups = conn.execute(
        """SELECT p.id, p.name, c.name AS category_name, c.name_en AS category_name_en, b.code AS branch,
                  count(l.id) AS loans, count(l.id) FILTER (WHERE l.due_date < current_date) AS overdue,
                  min(l.due_date) AS next_due
           FROM patron p JOIN patron_category c ON c.code = p.category AND c.is_group
           JOIN branch b ON b.id = p.home_branch_id
           LEFT JOIN loan l ON l.patron_id = p.id AND l.returned_at IS NULL
           GROUP BY p.id, c.name, c.name_en, b.code ORDER BY p.reading_key""").fetchall()
    return render(request, "counter_groups.html", ctx, groups=groups)


@router.get("/circulation/groups/{patron_id}")
def group_loans(patron_id: int, request: Request, conn: DB = Depends(get_conn),
                ctx: Console = Depends(allowed("circulation", "view"))) -> Response:
    """One group's loans, for the counter and for the list handed to the school (a view: audited)."""
    with conn.transaction():
        group = conn.execute(
            """SELECT p.id, p.card, p.name, p.contact_name, p.phone, p.expires_on, c.name AS category_name,
                      c.name_en AS category_name_en
               FROM patron p JOIN patron_category c ON c.code = p.category AND c.is_group WHERE p.id = %s""",
            (patron_id,)).fetchone()
        if group is None:
            raise ShokaError("not_found", "その団体はありません。", "No such group.", status=404)
        record(conn, ctx.actor(request), "patron.view", "patron", group["card"], {"id": patron_id, "via": "group"})
    return render(request, "counter_group.html", ctx, group=group,
                  loans=patrons.current_loans(conn, patron_id, date.today()))
