"""Staff console: pickup lockers (予約本受取ロッカー).

/lockers shows each bank's compartments (free, occupied, out of service, past the pickup deadline)
and the holds on the hold shelf of branches with lockers; staff load a hold into a compartment, mark
a compartment emptied, or take an uncollected item out (a return). The unlock code appears once, on
the page answering the load POST (never in a URL; the page is not cached). Banks and compartments
are set up under /admin/lockers (circulation:administer).

Pages show hold ids, item barcodes and titles only: no patron data.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.branches import service as branches
from api.circulation.service import OVERRIDABLE
from api.deps import DB, get_conn
from api.errors import ShokaError, invalid
from api.lockers import service
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
DONE = ("emptied", "created", "added", "service")
JST = ZoneInfo("Asia/Tokyo")


def _when(value: datetime | None) -> str:
    return value.astimezone(JST).strftime("%Y-%m-%d %H:%M") if value else ""


def _error(request: Request, exc: ShokaError) -> str:
    return exc.message(request_lang(request))


def _int(field: str, value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid(field, value, "番号を選んでください。", "choose a number") from None


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the lockers screen (circulation:view) ------------------------------------------------------------

def _page(request: Request, ctx: Console, conn: DB, branch: str, *, error: str = "", error_code: str = "",
          status_code: int = 200, retry: dict[str, Any] | None = None) -> Response:
    branch = branch.strip()
    banks = service.list_banks(conn, branch=branch or None)
    done = request.query_params.get("done", "")
    return render(request, "lockers.html", ctx, status_code=status_code, banks=banks,
                  holds=service.shelf_holds(conn, branch=branch or None), branch=branch,
                  branches=branches.list_branches(conn, active_only=True), today=date.today(), error=error,
                  error_code=error_code, overridable=error_code in OVERRIDABLE, retry=retry or {},
                  done=done if done in DONE else "", when=_when)


@router.get("/lockers")
def lockers(request: Request, branch: str = "", ctx: Console = Depends(allowed("circulation", "view")),
            conn: DB = Depends(get_conn)) -> Response:
    return _page(request, ctx, conn, branch)


@router.post("/lockers/load")
def locker_load(request: Request, hold_id: str = Form(""), compartment_id: str = Form(""), branch: str = Form(""),
                override: list[str] = Form([]), ctx: Console = Depends(allowed("circulation", "update", post=True)),
                conn: DB = Depends(get_conn)) -> Response:
    """ロッカーに入れる. The answer shows the unlock code once."""
    retry = {"hold_id": hold_id, "compartment_id": compartment_id}
    try:
        hold = _int("hold", hold_id)
        if hold is None:
            raise invalid("hold", hold_id, "予約を選んでください。", "choose a hold")
        loaded = service.load_hold(conn, ctx.actor(request), hold, compartment_id=_int("compartment", compartment_id),
                                   override=override)
    except ShokaError as exc:
        return _page(request, ctx, conn, branch, error=_error(request, exc), error_code=exc.code,
                     status_code=exc.status, retry=retry)
    return _no_store(render(request, "lockers_loaded.html", ctx, loaded=loaded, branch=branch))


@router.post("/lockers/compartments/{compartment_id}/emptied")
def locker_emptied(compartment_id: int, request: Request, branch: str = Form(""),
                   ctx: Console = Depends(allowed("circulation", "update", post=True)),
                   conn: DB = Depends(get_conn)) -> Response:
    """空になった: the patron took the item."""
    try:
        service.mark_emptied(conn, ctx.actor(request), compartment_id)
    except ShokaError as exc:
        if exc.status == 404:
            raise
        return _page(request, ctx, conn, branch, error=_error(request, exc), status_code=exc.status)
    return RedirectResponse("/lockers?done=emptied" + (f"&branch={quote(branch)}" if branch else ""), status_code=303)


@router.post("/lockers/compartments/{compartment_id}/return")
def locker_return(compartment_id: int, request: Request, branch: str = Form(""),
                  ctx: Console = Depends(allowed("circulation", "update", post=True)),
                  conn: DB = Depends(get_conn)) -> Response:
    """受取期限切れ: take the item out; it is checked in (the next hold is trapped at once)."""
    try:
        result = service.return_uncollected(conn, ctx.actor(request), compartment_id)
    except ShokaError as exc:
        if exc.status == 404:
            raise
        return _page(request, ctx, conn, branch, error=_error(request, exc), status_code=exc.status)
    return render(request, "lockers_returned.html", ctx, result=result, branch=branch)


# -- banks and compartments (circulation:administer) -----------------------------------------------------

def _admin_page(request: Request, ctx: Console, conn: DB, *, error: str = "", error_field: str = "",
                status_code: int = 200, form: dict[str, str] | None = None) -> Response:
    done = request.query_params.get("done", "")
    return render(request, "lockers_admin.html", ctx, status_code=status_code, banks=service.list_banks(conn),
                  branches=branches.list_branches(conn, active_only=True), error=error, error_field=error_field,
                  form=form or {}, done=done if done in DONE else "")


@router.get("/admin/lockers")
def lockers_admin(request: Request, ctx: Console = Depends(allowed("circulation", "administer")),
                  conn: DB = Depends(get_conn)) -> Response:
    return _admin_page(request, ctx, conn)


def _labels(labels: str, count: str, prefix: str, start: str = "") -> list[str]:
    """The labels typed out, else `count` numbered ones (with an optional prefix) from `start` (1)."""
    if labels.strip():
        return service.parse_labels(labels)
    number = _int("count", count)
    if number is None:
        raise invalid("count", count, "扉の数か番号の一覧を入力してください。",
                      "give a number of compartments or their labels")
    first = _int("start", start)
    return service.compartment_labels(number, prefix=prefix, start=1 if first is None else first)


@router.post("/admin/lockers")
def locker_bank_create(request: Request, code: str = Form(""), name: str = Form(""), branch: str = Form(""),
                       location: str = Form(""), count: str = Form(""), prefix: str = Form(""),
                       labels: str = Form(""), ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                       conn: DB = Depends(get_conn)) -> Response:
    form = {"code": code, "name": name, "branch": branch, "location": location, "count": count, "prefix": prefix,
            "labels": labels}
    try:
        bank_id = service.create_bank(conn, ctx.actor(request), code, name, branch, _labels(labels, count, prefix),
                                      location=location)
    except ShokaError as exc:
        return _admin_page(request, ctx, conn, error=_error(request, exc), error_field=exc.field or "",
                           status_code=exc.status, form=form)
    return RedirectResponse(f"/admin/lockers/{bank_id}?done=created", status_code=303)


def _bank_page(request: Request, ctx: Console, conn: DB, bank_id: int, *, error: str = "", error_field: str = "",
               status_code: int = 200, form: dict[str, str] | None = None) -> Response:
    done = request.query_params.get("done", "")
    return render(request, "lockers_bank.html", ctx, status_code=status_code, bank=service.get_bank(conn, bank_id),
                  error=error, error_field=error_field, form=form or {}, done=done if done in DONE else "")


@router.get("/admin/lockers/{bank_id}")
def locker_bank(bank_id: int, request: Request, ctx: Console = Depends(allowed("circulation", "administer")),
                conn: DB = Depends(get_conn)) -> Response:
    return _bank_page(request, ctx, conn, bank_id)


@router.post("/admin/lockers/{bank_id}/compartments")
def locker_compartments_add(bank_id: int, request: Request, count: str = Form(""), prefix: str = Form(""),
                            start: str = Form(""), labels: str = Form(""),
                            ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                            conn: DB = Depends(get_conn)) -> Response:
    service.get_bank(conn, bank_id)
    form = {"count": count, "prefix": prefix, "start": start, "labels": labels}
    try:
        service.add_compartments(conn, ctx.actor(request), bank_id, _labels(labels, count, prefix, start))
    except ShokaError as exc:
        return _bank_page(request, ctx, conn, bank_id, error=_error(request, exc), error_field=exc.field or "",
                          status_code=exc.status, form=form)
    return RedirectResponse(f"/admin/lockers/{bank_id}?done=added", status_code=303)


@router.post("/admin/lockers/{bank_id}/compartments/{compartment_id}/service")
def locker_compartment_service(bank_id: int, compartment_id: int, request: Request, out_of_service: str = Form(""),
                               ctx: Console = Depends(allowed("circulation", "administer", post=True)),
                               conn: DB = Depends(get_conn)) -> Response:
    """使用中止 / 再開."""
    bank = service.get_bank(conn, bank_id)
    if compartment_id not in {c.id for c in bank.compartments}:
        raise invalid("compartment", compartment_id, "このロッカーの扉ではありません。",
                      "not a compartment of this bank")
    service.set_out_of_service(conn, ctx.actor(request), compartment_id, out_of_service == "1")
    return RedirectResponse(f"/admin/lockers/{bank_id}?done=service", status_code=303)
