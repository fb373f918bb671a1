"""Staff console: patrons (利用者の登録・検索・照会).

Every link and form action carries the internal patron id only: card numbers and names stay in
query strings (the search box) and POST bodies, never in paths. Opening a record or searching is
audited by the service functions these pages call.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.branches import service as branches
from api.deps import DB, get_conn
from api.errors import ShokaError, invalid
from api.mylibrary import service as mylibrary
from api.patrons import service
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
TEXT_FIELDS = ("card", "name", "name_reading", "birth_date", "category", "branch", "postal_code", "address", "phone",
               "email", "expires_on", "notes", "contact_name")


def _error(request: Request, exc: ShokaError) -> str:
    return exc.message(request_lang(request))


def _parse_date(field: str, value: str) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(field, value, "日付は 2026-04-01 の形で入力してください。", "use the form 2026-04-01") from None


def patron_form(card: str = Form(""), name: str = Form(""), name_reading: str = Form(""),
                birth_date: str = Form(""), category: str = Form(""), branch: str = Form(""),
                postal_code: str = Form(""), address: str = Form(""), phone: str = Form(""), email: str = Form(""),
                expires_on: str = Form(""), notes: str = Form(""), contact_name: str = Form(""),
                keep_history: str = Form("")) -> dict[str, Any]:
    """The registration / edit form as submitted (strings; the checkbox as a bool)."""
    return {"card": card, "name": name, "name_reading": name_reading, "birth_date": birth_date,
            "category": category, "branch": branch, "postal_code": postal_code, "address": address, "phone": phone,
            "email": email, "expires_on": expires_on, "notes": notes, "contact_name": contact_name,
            "keep_history": keep_history == "on"}


def _form_context(conn: DB) -> dict[str, Any]:
    return {"categories": service.list_categories(conn), "branches": branches.list_branches(conn, active_only=True)}


def _values_of(patron: dict[str, Any]) -> dict[str, Any]:
    values = {k: patron.get(k) for k in TEXT_FIELDS}
    for key in ("birth_date", "expires_on"):
        day = patron.get(key)
        values[key] = day.isoformat() if isinstance(day, date) else ""
    values["keep_history"] = bool(patron.get("keep_history"))
    return {k: ("" if v is None else v) for k, v in values.items()}


# -- search (利用者検索) ----------------------------------------------------------------------------

@router.get("/patrons")
def patrons_search(request: Request, q: str = "", card: str = "", ctx: Console = Depends(allowed("patrons", "view")),
                   conn: DB = Depends(get_conn)) -> Response:
    """One box for card number, name, reading or phone; `?card=` (from a scanner or another screen) finds
    exactly that card. A single hit on the card goes straight to the record."""
    query = card or q
    hits: tuple[Any, ...] = ()
    truncated, searched, error = False, False, ""
    if query.strip():
        try:
            found = service.search_patrons(conn, ctx.actor(request), query, only=("card",) if card else None)
        except ShokaError as exc:
            error = _error(request, exc)
        else:
            hits, truncated, searched = found.patrons, found.truncated, True
            wanted = service.classify_query(query).get("card")
            if len(hits) == 1 and hits[0]["card"] == wanted:
                return RedirectResponse(f"/patrons/{hits[0]['id']}", status_code=303)
    return render(request, "patrons.html", ctx, status_code=422 if error else 200, q=q or card, hits=hits,
                  truncated=truncated, searched=searched, error=error)


# -- registration (利用登録) ------------------------------------------------------------------------

@router.get("/patrons/new")
def patron_new(request: Request, ctx: Console = Depends(allowed("patrons", "update")),
               conn: DB = Depends(get_conn)) -> Response:
    values = {k: "" for k in TEXT_FIELDS} | {"keep_history": False, "category": "general",
                                             "branch": ctx.principal.branch_code or ""}
    return render(request, "patron_form.html", ctx, patron=None, values=values, error="", error_field="",
                  duplicates=[], **_form_context(conn))


@router.post("/patrons")
def patron_create(request: Request, allow_duplicate: str = Form(""), form: dict[str, Any] = Depends(patron_form),
                  ctx: Console = Depends(allowed("patrons", "update", post=True)),
                  conn: DB = Depends(get_conn)) -> Response:
    duplicates: list[Any] = []
    try:
        new = service.NewPatron(
            card=form["card"], name=form["name"], name_reading=form["name_reading"], category=form["category"],
            branch=form["branch"], birth_date=_parse_date("birth_date", form["birth_date"]),
            postal_code=form["postal_code"], address=form["address"], phone=form["phone"], email=form["email"],
            expires_on=_parse_date("expires_on", form["expires_on"]), notes=form["notes"],
            keep_history=form["keep_history"], contact_name=form["contact_name"])
        patron_id = service.register_patron(conn, ctx.actor(request), new, allow_duplicate=allow_duplicate == "1")
    except ShokaError as exc:
        if exc.code == "possible_duplicate":
            duplicates = service.find_duplicates(conn, service.normalize_reading(form["name_reading"]),
                                                 _parse_date("birth_date", form["birth_date"]))
        return render(request, "patron_form.html", ctx, status_code=exc.status, patron=None, values=form,
                      error=_error(request, exc), error_field=exc.field or "", duplicates=duplicates,
                      **_form_context(conn))
    return RedirectResponse(f"/patrons/{patron_id}?msg=created", status_code=303)


# -- the record (利用者照会) -------------------------------------------------------------------------

def _detail(request: Request, ctx: Console, conn: DB, patron_id: int, *, error: str = "", error_field: str = "",
            status_code: int = 200, block_form: dict[str, str] | None = None) -> Response:
    patron = service.get_patron(conn, ctx.actor(request), patron_id)
    return render(request, "patron.html", ctx, status_code=status_code, patron=patron,
                  standing=service.standing(conn, patron_id),
                  blocks=service.list_blocks(conn, patron_id, include_lifted=True),
                  loans=service.current_loans(conn, patron_id), today=date.today(), error=error,
                  mylibrary=mylibrary.login_status(conn, patron_id),
                  error_field=error_field, block_form=block_form or {"kind": "manual", "reason": "", "starts_on": "",
                                                                      "ends_on": ""})


@router.get("/patrons/{patron_id}")
def patron_detail(patron_id: int, request: Request, ctx: Console = Depends(allowed("patrons", "view")),
                  conn: DB = Depends(get_conn)) -> Response:
    return _detail(request, ctx, conn, patron_id)


@router.get("/patrons/{patron_id}/edit")
def patron_edit(patron_id: int, request: Request, ctx: Console = Depends(allowed("patrons", "update")),
                conn: DB = Depends(get_conn)) -> Response:
    patron = service.get_patron(conn, ctx.actor(request), patron_id)
    return render(request, "patron_form.html", ctx, patron=patron, values=_values_of(patron), error="",
                  error_field="", duplicates=[], **_form_context(conn))


@router.post("/patrons/{patron_id}/edit")
def patron_save(patron_id: int, request: Request, form: dict[str, Any] = Depends(patron_form),
                ctx: Console = Depends(allowed("patrons", "update", post=True)),
                conn: DB = Depends(get_conn)) -> Response:
    patron = service.load_patron(conn, patron_id)  # 404 before anything else; the page below is the view
    try:
        changes = {**form, "birth_date": _parse_date("birth_date", form["birth_date"]),
                   "expires_on": _parse_date("expires_on", form["expires_on"])}
        service.update_patron(conn, ctx.actor(request), patron_id, changes)
    except ShokaError as exc:
        return render(request, "patron_form.html", ctx, status_code=exc.status, patron=patron, values=form,
                      error=_error(request, exc), error_field=exc.field or "", duplicates=[], **_form_context(conn))
    return RedirectResponse(f"/patrons/{patron_id}?msg=saved", status_code=303)


# -- blocks, suspensions and card renewal ------------------------------------------------------------

@router.post("/patrons/{patron_id}/blocks")
def patron_block_add(patron_id: int, request: Request, kind: str = Form("manual"), reason: str = Form(""),
                     starts_on: str = Form(""), ends_on: str = Form(""),
                     ctx: Console = Depends(allowed("patrons", "update", post=True)),
                     conn: DB = Depends(get_conn)) -> Response:
    """貸出禁止 or 貸出停止 from the record page."""
    service.load_patron(conn, patron_id)
    try:
        service.add_block(conn, ctx.actor(request), patron_id, kind, reason,
                          ends_on=_parse_date("ends_on", ends_on), starts_on=_parse_date("starts_on", starts_on))
    except ShokaError as exc:
        return _detail(request, ctx, conn, patron_id, error=_error(request, exc), error_field=exc.field or "",
                       status_code=exc.status,
                       block_form={"kind": kind, "reason": reason, "starts_on": starts_on, "ends_on": ends_on})
    return RedirectResponse(f"/patrons/{patron_id}?msg=saved", status_code=303)


@router.post("/patrons/{patron_id}/blocks/{block_id}/lift")
def patron_block_lift(patron_id: int, block_id: int, request: Request,
                      ctx: Console = Depends(allowed("patrons", "update", post=True)),
                      conn: DB = Depends(get_conn)) -> Response:
    try:
        service.lift_block(conn, ctx.actor(request), block_id, patron_id=patron_id)
    except ShokaError as exc:
        if exc.status == 404:
            raise
        return _detail(request, ctx, conn, patron_id, error=_error(request, exc), status_code=exc.status)
    return RedirectResponse(f"/patrons/{patron_id}?msg=saved", status_code=303)


@router.post("/patrons/{patron_id}/renew-card")
def patron_renew_card(patron_id: int, request: Request, ctx: Console = Depends(allowed("patrons", "update", post=True)),
                      conn: DB = Depends(get_conn)) -> Response:
    """有効期限の更新."""
    service.renew_card(conn, ctx.actor(request), patron_id)
    return RedirectResponse(f"/patrons/{patron_id}?msg=saved", status_code=303)


@router.post("/patrons/{patron_id}/password")
def patron_set_password(patron_id: int, request: Request, password: str = Form(""), password_again: str = Form(""),
                        ctx: Console = Depends(allowed("patrons", "update", post=True)),
                        conn: DB = Depends(get_conn)) -> Response:
    """マイライブラリのパスワード設定: staff set or reset it at the counter (the patron shows their card).
    Audited as patron.password_set; unlocks the card and signs out the patron's open sessions."""
    service.load_patron(conn, patron_id)
    try:
        if password != password_again:
            raise ShokaError("password_mismatch", "パスワードが確認用と一致しません。",
                             "The password and its confirmation differ.", status=422, field="password_again")
        mylibrary.set_password(conn, ctx.actor(request), patron_id, password)
    except ShokaError as exc:
        return _detail(request, ctx, conn, patron_id, error=_error(request, exc), error_field=exc.field or "",
                       status_code=exc.status)
    return RedirectResponse(f"/patrons/{patron_id}?msg=saved", status_code=303)
