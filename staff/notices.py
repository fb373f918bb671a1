"""Staff console: email notices (通知メール) — what was sent, what failed and why, and 再送.

The list shows patrons' card numbers, so opening it is audited (notice.list) by the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import DB, get_conn
from api.errors import ShokaError
from api.notices import service
from api.web import request_lang
from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)
JST = ZoneInfo("Asia/Tokyo")


def _when(value: datetime | None) -> str:
    return value.astimezone(JST).strftime("%Y-%m-%d %H:%M") if value else ""


def _row(r: Any) -> dict[str, Any]:
    return {"id": r["id"], "kind": r["kind"], "status": r["status"], "attempts": r["attempts"],
            "last_error": r["last_error"] or "", "card": r["card"], "patron_id": r["patron_id"],
            "created_at": _when(r["created_at"]), "sent_at": _when(r["sent_at"]),
            "next_attempt_at": _when(r["next_attempt_at"]) if r["status"] == "pending" else ""}


def _page(request: Request, ctx: Console, conn: DB, status: str, *, error: str = "",
          status_code: int = 200) -> Response:
    rows: list[dict[str, Any]] = []
    try:
        rows = [_row(r) for r in service.list_notices(conn, ctx.actor(request), status=status or None)]
    except ShokaError as exc:
        error, status_code = exc.message(request_lang(request)), exc.status
    return render(request, "notices.html", ctx, status_code=status_code, rows=rows, status=status,
                  statuses=service.STATUSES, mail_enabled=request.app.state.settings.mail_enabled, error=error,
                  retried=request.query_params.get("retried", ""))


@router.get("/notices")
def notices_list(request: Request, status: str = "", ctx: Console = Depends(allowed("patrons", "view")),
                 conn: DB = Depends(get_conn)) -> Response:
    return _page(request, ctx, conn, status)


# Under /patrons: changes are filed under the permission area they need (patrons:update).
@router.post("/patrons/notices/{notice_id}/retry")
def notice_retry(notice_id: int, request: Request, status: str = Form(""),
                 ctx: Console = Depends(allowed("patrons", "update", post=True)),
                 conn: DB = Depends(get_conn)) -> Response:
    """再送: a failed notice goes back to the queue; the worker sends it within seconds."""
    back = status if status in service.STATUSES else ""
    try:
        service.retry(conn, ctx.actor(request), notice_id)
    except ShokaError as exc:
        if exc.status == 404:
            raise
        return _page(request, ctx, conn, back, error=exc.message(request_lang(request)), status_code=exc.status)
    query = f"retried={notice_id}" + (f"&status={quote(back)}" if back else "")
    return RedirectResponse(f"/notices?{query}", status_code=303)
