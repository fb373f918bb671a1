"""JSON API for circulation (貸出・返却・延長). Card numbers travel in request bodies, never in URLs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth.permissions import Principal
from api.circulation import receipts, service
from api.deps import DB, actor_for, api_permission, get_conn

router = APIRouter(prefix="/api/v1/circulation", tags=["circulation"])


class CheckoutIn(BaseModel):
    patron: str = Field(description="the patron's card number as scanned")
    item: str = Field(description="the item's barcode as scanned")
    branch: str | None = Field(default=None, description="the counter's branch; default the staff member's")
    override: list[str] = Field(default_factory=list,
                                description="refusals the clerk has seen and overrides: "
                                            + ", ".join(sorted(service.OVERRIDABLE)))


class ItemIn(BaseModel):
    item: str
    branch: str | None = None


class ReceiptIn(BaseModel):
    kind: str = Field(pattern="^(checkout|checkin|renew)$")
    items: list[str] = Field(min_length=1, max_length=200)
    patron: str | None = None
    workstation: str | None = None
    branch: str | None = None


class ReprintIn(BaseModel):
    workstation: str | None = None


def _hold_json(hold: service.HoldInfo | None) -> dict[str, Any] | None:
    if hold is None:
        return None
    return {"id": hold.id, "pickup_branch": hold.pickup_branch, "status": hold.status}


@router.post("/checkout", status_code=201)
def checkout(body: CheckoutIn, request: Request, conn: DB = Depends(get_conn),
             principal: Principal = Depends(api_permission("circulation", "update"))) -> dict[str, Any]:
    result = service.checkout(conn, actor_for(principal, request), body.patron, body.item, branch=body.branch,
                              staff_branch=principal.branch_code, override=body.override)
    return {"loan_id": result.loan_id, "due_date": result.due_date.isoformat(), "item": result.item,
            "title": result.title, "already_on_loan_to_patron": result.already_on_loan_to_patron,
            "overridden": list(result.overridden)}


@router.post("/checkin")
def checkin(body: ItemIn, request: Request, conn: DB = Depends(get_conn),
            principal: Principal = Depends(api_permission("circulation", "update"))) -> dict[str, Any]:
    result = service.checkin(conn, actor_for(principal, request), body.item, branch=body.branch,
                             staff_branch=principal.branch_code)
    return {"item": result.item, "title": result.title, "status": result.status, "loan_id": result.loan_id,
            "overdue_days": result.overdue_days, "transfer_to": result.transfer_to,
            "transit_received": result.transit_received, "hold": _hold_json(result.hold),
            "suspended_until": result.suspended_until.isoformat() if result.suspended_until else None,
            "alerts": list(result.alerts)}


@router.post("/renew")
def renew(body: ItemIn, request: Request, conn: DB = Depends(get_conn),
          principal: Principal = Depends(api_permission("circulation", "update"))) -> dict[str, Any]:
    result = service.renew(conn, actor_for(principal, request), body.item, branch=body.branch,
                           staff_branch=principal.branch_code)
    return {"loan_id": result.loan_id, "item": result.item, "title": result.title,
            "due_date": result.due_date.isoformat(), "renewals": result.renewals}


@router.post("/receipts", status_code=201)
def print_receipt(body: ReceiptIn, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("circulation", "print"))) -> dict[str, Any]:
    """Print a receipt for what was just done at the counter. The loans stand whatever the printer does:
    a failed print answers `printed: false` with the reason, and can be reprinted."""
    outcome = receipts.issue(conn, actor_for(principal, request), body.kind, body.items, patron_card=body.patron,
                             workstation=body.workstation, branch=body.branch or principal.branch_code,
                             library_name=request.app.state.settings.library_name)
    return outcome.as_json()


@router.post("/receipts/reprint")
def reprint_receipt(body: ReprintIn, request: Request, conn: DB = Depends(get_conn),
                    principal: Principal = Depends(api_permission("circulation", "print"))) -> dict[str, Any]:
    outcome = receipts.reprint_last(conn, actor_for(principal, request), workstation=body.workstation)
    return outcome.as_json()
