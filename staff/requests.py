"""Staff console: purchase requests (リクエスト) — the queue, decisions and arrival.

Seeing the queue needs patrons:view; acting on a request needs circulation:update. Pages and URLs
carry the request id and the patron's internal id only (the link to the patron's record, whose
opening is audited there): no card number or name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import DB, get_conn
from api.errors import ShokaError, invalid
from api.requests import service
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
JST = ZoneInfo("Asia/Tokyo")
FILTERS = ("open", *service.STATUSES, "all")
DONE = ("saved", "arrived")


def _when(value: datetime | None) -> str:
    return value.astimezone(JST).strftime("%Y-%m-%d %H:%M") if value else ""


def _common() -> dict[str, Any]:
    return {"when": _when, "status_ja": service.STATUS_JA, "status_en": service.STATUS_EN}


@router.get("/requests")
def requests_queue(request: Request, status: str = "open", ctx: Console = Depends(allowed("patrons", "view")),
                   conn: DB = Depends(get_conn)) -> Response:
    error, rows, code = "", [], 200
    try:
        rows = service.list_requests(conn, status=None if status == "all" else status)
    except ShokaError as exc:
        error, code = exc.message(request_lang(request)), exc.status
    return render(request, "requests.html", ctx, status_code=code, rows=rows, status=status, filters=FILTERS,
                  error=error, **_common())


def _detail(request: Request, ctx: Console, conn: DB, request_id: int, *, error: str = "", error_field: str = "",
            status_code: int = 200, form: dict[str, str] | None = None) -> Response:
    done = request.query_params.get("done", "")
    return render(request, "requests_detail.html", ctx, status_code=status_code,
                  req=service.get_request(conn, request_id), next_states=service.TRANSITIONS, error=error,
                  error_field=error_field, form=form or {}, done=done if done in DONE else "", **_common())


@router.get("/requests/{request_id}")
def request_detail(request_id: int, request: Request, ctx: Console = Depends(allowed("patrons", "view")),
                   conn: DB = Depends(get_conn)) -> Response:
    return _detail(request, ctx, conn, request_id)


@router.post("/requests/{request_id}/status")
def request_decide(request_id: int, request: Request, status: str = Form(""), reason: str = Form(""),
                   ctx: Console = Depends(allowed("circulation", "update", post=True)),
                   conn: DB = Depends(get_conn)) -> Response:
    """購入 / 相互貸借 / 謝絶 (with a reason) / 取消."""
    service.get_request(conn, request_id)  # 404 first
    try:
        service.decide(conn, ctx.actor(request), request_id, status, reason)
    except ShokaError as exc:
        return _detail(request, ctx, conn, request_id, error=exc.message(request_lang(request)),
                       error_field=exc.field or "", status_code=exc.status, form={"status": status, "reason": reason})
    return RedirectResponse(f"/requests/{request_id}?done=saved", status_code=303)


@router.post("/requests/{request_id}/arrived")
def request_arrived(request_id: int, request: Request, record_id: str = Form(""),
                    ctx: Console = Depends(allowed("circulation", "update", post=True)),
                    conn: DB = Depends(get_conn)) -> Response:
    """到着: link the catalogue record; a hold is placed for the requester."""
    service.get_request(conn, request_id)
    try:
        text = record_id.strip()
        if not text.isdigit():
            raise invalid("record_id", record_id, "書誌IDは数字です。", "a record ID is a number")
        service.mark_arrived(conn, ctx.actor(request), request_id, int(text))
    except ShokaError as exc:
        return _detail(request, ctx, conn, request_id, error=exc.message(request_lang(request)),
                       error_field=exc.field or "", status_code=exc.status, form={"record_id": record_id})
    return RedirectResponse(f"/requests/{request_id}?done=arrived", status_code=303)
