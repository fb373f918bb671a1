"""JSON API for holds (予約). The patron is named by card in bodies and query strings (never logged),
not in paths."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from api.audit import record
from api.auth.permissions import Principal
from api.deps import DB, actor_for, api_permission, get_conn
from api.errors import ShokaError, invalid
from api.holds import service
from api.patrons.service import find_by_card

router = APIRouter(prefix="/api/v1/holds", tags=["holds"])


class HoldIn(BaseModel):
    patron: str = Field(description="the patron's card number")
    record_id: int
    pickup_branch: str
    item: str | None = Field(default=None, description="an item barcode for an item-level hold")


class HoldPatch(BaseModel):
    suspended_until: date | None = None
    resume: bool = False
    pickup_branch: str | None = None


def _patron_id(conn: DB, card: str) -> int:
    row = find_by_card(conn, card.strip())
    if row is None:
        raise ShokaError("unknown_patron", f"patron: 利用者番号「{card}」の利用者はいません。",
                         f"patron: no patron with card {card!r}.", status=404, field="patron")
    return int(row["id"])


@router.post("", status_code=201)
def place(body: HoldIn, request: Request, conn: DB = Depends(get_conn),
          principal: Principal = Depends(api_permission("circulation", "update"))) -> dict[str, Any]:
    patron_id = _patron_id(conn, body.patron)
    item_id = None
    if body.item:
        row = conn.execute("SELECT id FROM item WHERE barcode = %s", (body.item,)).fetchone()
        if row is None:
            raise invalid("item", body.item, "その資料はありません。", "no such item")
        item_id = int(row["id"])
    placed = service.place_hold(conn, actor_for(principal, request), patron_id, body.record_id, body.pickup_branch,
                                item_id=item_id, placed_by=principal.username)
    return {"id": placed.id, "status": placed.status, "position": placed.position}


@router.get("")
def list_for_patron(request: Request, patron: str = Query(description="card number"), conn: DB = Depends(get_conn),
                    principal: Principal = Depends(api_permission("circulation", "view"))) -> dict[str, Any]:
    patron_id = _patron_id(conn, patron)
    with conn.transaction():
        record(conn, actor_for(principal, request), "patron.view", "patron", patron.strip(),
               {"id": patron_id, "via": "holds"})
    return {"holds": [service.hold_json(h) for h in service.patron_holds(conn, patron_id)]}


@router.delete("/{hold_id}", status_code=204)
def cancel(hold_id: int, request: Request, conn: DB = Depends(get_conn),
           principal: Principal = Depends(api_permission("circulation", "update"))) -> Response:
    service.cancel_hold(conn, actor_for(principal, request), hold_id, reason="staff")
    return Response(status_code=204)


@router.patch("/{hold_id}")
def change(hold_id: int, body: HoldPatch, request: Request, conn: DB = Depends(get_conn),
           principal: Principal = Depends(api_permission("circulation", "update"))) -> dict[str, Any]:
    actor = actor_for(principal, request)
    if body.suspended_until is not None or body.resume:
        service.suspend_hold(conn, actor, hold_id, None if body.resume else body.suspended_until)
    if body.pickup_branch:
        service.change_pickup(conn, actor, hold_id, body.pickup_branch)
    return {"id": hold_id, "position": service.position(conn, hold_id)}
