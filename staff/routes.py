"""The staff console (職員画面): server-rendered pages, usable without JavaScript.

Sessions are opaque cookies (HttpOnly, SameSite=Strict); every POST carries the session's CSRF
token. The login form, which has no session yet, uses a double-submit cookie instead.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.audit import Actor
from api.audit import service as audit_service
from api.audit.routes import run_search
from api.auth import service as auth
from api.auth.permissions import ACTION_LABELS, ACTIONS, AREA_LABELS, AREAS, Principal, parse_permissions
from api.branches import service as branches
from api.catalog import service as catalog
from api.deps import DB, client_addr, get_conn
from api.errors import ShokaError, forbidden, invalid
from api.items import service as items
from api.web import Templates, request_lang
from indexer.params import from_params, has_criteria
from indexer.query import QueryError
from opac.search import search

router = APIRouter(include_in_schema=False)
SESSION_COOKIE = "shoka_session"
LOGIN_CSRF_COOKIE = "shoka_login_csrf"
PAGE_SIZE = 50

CSRF_FAILED = ShokaError("csrf_failed", "フォームの有効期限が切れたか、不正な送信です。画面を開き直してください。",
                         "The form expired or was not sent from this console. Reload the page and try again.",
                         status=403)


def _secure_cookies() -> bool:
    return os.environ.get("SHOKA_COOKIE_SECURE", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Console:
    principal: Principal
    csrf: str
    token: str

    def actor(self, request: Request) -> Actor:
        return Actor(self.principal.username, client_addr(request), self.principal.account_id)


def console_user(request: Request, conn: DB = Depends(get_conn)) -> Console:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise auth.UNAUTHENTICATED
    principal, csrf = auth.resolve_session(conn, token, "console")
    return Console(principal, csrf or "", token)


def allowed(area: str, action: str, *, post: bool = False) -> Any:
    """Dependency: a signed-in user holding area:action; for POSTs also a valid CSRF token."""

    def _get(ctx: Console = Depends(console_user)) -> Console:
        if not ctx.principal.can(area, action):
            raise forbidden(area, action)
        return ctx

    def _post(csrf_token: str = Form(""), ctx: Console = Depends(console_user)) -> Console:
        if not secrets.compare_digest(csrf_token, ctx.csrf):
            raise CSRF_FAILED
        return _get(ctx)

    return _post if post else _get


def signed_in(ctx: Console = Depends(console_user)) -> Console:
    return ctx


def render(request: Request, name: str, ctx: Console | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    templates: Templates = request.app.state.templates
    base = {"me": ctx.principal if ctx else None, "csrf_token": ctx.csrf if ctx else "",
            "area_labels": AREA_LABELS, "action_labels": ACTION_LABELS, "areas": AREAS, "actions": ACTIONS,
            "message": request.query_params.get("msg", "")}
    return templates.render(request, name, {**base, **context}, status_code=status_code)


def _error_text(request: Request, exc: ShokaError) -> str:

    return exc.message(request_lang(request))


# -- sign in and out ---------------------------------------------------------------------------

def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
def login_form(request: Request, next: str = "/", expired: int = 0) -> Response:
    csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, next=_safe_next(next), login_csrf=csrf, username="",
                      error="", expired=bool(expired))
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=_secure_cookies(),
                        max_age=3600)
    return response


@router.post("/login")
def login(request: Request, username: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
          next: str = Form("/"), conn: DB = Depends(get_conn)) -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    try:
        if not cookie or not secrets.compare_digest(cookie, csrf_token):
            raise CSRF_FAILED
        account_id = auth.authenticate(conn, username.strip(), password, client_addr(request))
    except ShokaError as exc:
        csrf = secrets.token_urlsafe(24)
        response = render(request, "login.html", None, status_code=exc.status, next=_safe_next(next),
                          login_csrf=csrf, username=username, error=_error_text(request, exc), expired=False)
        response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                            secure=_secure_cookies(), max_age=3600)
        return response
    session = auth.open_session(conn, account_id, "console", client_addr(request))
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    redirect.set_cookie(SESSION_COOKIE, session.token, httponly=True, samesite="strict", secure=_secure_cookies(),
                        max_age=int(auth.CONSOLE_MAX_AGE.total_seconds()))
    redirect.delete_cookie(LOGIN_CSRF_COOKIE)
    return redirect


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form(""), ctx: Console = Depends(console_user),
           conn: DB = Depends(get_conn)) -> Response:
    if not secrets.compare_digest(csrf_token, ctx.csrf):
        raise CSRF_FAILED
    auth.close_session(conn, ctx.token, ctx.principal, client_addr(request), "console")
    response = RedirectResponse("/login?msg=logged_out", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# -- home and the sections later capabilities fill ------------------------------------------

@router.get("/")
def home(request: Request, ctx: Console = Depends(signed_in)) -> Response:
    return render(request, "home.html", ctx)


SECTIONS = {
    "statistics": ("statistics", "統計"),
}


def _section_route(slug: str, area: str, title: str) -> None:
    def page(request: Request, ctx: Console = Depends(allowed(area, "view"))) -> Response:
        return render(request, "section.html", ctx, title=title, section=slug)

    router.add_api_route(f"/{slug}", page, methods=["GET"], name=f"section_{slug}")


for _slug, (_area, _title) in SECTIONS.items():
    _section_route(_slug, _area, _title)


# -- audit log (操作ログ) ------------------------------------------------------------------------

def _parse_date(field: str, value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(field, value, "日付は 2026-04-01 の形で入力してください。", "use the form 2026-04-01") from None


@router.get("/audit")
def audit_log(request: Request, date_from: str = "", date_to: str = "", actor: str = "", action: str = "",
              subject: str = "", page: int = 1, ctx: Console = Depends(allowed("system", "view")),
              conn: DB = Depends(get_conn)) -> Response:
    form = {"date_from": date_from, "date_to": date_to, "actor": actor, "action": action, "subject": subject}
    page = max(page, 1)
    try:
        q = audit_service.AuditQuery(_parse_date("date_from", date_from), _parse_date("date_to", date_to),
                                     actor.strip(), action.strip(), subject.strip(), PAGE_SIZE,
                                     (page - 1) * PAGE_SIZE)
    except ShokaError as exc:
        return render(request, "audit.html", ctx, status_code=422, form=form, rows=[], total=0, page=1,
                      pages=1, error=_error_text(request, exc), query="")
    rows, total = run_search(conn, ctx.principal, request, q)
    query = "&".join(f"{k}={quote(v)}" for k, v in form.items() if v)
    return render(request, "audit.html", ctx, form=form, rows=rows, total=total, page=page,
                  pages=max(1, -(-total // PAGE_SIZE)), error="", query=query)


# -- administration (管理) -------------------------------------------------------------------

@router.get("/admin")
def admin_index(request: Request, ctx: Console = Depends(allowed("system", "view"))) -> Response:
    return render(request, "admin.html", ctx)


def _staff_form_context(conn: DB) -> dict[str, Any]:
    return {"branches": branches.list_branches(conn, active_only=True), "roles": auth.list_roles(conn)}


@router.get("/admin/staff")
def staff_list(request: Request, ctx: Console = Depends(allowed("system", "administer")),
               conn: DB = Depends(get_conn)) -> Response:
    return render(request, "staff_list.html", ctx, accounts=auth.view_accounts(conn, ctx.actor(request)))


@router.get("/admin/staff/new")
def staff_new(request: Request, ctx: Console = Depends(allowed("system", "administer")),
              conn: DB = Depends(get_conn)) -> Response:
    return render(request, "staff_new.html", ctx, error="", form={}, **_staff_form_context(conn))


@router.post("/admin/staff")
def staff_create(request: Request, username: str = Form(""), display_name: str = Form(""),
                 password: str = Form(""), branch: str = Form(""), roles: list[str] = Form([]),
                 groups: list[str] = Form([]), ctx: Console = Depends(allowed("system", "administer", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    try:
        auth.create_account(conn, ctx.actor(request), username.strip(), password, display_name=display_name.strip(),
                            roles=roles, groups=groups, branch=branch or None)
    except ShokaError as exc:
        form = {"username": username, "display_name": display_name, "branch": branch, "roles": roles,
                "groups": groups}
        return render(request, "staff_new.html", ctx, status_code=exc.status, error=_error_text(request, exc),
                      form=form, **_staff_form_context(conn))
    return RedirectResponse(f"/admin/staff/{quote(username.strip())}?msg=created", status_code=303)


@router.get("/admin/staff/{username}")
def staff_detail(username: str, request: Request, ctx: Console = Depends(allowed("system", "administer")),
                 conn: DB = Depends(get_conn)) -> Response:
    account = auth.get_account(conn, ctx.actor(request), username)
    return render(request, "staff_edit.html", ctx, account=account, error="", **_staff_form_context(conn))


@router.post("/admin/staff/{username}")
def staff_update(username: str, request: Request, display_name: str = Form(""), branch: str = Form(""),
                 roles: list[str] = Form([]), groups: list[str] = Form([]), active: str = Form(""),
                 password: str = Form(""), ctx: Console = Depends(allowed("system", "administer", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    try:
        auth.update_account(conn, ctx.actor(request), username, display_name=display_name.strip() or None,
                            branch=branch or None, clear_branch=not branch, active=active == "on", roles=roles,
                            groups=groups, password=password or None)
    except ShokaError as exc:
        found = auth.list_accounts(conn, username)
        if not found:
            raise
        return render(request, "staff_edit.html", ctx, status_code=exc.status, account=found[0],
                      error=_error_text(request, exc), **_staff_form_context(conn))
    return RedirectResponse(f"/admin/staff/{quote(username)}?msg=saved", status_code=303)


@router.post("/admin/staff/{username}/unlock")
def staff_unlock(username: str, request: Request, ctx: Console = Depends(allowed("system", "administer", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    auth.unlock_account(conn, ctx.actor(request), username)
    return RedirectResponse(f"/admin/staff/{quote(username)}?msg=unlocked", status_code=303)


@router.get("/admin/roles")
def roles_page(request: Request, ctx: Console = Depends(allowed("system", "administer")),
               conn: DB = Depends(get_conn)) -> Response:
    return render(request, "roles.html", ctx, roles=auth.list_roles(conn), error="")


@router.post("/admin/roles/{kind}/{code}")
def roles_update(kind: str, code: str, request: Request, perm: list[str] = Form([]),
                 ctx: Console = Depends(allowed("system", "administer", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    try:
        if kind not in ("role", "group"):
            raise invalid("kind", kind, "role か group です。", "expected role or group")
        auth.set_permissions(conn, ctx.actor(request), kind, code, parse_permissions(perm, "perm"))
    except ShokaError as exc:
        return render(request, "roles.html", ctx, status_code=exc.status, roles=auth.list_roles(conn),
                      error=_error_text(request, exc))
    return RedirectResponse("/admin/roles?msg=saved", status_code=303)


@router.post("/admin/groups")
def group_create(request: Request, code: str = Form(""), name: str = Form(""),
                 ctx: Console = Depends(allowed("system", "administer", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    try:
        auth.create_group(conn, ctx.actor(request), code.strip(), name)
    except ShokaError as exc:
        return render(request, "roles.html", ctx, status_code=exc.status, roles=auth.list_roles(conn),
                      error=_error_text(request, exc))
    return RedirectResponse("/admin/roles?msg=created", status_code=303)


@router.get("/admin/assignments")
def assignments_page(request: Request, ctx: Console = Depends(allowed("system", "administer"))) -> Response:
    return render(request, "assignments.html", ctx, report=None, error="")


MAX_CSV_BYTES = 2_000_000


@router.post("/admin/assignments")
async def assignments_upload(request: Request, file: UploadFile = File(...), dry_run: str = Form(""),
                             ctx: Console = Depends(allowed("system", "administer", post=True))) -> Response:
    from starlette.concurrency import run_in_threadpool

    raw = await file.read(MAX_CSV_BYTES + 1)
    error, report = "", None
    try:
        if len(raw) > MAX_CSV_BYTES:
            raise invalid("file", file.filename or "", "ファイルが大きすぎます（2MBまで）。", "the file is over 2 MB")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = raw.decode("cp932")  # Excel on Japanese Windows saves CSV as Shift_JIS
            except UnicodeDecodeError:
                raise invalid("file", file.filename or "", "UTF-8 または Shift_JIS のCSVを指定してください。",
                              "the file is neither UTF-8 nor Shift_JIS") from None

        def _apply() -> auth.AssignmentReport:
            with request.app.state.pool.connection() as conn:
                return auth.import_assignments(conn, ctx.actor(request), text, dry_run=dry_run == "on")

        report = await run_in_threadpool(_apply)
    except ShokaError as exc:
        error = _error_text(request, exc)
    return render(request, "assignments.html", ctx, status_code=422 if error else 200, report=report, error=error)


@router.get("/admin/branches")
def branches_page(request: Request, ctx: Console = Depends(allowed("system", "view")),
                  conn: DB = Depends(get_conn)) -> Response:
    return render(request, "branches.html", ctx, branches=branches.list_branches(conn), error="", form={},
                  locations=_all_locations(conn))


@router.post("/admin/branches")
def branch_create(request: Request, code: str = Form(""), name: str = Form(""), name_en: str = Form(""),
                  kind: str = Form("library"), ctx: Console = Depends(allowed("system", "update", post=True)),
                  conn: DB = Depends(get_conn)) -> Response:
    try:
        branches.create_branch(conn, ctx.actor(request), code.strip(), name, name_en=name_en.strip() or None,
                               kind=kind)
    except ShokaError as exc:
        return render(request, "branches.html", ctx, status_code=exc.status, branches=branches.list_branches(conn),
                      error=_error_text(request, exc), locations=_all_locations(conn),
                      form={"code": code, "name": name, "name_en": name_en, "kind": kind})
    return RedirectResponse("/admin/branches?msg=created", status_code=303)


# -- catalogue (資料) --------------------------------------------------------------------------------

@router.get("/catalogue")
def catalogue_search(request: Request, ctx: Console = Depends(allowed("catalogue", "view")),
                     conn: DB = Depends(get_conn)) -> Response:
    """Search the catalogue, or look up by item barcode, call number or record ID."""

    params = request.query_params
    barcode, call_number, record_id = (params.get(k, "").strip() for k in ("barcode", "call_number", "record_id"))
    hits: list[Any] = []
    total, error = 0, ""
    try:
        if barcode or call_number or record_id:
            if record_id and not record_id.isdigit():
                raise invalid("record_id", record_id, "書誌IDは数字です。", "a record ID is a number")
            ids = catalog.lookup(conn, barcode=barcode, call_number=call_number,
                                 record_id=int(record_id) if record_id else None)
            if barcode and len(ids) == 1:
                return RedirectResponse(f"/catalogue/records/{ids[0]}", status_code=303)
            hits, total = catalog.staff_summaries(conn, ids), len(ids)
        elif has_criteria(params):
            try:
                outcome = search(conn, request.app.state.engine, from_params(params))
            except QueryError as exc:
                raise invalid(exc.param, exc.value, "検索条件を確認してください。", exc.reason) from None
            hits = catalog.staff_summaries(conn, [h.id for h in outcome.result.hits])
            total = outcome.result.total
    except ShokaError as exc:
        error = _error_text(request, exc)
    return render(request, "catalogue.html", ctx, status_code=422 if error else 200, params=params, hits=hits,
                  total=total, error=error)


@router.get("/catalogue/records/{record_id}")
def catalogue_record(record_id: int, request: Request, ctx: Console = Depends(allowed("catalogue", "view")),
                     conn: DB = Depends(get_conn)) -> Response:

    return render(request, "catalogue_record.html", ctx, entry=catalog.staff_record(conn, record_id),
                  branches=branches.list_branches(conn, active_only=True), error="")


@router.post("/catalogue/records/{record_id}/items")
def catalogue_add_item(record_id: int, request: Request, barcode: str = Form(""), branch: str = Form(""),
                       item_type: str = Form("book"), call_number: str = Form(""), price: str = Form(""),
                       ctx: Console = Depends(allowed("catalogue", "update", post=True)),
                       conn: DB = Depends(get_conn)) -> Response:
    """受入: add a copy."""

    try:
        if price and not price.isdigit():
            raise invalid("price", price, "価格は円単位の整数です。", "a whole number of yen")
        items.create_item(conn, ctx.actor(request), items.NewItem(
            record_id, barcode.strip(), branch, item_type, call_number=call_number.strip() or None,
            price=int(price) if price else None))
    except ShokaError as exc:
        return render(request, "catalogue_record.html", ctx, status_code=exc.status,
                      entry=catalog.staff_record(conn, record_id), branches=branches.list_branches(conn),
                      error=_error_text(request, exc))
    return RedirectResponse(f"/catalogue/records/{record_id}?msg=created", status_code=303)


@router.post("/catalogue/items/{barcode}/withdraw")
def catalogue_withdraw(barcode: str, request: Request, reason: str = Form(""),
                       ctx: Console = Depends(allowed("catalogue", "update", post=True)),
                       conn: DB = Depends(get_conn)) -> Response:
    """除籍: withdraw a copy, with a reason."""

    record_id = items.get_item(conn, barcode)["record_id"]
    try:
        items.withdraw_item(conn, ctx.actor(request), barcode, reason)
    except ShokaError as exc:
        return render(request, "catalogue_record.html", ctx, status_code=exc.status,
                      entry=catalog.staff_record(conn, record_id), branches=branches.list_branches(conn),
                      error=_error_text(request, exc))
    return RedirectResponse(f"/catalogue/records/{record_id}?msg=saved", status_code=303)


@router.get("/catalogue/records/{record_id}/edit")
def catalogue_record_edit(record_id: int, request: Request, ctx: Console = Depends(allowed("catalogue", "update")),
                          conn: DB = Depends(get_conn)) -> Response:

    return render(request, "catalogue_record_edit.html", ctx, entry=catalog.staff_record(conn, record_id), error="")


@router.post("/catalogue/records/{record_id}/edit")
def catalogue_record_save(record_id: int, request: Request, title: str = Form(""), title_reading: str = Form(""),
                          publisher: str = Form(""), year: str = Form(""), ndc: str = Form(""),
                          isbns: str = Form(""), ctx: Console = Depends(allowed("catalogue", "update", post=True)),
                          conn: DB = Depends(get_conn)) -> Response:
    """書誌修正: edit a record's main fields by hand."""

    try:
        if year.strip() and not year.strip().isdigit():
            raise invalid("year", year, "出版年は西暦4桁の整数です。", "a year such as 2024")
        changes: dict[str, Any] = {
            "title": title.strip(), "title_reading": title_reading.strip() or None,
            "publisher": publisher.strip() or None, "year": int(year) if year.strip() else None,
            "ndc": ndc.strip() or None, "isbns": [v for v in isbns.replace(",", " ").split() if v]}
        catalog.update_record(conn, ctx.actor(request), record_id, changes)
    except ShokaError as exc:
        return render(request, "catalogue_record_edit.html", ctx, status_code=exc.status,
                      entry=catalog.staff_record(conn, record_id), error=_error_text(request, exc))
    return RedirectResponse(f"/catalogue/records/{record_id}?msg=saved", status_code=303)


@router.get("/catalogue/items/{barcode}")
def catalogue_item(barcode: str, request: Request, ctx: Console = Depends(allowed("catalogue", "view")),
                   conn: DB = Depends(get_conn)) -> Response:

    item = items.get_item(conn, barcode)
    return render(request, "catalogue_item.html", ctx, item=item, branches=branches.list_branches(conn),
                  locations=branches.list_locations(conn, item["branch"]), error="")


@router.post("/catalogue/items/{barcode}")
def catalogue_item_save(barcode: str, request: Request, location: str = Form(""), call_number: str = Form(""),
                        item_type: str = Form("book"), status: str = Form("available"), price: str = Form(""),
                        notes: str = Form(""), ctx: Console = Depends(allowed("catalogue", "update", post=True)),
                        conn: DB = Depends(get_conn)) -> Response:

    item = items.get_item(conn, barcode)
    try:
        if price and not price.isdigit():
            raise invalid("price", price, "価格は円単位の整数です。", "a whole number of yen")
        changes: dict[str, Any] = {"location": location or None, "call_number": call_number.strip() or None,
                                   "item_type": item_type, "price": int(price) if price else None,
                                   "notes": notes.strip() or None}
        if status != item["status"]:
            changes["status"] = status
        items.update_item(conn, ctx.actor(request), barcode, changes)
    except ShokaError as exc:
        return render(request, "catalogue_item.html", ctx, status_code=exc.status, item=item,
                      branches=branches.list_branches(conn), locations=branches.list_locations(conn, item["branch"]),
                      error=_error_text(request, exc))
    return RedirectResponse(f"/catalogue/items/{quote(barcode)}?msg=saved", status_code=303)


@router.post("/catalogue/items/{barcode}/transfer")
def catalogue_item_transfer(barcode: str, request: Request, branch: str = Form(""),
                            ctx: Console = Depends(allowed("catalogue", "update", post=True)),
                            conn: DB = Depends(get_conn)) -> Response:
    """所属変更: the copy now belongs to another branch."""

    try:
        items.transfer_item(conn, ctx.actor(request), barcode, branch)
    except ShokaError as exc:
        item = items.get_item(conn, barcode)
        return render(request, "catalogue_item.html", ctx, status_code=exc.status, item=item,
                      branches=branches.list_branches(conn), locations=branches.list_locations(conn, item["branch"]),
                      error=_error_text(request, exc))
    return RedirectResponse(f"/catalogue/items/{quote(barcode)}?msg=saved", status_code=303)


@router.post("/admin/branches/{code}/locations")
def location_create(code: str, request: Request, location_code: str = Form(""), name: str = Form(""),
                    ctx: Console = Depends(allowed("system", "update", post=True)),
                    conn: DB = Depends(get_conn)) -> Response:
    try:
        branches.create_location(conn, ctx.actor(request), code, location_code.strip(), name)
    except ShokaError as exc:
        return render(request, "branches.html", ctx, status_code=exc.status, branches=branches.list_branches(conn),
                      locations=_all_locations(conn), error=_error_text(request, exc), form={})
    return RedirectResponse("/admin/branches?msg=created", status_code=303)


def _all_locations(conn: DB) -> dict[str, list[Any]]:
    rows = conn.execute("SELECT b.code AS branch, l.code, l.name FROM location l JOIN branch b ON b.id = l.branch_id "
                        "ORDER BY b.code, l.code").fetchall()
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r["branch"], []).append(r)
    return out
