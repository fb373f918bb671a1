"""Staff console: circulation settings (貸出規則・開館日カレンダー・バーコード・カウンター端末・利用者区分).

Pages show with the area's view permission; every change needs `circulation:administer` (patron categories:
`patrons:administer`) and the session's CSRF token. A refused change shows the page again with the message,
the form as typed, and nothing written.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from api.barcodes import nw7
from api.branches import service as branches
from api.calendar.days import YearPattern
from api.circulation import admin
from api.circulation.rules import LoanRule, rule_problems
from api.circulation.service import load_rules
from api.deps import DB, get_conn
from api.errors import ShokaError, invalid
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
JST = ZoneInfo("Asia/Tokyo")
# Notices of this module's own redirects (base.html knows created/saved only).
NOTICES = frozenset({"deleted", "year_applied", "day_removed"})


async def posted(request: Request) -> FormData:
    """The submitted form (already parsed for the CSRF check, so this costs nothing)."""
    return await request.form()


def _text(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _list(form: FormData, key: str) -> list[str]:
    return [value for value in form.getlist(key) if isinstance(value, str)]


def _today() -> date:
    return date.today()  # the same day circulation.service lends on


def _page(request: Request, name: str, ctx: Console, status_code: int = 200, **context: Any) -> Response:
    msg = request.query_params.get("msg", "")
    notice = msg if msg in NOTICES else ""
    ja = request_lang(request) == "ja"
    defaults: dict[str, Any] = {"error": "", "notice": notice, "weekdays_ja": admin.WEEKDAYS_JA,
                                "weekdays_en": admin.WEEKDAYS_EN,
                                "paren_open": "（" if ja else " (", "paren_close": "）" if ja else ")"}
    if notice:
        defaults["message"] = ""
    return render(request, name, ctx, status_code=status_code, **{**defaults, **context})


def _error(request: Request, exc: ShokaError) -> str:
    return exc.message(request_lang(request))


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# -- loan rules (貸出規則) --------------------------------------------------------------------------

RULE_DEFAULTS = {"loan_days": "14", "max_loans": "10", "renewals": "1", "renewal_days": "14", "max_holds": "10",
                 "loanable": "on"}


def _rule_form(rule: LoanRule) -> dict[str, str]:
    return {"patron_category": rule.patron_category or "", "item_type": rule.item_type or "",
            "branch": rule.branch or "", "loan_days": str(rule.loan_days), "max_loans": str(rule.max_loans),
            "max_loans_of_type": "" if rule.max_loans_of_type is None else str(rule.max_loans_of_type),
            "renewals": str(rule.renewals), "renewal_days": str(rule.renewal_days), "max_holds": str(rule.max_holds),
            "fixed_due_date": rule.fixed_due_date.isoformat() if rule.fixed_due_date else "",
            "loanable": "on" if rule.loanable else ""}


def _rules_page(request: Request, ctx: Console, conn: DB, status_code: int = 200, error: str = "",
                form: dict[str, str] | None = None) -> Response:
    params = request.query_params
    rules = load_rules(conn)
    choices = admin.choices(conn)
    trial, trial_error = None, ""
    tried = {k: params.get(k, "") for k in ("try_category", "try_item_type", "try_branch")}
    if any(tried.values()):
        try:
            trial = admin.try_rule(conn, tried["try_category"], tried["try_item_type"], tried["try_branch"],
                                   _today())
        except ShokaError as exc:
            trial_error = _error(request, exc)
    branch_codes = [b["code"] for b in choices.branches]
    matrix_branch = params.get("matrix_branch", "") or (ctx.principal.branch_code or "")
    if matrix_branch not in branch_codes:
        matrix_branch = branch_codes[0] if branch_codes else ""
    matrix = admin.effective_matrix(rules, [c["code"] for c in choices.categories],
                                    [t["code"] for t in choices.item_types], matrix_branch) if matrix_branch else []
    return _page(request, "circadmin_loan_rules.html", ctx, status_code, rules=rules,
                 problems=rule_problems(rules), choices=choices, trial=trial,
                 trial_error=trial_error, tried=tried, matrix=matrix, matrix_branch=matrix_branch,
                 error=error, form=form if form is not None else dict(RULE_DEFAULTS))


@router.get("/admin/loan-rules")
def loan_rules_page(request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                    conn: DB = Depends(get_conn)) -> Response:
    return _rules_page(request, ctx, conn)


@router.post("/admin/loan-rules")
def loan_rule_create(request: Request, form: FormData = Depends(posted),
                     ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                     conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_loan_rule(conn, ctx.actor(request), admin.rule_from_form(values))
    except ShokaError as exc:
        return _rules_page(request, ctx, conn, exc.status, _error(request, exc), values)
    return _see("/admin/loan-rules?msg=created")


def _rule_edit(request: Request, ctx: Console, conn: DB, rule_id: int, status_code: int = 200, error: str = "",
               form: dict[str, str] | None = None) -> Response:
    rule = admin.get_loan_rule(conn, rule_id)
    rules = load_rules(conn)
    return _page(request, "circadmin_loan_rule.html", ctx, status_code, rule=rule, number=rules.index(rule) + 1,
                 fallback=(rule.patron_category, rule.item_type, rule.branch) == admin.FALLBACK_KEY,
                 choices=admin.choices(conn), form=form if form is not None else _rule_form(rule), error=error)


@router.get("/admin/loan-rules/{rule_id}")
def loan_rule_page(rule_id: int, request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                   conn: DB = Depends(get_conn)) -> Response:
    return _rule_edit(request, ctx, conn, rule_id)


@router.post("/admin/loan-rules/{rule_id}")
def loan_rule_update(rule_id: int, request: Request, form: FormData = Depends(posted),
                     ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                     conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_loan_rule(conn, ctx.actor(request), admin.rule_from_form(values, rule_id))
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _rule_edit(request, ctx, conn, rule_id, exc.status, _error(request, exc), values)
    return _see("/admin/loan-rules?msg=saved")


@router.post("/admin/loan-rules/{rule_id}/delete")
def loan_rule_delete(rule_id: int, request: Request,
                     ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                     conn: DB = Depends(get_conn)) -> Response:
    try:
        admin.delete_loan_rule(conn, ctx.actor(request), rule_id)
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _rule_edit(request, ctx, conn, rule_id, exc.status, _error(request, exc))
    return _see("/admin/loan-rules?msg=deleted")


# -- branch calendars (開館日カレンダー) -----------------------------------------------------------

@router.get("/admin/calendars")
def calendars_page(request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                   conn: DB = Depends(get_conn)) -> Response:
    return _page(request, "circadmin_calendars.html", ctx, calendars=admin.list_calendars(conn, _today()),
                 describe_monthly=admin.describe_monthly)


def _year_form(settings: admin.BranchCalendarSettings, today: date) -> dict[str, Any]:
    return {"year": str(today.year + 1), "weekly": [str(d) for d in sorted(settings.weekly_closed)],
            "monthly": sorted(settings.monthly_closed), "close_on_national_holidays": True, "open_on_holiday": True,
            "new_year": True, "new_year_from": "12-29", "new_year_to": "01-03", "replace": False}


def _calendar_page(request: Request, ctx: Console, conn: DB, branch: str, status_code: int = 200,
                   error: str = "", **context: Any) -> Response:
    settings = admin.calendar_settings(conn, branch)
    today = _today()
    entries = admin.calendar_entries(conn, settings.branch_id, today.replace(day=1), date(today.year + 2, 12, 31))
    page: dict[str, Any] = {"year_form": _year_form(settings, today), "day_form": {}, "preview": None}
    page.update(context)
    return _page(request, "circadmin_calendar.html", ctx, status_code, settings=settings,
                 months=admin.calendar_months(conn, settings, today), entries=entries,
                 describe_monthly=admin.describe_monthly, nths=admin.MONTHLY_NTHS, error=error, **page)


@router.get("/admin/calendars/{branch}")
def calendar_page(branch: str, request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                  conn: DB = Depends(get_conn)) -> Response:
    return _calendar_page(request, ctx, conn, branch)


@router.post("/admin/calendars/{branch}/pattern")
def calendar_pattern(branch: str, request: Request, form: FormData = Depends(posted),
                     ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                     conn: DB = Depends(get_conn)) -> Response:
    try:
        admin.save_pattern(conn, ctx.actor(request), branch, admin.parse_weekdays(_list(form, "weekly_closed")),
                           admin.parse_monthly(_list(form, "monthly_nth"), _list(form, "monthly_weekday")))
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _calendar_page(request, ctx, conn, branch, exc.status, _error(request, exc))
    return _see(f"/admin/calendars/{quote(branch)}?msg=saved")


@router.post("/admin/calendars/{branch}/days")
def calendar_day_set(branch: str, request: Request, form: FormData = Depends(posted),
                     ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                     conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        day = admin.parse_date("day", values.get("day", ""))
        assert day is not None
        closed = values.get("closed", "")
        if closed not in ("closed", "open"):
            raise invalid("closed", closed, "休館か開館を選んでください。", "choose closed or open")
        admin.set_calendar_day(conn, ctx.actor(request), branch, day, closed == "closed", values.get("reason", ""))
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _calendar_page(request, ctx, conn, branch, exc.status, _error(request, exc), day_form=values)
    return _see(f"/admin/calendars/{quote(branch)}?msg=saved")


@router.post("/admin/calendars/{branch}/days/{day}/delete")
def calendar_day_remove(branch: str, day: str, request: Request,
                        ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                        conn: DB = Depends(get_conn)) -> Response:
    parsed = admin.parse_date("day", day)
    assert parsed is not None
    admin.remove_calendar_day(conn, ctx.actor(request), branch, parsed)
    return _see(f"/admin/calendars/{quote(branch)}?msg=day_removed")


@router.post("/admin/calendars/{branch}/year")
def calendar_year(branch: str, request: Request, form: FormData = Depends(posted),
                  ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                  conn: DB = Depends(get_conn)) -> Response:
    """年間一括登録: step "preview" shows plan_year's days beside what is stored; step "apply" writes them."""
    values = _text(form)
    weekly, nths, weekdays = _list(form, "weekly_closed"), _list(form, "monthly_nth"), _list(form, "monthly_weekday")
    year_form: dict[str, Any] = {
        **{k: values.get(k, "") for k in ("year", "new_year_from", "new_year_to")},
        **{k: admin.checked(values.get(k)) for k in ("close_on_national_holidays", "open_on_holiday", "new_year",
                                                       "replace")},
        "weekly": weekly, "monthly": [(n, w) for n, w in zip(nths, weekdays, strict=False) if n and w]}
    try:
        year, pattern, replace = admin.year_pattern_from_form(values, weekly, nths, weekdays)
        if values.get("step") == "apply":
            admin.apply_year(conn, ctx.actor(request), branch, year, pattern, replace=replace)
            return _see(f"/admin/calendars/{quote(branch)}?msg=year_applied")
        preview = admin.year_preview(conn, branch, year, pattern)
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _calendar_page(request, ctx, conn, branch, exc.status, _error(request, exc), year_form=year_form)
    return _calendar_page(request, ctx, conn, branch, year_form=year_form,
                          preview=_preview_context(year, pattern, replace, preview))


def _preview_context(year: int, pattern: YearPattern, replace: bool, days: list[admin.PreviewDay]) -> dict[str, Any]:
    return {"year": year, "pattern": pattern, "replace": replace, "days": days,
            "closed": sum(1 for d in days if d.planned.closed), "opened": sum(1 for d in days if not d.planned.closed),
            "changes": sum(1 for d in days if d.changes)}


# -- barcode ranges (バーコード番号帯) -------------------------------------------------------------

def _barcode_form(rule: nw7.BarcodeRule) -> dict[str, str]:
    return {"kind": rule.kind, "name": rule.name, "prefix": rule.prefix,
            "length": "" if rule.length is None else str(rule.length), "check_scheme": rule.check_scheme,
            "branch": rule.branch or ""}


def _barcodes_page(request: Request, ctx: Console, conn: DB, status_code: int = 200, error: str = "",
                   form: dict[str, str] | None = None) -> Response:
    params = request.query_params
    scan, scan_branch = params.get("scan", ""), params.get("scan_branch", "")
    trial, trial_error = None, ""
    if "scan" in params:
        try:
            trial = admin.try_scan(conn, scan, scan_branch or None)
        except ShokaError as exc:
            trial_error = _error(request, exc)
    return _page(request, "circadmin_barcodes.html", ctx, status_code, rules=admin.list_barcode_rules(conn),
                 branches=branches.list_branches(conn), schemes=nw7.CHECK_SCHEMES, scheme_ja=nw7.SCHEME_NAMES_JA,
                 scheme_en=nw7.SCHEME_NAMES_EN, trial=trial, trial_error=trial_error, scan=scan,
                 describe_barcode_rule=admin.describe_barcode_rule,
                 scan_branch=scan_branch, form=form if form is not None else {"kind": "item", "check_scheme": "none"},
                 error=error)


@router.get("/admin/barcodes")
def barcodes_page(request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                  conn: DB = Depends(get_conn)) -> Response:
    return _barcodes_page(request, ctx, conn)


@router.post("/admin/barcodes")
def barcode_create(request: Request, form: FormData = Depends(posted),
                   ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                   conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_barcode_rule(conn, ctx.actor(request), admin.barcode_rule_from_form(values))
    except ShokaError as exc:
        return _barcodes_page(request, ctx, conn, exc.status, _error(request, exc), values)
    return _see("/admin/barcodes?msg=created")


def _barcode_edit(request: Request, ctx: Console, conn: DB, rule_id: int, status_code: int = 200, error: str = "",
                  form: dict[str, str] | None = None) -> Response:
    row = admin.get_barcode_rule(conn, rule_id)
    return _page(request, "circadmin_barcode.html", ctx, status_code, row=row, branches=branches.list_branches(conn),
                 schemes=nw7.CHECK_SCHEMES, scheme_ja=nw7.SCHEME_NAMES_JA, scheme_en=nw7.SCHEME_NAMES_EN,
                 form=form if form is not None else _barcode_form(row.rule), error=error)


@router.get("/admin/barcodes/{rule_id}")
def barcode_page(rule_id: int, request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                 conn: DB = Depends(get_conn)) -> Response:
    return _barcode_edit(request, ctx, conn, rule_id)


@router.post("/admin/barcodes/{rule_id}")
def barcode_update(rule_id: int, request: Request, form: FormData = Depends(posted),
                   ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                   conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_barcode_rule(conn, ctx.actor(request), admin.barcode_rule_from_form(values), rule_id)
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _barcode_edit(request, ctx, conn, rule_id, exc.status, _error(request, exc), values)
    return _see("/admin/barcodes?msg=saved")


@router.post("/admin/barcodes/{rule_id}/delete")
def barcode_delete(rule_id: int, request: Request,
                   ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                   conn: DB = Depends(get_conn)) -> Response:
    admin.delete_barcode_rule(conn, ctx.actor(request), rule_id)
    return _see("/admin/barcodes?msg=deleted")


# -- counter workstations (カウンター端末) --------------------------------------------------------

def _workstations_page(request: Request, ctx: Console, conn: DB, status_code: int = 200, error: str = "",
                       form: dict[str, str] | None = None) -> Response:
    return _page(request, "circadmin_workstations.html", ctx, status_code, workstations=admin.list_workstations(conn),
                 branches=branches.list_branches(conn), error=error,
                 form=form if form is not None else {"connection": "none", "port": "9100", "width": "42",
                                                     "timeout": "3", "branch": ctx.principal.branch_code or ""})


@router.get("/admin/workstations")
def workstations_page(request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                      conn: DB = Depends(get_conn)) -> Response:
    return _workstations_page(request, ctx, conn)


@router.post("/admin/workstations")
def workstation_create(request: Request, form: FormData = Depends(posted),
                       ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                       conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_workstation(conn, ctx.actor(request), values.get("code", ""), values.get("name", ""),
                               values.get("branch", ""), admin.printer_from_form(values), create=True)
    except ShokaError as exc:
        return _workstations_page(request, ctx, conn, exc.status, _error(request, exc), values)
    return _see(f"/admin/workstations/{quote(values.get('code', '').strip())}?msg=created")


def _workstation_edit(request: Request, ctx: Console, conn: DB, code: str, status_code: int = 200,
                      error: str = "", form: dict[str, str] | None = None,
                      result: admin.TestPrint | None = None) -> Response:
    ws = admin.get_workstation(conn, code)
    if form is None:
        form = {"name": ws["name"], "branch": ws["branch"], **admin.printer_form_values(ws["printer"])}
    return _page(request, "circadmin_workstation.html", ctx, status_code, ws=ws, branches=branches.list_branches(conn),
                 form=form, error=error, result=result)


@router.get("/admin/workstations/{code}")
def workstation_page(code: str, request: Request, ctx: Console = Depends(allowed("circulation", "view")),
                     conn: DB = Depends(get_conn)) -> Response:
    return _workstation_edit(request, ctx, conn, code)


@router.post("/admin/workstations/{code}")
def workstation_update(code: str, request: Request, form: FormData = Depends(posted),
                       ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                       conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_workstation(conn, ctx.actor(request), code, values.get("name", ""), values.get("branch", ""),
                               admin.printer_from_form(values), create=False)
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _workstation_edit(request, ctx, conn, code, exc.status, _error(request, exc), values)
    return _see(f"/admin/workstations/{quote(code)}?msg=saved")


@router.post("/admin/workstations/{code}/test-print")
def workstation_test_print(code: str, request: Request,
                           ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                           conn: DB = Depends(get_conn)) -> Response:
    """テスト印字: the page says whether the sample receipt went out, or why not (never a stack trace)."""
    name = branches.library_name(conn, request.app.state.settings.library_name)
    result = admin.send_test_print(conn, ctx.actor(request), code, name, datetime.now(UTC).astimezone(JST),
                                   request_lang(request))
    return _workstation_edit(request, ctx, conn, code, result=result)


# -- patron categories (利用者区分) ------------------------------------------------------------------

def _categories_page(request: Request, ctx: Console, conn: DB, status_code: int = 200, error: str = "",
                     form: dict[str, str] | None = None) -> Response:
    return _page(request, "circadmin_patron_categories.html", ctx, status_code,
                 categories=admin.list_patron_categories(conn), error=error,
                 form=form if form is not None else {"card_years": "3"})


@router.get("/admin/patron-categories")
def categories_page(request: Request, ctx: Console = Depends(allowed("patrons", "view")),
                    conn: DB = Depends(get_conn)) -> Response:
    return _categories_page(request, ctx, conn)


@router.post("/admin/patron-categories")
def category_create(request: Request, form: FormData = Depends(posted),
                    ctx: Console = Depends(allowed("patrons", "administer", post=True)),
                    conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_patron_category(conn, ctx.actor(request), admin.category_from_form(values), create=True)
    except ShokaError as exc:
        return _categories_page(request, ctx, conn, exc.status, _error(request, exc), values)
    return _see("/admin/patron-categories?msg=created")


def _category_edit(request: Request, ctx: Console, conn: DB, code: str, status_code: int = 200, error: str = "",
                   form: dict[str, str] | None = None) -> Response:
    category = admin.get_patron_category(conn, code)
    if form is None:
        form = {"name": category.name, "name_en": category.name_en or "", "card_years": str(category.card_years),
                "is_group": "on" if category.is_group else ""}
    return _page(request, "circadmin_patron_category.html", ctx, status_code, category=category, form=form,
                 error=error)


@router.get("/admin/patron-categories/{code}")
def category_page(code: str, request: Request, ctx: Console = Depends(allowed("patrons", "view")),
                  conn: DB = Depends(get_conn)) -> Response:
    return _category_edit(request, ctx, conn, code)


@router.post("/admin/patron-categories/{code}")
def category_update(code: str, request: Request, form: FormData = Depends(posted),
                    ctx: Console = Depends(allowed("patrons", "administer", post=True)),
                    conn: DB = Depends(get_conn)) -> Response:
    values = _text(form)
    try:
        admin.save_patron_category(conn, ctx.actor(request), admin.category_from_form(values, code), create=False)
    except ShokaError as exc:
        if exc.code == "not_found":
            raise
        return _category_edit(request, ctx, conn, code, exc.status, _error(request, exc), values)
    return _see(f"/admin/patron-categories/{quote(code)}?msg=saved")
