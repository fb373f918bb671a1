"""JSON API for items (所蔵)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.auth.permissions import Principal
from api.deps import DB, actor_for, api_permission, get_conn
from api.items import service

router = APIRouter(prefix="/api/v1/items", tags=["items"])


class ItemIn(BaseModel):
    record_id: int
    barcode: str
    branch: str
    item_type: str
    location: str | None = None
    call_number: str | None = None
    acquired_on: date | None = None
    price: int | None = Field(default=None, ge=0)
    notes: str | None = None
    status: str = "available"


class ItemPatch(BaseModel):
    location: str | None = None
    call_number: str | None = None
    item_type: str | None = None
    status: str | None = None
    price: int | None = Field(default=None, ge=0)
    notes: str | None = None
    acquired_on: date | None = None


class TransferIn(BaseModel):
    branch: str
    location: str | None = None


class WithdrawIn(BaseModel):
    reason: str
    on: date | None = None


def _item_json(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("acquired_on", "withdrawn_on"):
        out[key] = out[key].isoformat() if out[key] else None
    return out


@router.post("", status_code=201)
def create_item(body: ItemIn, request: Request, conn: DB = Depends(get_conn),
                principal: Principal = Depends(api_permission("catalogue", "update"))) -> dict[str, Any]:
    item_id = service.create_item(conn, actor_for(principal, request), service.NewItem(**body.model_dump()))
    return {"id": item_id, "barcode": body.barcode}


@router.get("/{barcode}")
def get_item(barcode: str, conn: DB = Depends(get_conn),
             _: Principal = Depends(api_permission("catalogue", "view"))) -> dict[str, Any]:
    return _item_json(service.get_item(conn, barcode))


@router.patch("/{barcode}")
def update_item(barcode: str, body: ItemPatch, request: Request, conn: DB = Depends(get_conn),
                principal: Principal = Depends(api_permission("catalogue", "update"))) -> dict[str, Any]:
    service.update_item(conn, actor_for(principal, request), barcode, body.model_dump(exclude_unset=True))
    return _item_json(service.get_item(conn, barcode))


@router.post("/{barcode}/transfer")
def transfer_item(barcode: str, body: TransferIn, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("catalogue", "update"))) -> dict[str, Any]:
    service.transfer_item(conn, actor_for(principal, request), barcode, body.branch, body.location)
    return _item_json(service.get_item(conn, barcode))


@router.post("/{barcode}/withdraw")
def withdraw_item(barcode: str, body: WithdrawIn, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("catalogue", "update"))) -> dict[str, Any]:
    service.withdraw_item(conn, actor_for(principal, request), barcode, body.reason, body.on)
    return _item_json(service.get_item(conn, barcode))
