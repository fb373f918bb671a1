"""JSON API: search the audit log (itself an audited view, since rows name people)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from api.audit import record, service
from api.auth.permissions import Principal
from api.deps import DB, actor_for, api_permission, get_conn

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


def run_search(conn: DB, principal: Principal, request: Request, q: service.AuditQuery) -> tuple[list[Any], int]:
    with conn.transaction():
        rows, total = service.search(conn, q)
        record(conn, actor_for(principal, request), "audit.search", "audit", "",
               {k: str(v) for k, v in q.__dict__.items() if v and k not in ("limit", "offset")})
    return rows, total


@router.get("")
def search_audit(request: Request, date_from: date | None = None, date_to: date | None = None,
                 actor: str = "", action: str = "", subject: str = "",
                 limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
                 conn: DB = Depends(get_conn),
                 principal: Principal = Depends(api_permission("system", "view"))) -> dict[str, Any]:
    q = service.AuditQuery(date_from, date_to, actor, action, subject, limit, offset)
    rows, total = run_search(conn, principal, request, q)
    return {"total": total, "entries": [
        {"id": r["id"], "occurred_at": r["occurred_at"].isoformat(), "actor": r["actor"],
         "client_addr": r["client_addr"], "action": r["action"], "subject_type": r["subject_type"],
         "subject_id": r["subject_id"], "details": r["details"]} for r in rows]}
