"""JSON API for branches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.auth.permissions import Principal
from api.branches import service
from api.deps import DB, actor_for, api_permission, api_principal, get_conn

router = APIRouter(prefix="/api/v1/branches", tags=["branches"])


class BranchIn(BaseModel):
    code: str
    name: str
    name_en: str | None = None
    kind: str = "library"
    takes_holds: bool = True


class BranchPatch(BaseModel):
    name: str | None = None
    name_en: str | None = None
    takes_holds: bool | None = None
    active: bool | None = None


@router.get("")
def list_branches(conn: DB = Depends(get_conn), _: Principal = Depends(api_principal)) -> list[dict[str, Any]]:
    return [dict(r) for r in service.list_branches(conn)]


@router.post("", status_code=201)
def create_branch(body: BranchIn, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("system", "update"))) -> dict[str, str]:
    service.create_branch(conn, actor_for(principal, request), body.code, body.name, name_en=body.name_en,
                          kind=body.kind, takes_holds=body.takes_holds)
    return {"code": body.code}


@router.patch("/{code}")
def update_branch(code: str, body: BranchPatch, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("system", "update"))) -> dict[str, str]:
    service.update_branch(conn, actor_for(principal, request), code, **body.model_dump(exclude_none=True))
    return {"code": code}


class LocationIn(BaseModel):
    code: str
    name: str
    name_en: str | None = None


@router.get("/{code}/locations")
def list_locations(code: str, conn: DB = Depends(get_conn),
                   _: Principal = Depends(api_principal)) -> list[dict[str, Any]]:
    return [dict(r) for r in service.list_locations(conn, code)]


@router.post("/{code}/locations", status_code=201)
def create_location(code: str, body: LocationIn, request: Request, conn: DB = Depends(get_conn),
                    principal: Principal = Depends(api_permission("system", "update"))) -> dict[str, str]:
    service.create_location(conn, actor_for(principal, request), code, body.code, body.name, body.name_en)
    return {"branch": code, "code": body.code}
