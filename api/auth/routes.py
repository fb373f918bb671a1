"""JSON API: tokens, the signed-in user, staff accounts, roles/groups and their grants."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, Field

from api.auth import service
from api.auth.permissions import Principal, parse_permissions
from api.deps import DB, actor_for, api_permission, api_principal, bearer_token, client_addr, get_conn

router = APIRouter(prefix="/api/v1", tags=["staff"])
admin = api_permission("system", "administer")


class TokenRequest(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)


@router.post("/auth/token")
def issue_token(body: TokenRequest, request: Request, conn: DB = Depends(get_conn)) -> dict[str, Any]:
    """Exchange a staff user ID and password for a bearer token (valid 8 hours)."""
    account_id = service.authenticate(conn, body.username, body.password, client_addr(request))
    session = service.open_session(conn, account_id, "api", client_addr(request))
    return {"access_token": session.token, "token_type": "bearer", "expires_at": session.expires_at.isoformat()}


@router.post("/auth/logout", status_code=204)
def revoke_token(request: Request, conn: DB = Depends(get_conn),
                 principal: Principal = Depends(api_principal)) -> Response:
    service.close_session(conn, bearer_token(request), principal, client_addr(request), "api")
    return Response(status_code=204)


def _principal_json(p: Principal) -> dict[str, Any]:
    return {"username": p.username, "display_name": p.display_name, "branch": p.branch_code,
            "roles": list(p.roles), "groups": list(p.groups),
            "permissions": sorted(f"{a}:{b}" for a, b in p.permissions)}


@router.get("/me")
def me(principal: Principal = Depends(api_principal)) -> dict[str, Any]:
    return _principal_json(principal)


class StaffIn(BaseModel):
    username: str
    password: str
    display_name: str = ""
    branch: str | None = None
    roles: list[str] = []
    groups: list[str] = []


class StaffPatch(BaseModel):
    display_name: str | None = None
    branch: str | None = None
    active: bool | None = None
    roles: list[str] | None = None
    groups: list[str] | None = None
    password: str | None = None


def _account_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"username": row["username"], "display_name": row["display_name"], "active": row["active"],
            "branch": row["branch"], "roles": row["roles"], "groups": row["groups"],
            "locked_until": row["locked_until"].isoformat() if row["locked_until"] else None,
            "last_login_at": row["last_login_at"].isoformat() if row["last_login_at"] else None}


@router.get("/staff")
def list_staff(request: Request, conn: DB = Depends(get_conn),
               principal: Principal = Depends(admin)) -> list[dict[str, Any]]:
    return [_account_json(r) for r in service.view_accounts(conn, actor_for(principal, request))]


@router.post("/staff", status_code=201)
def create_staff(body: StaffIn, request: Request, conn: DB = Depends(get_conn),
                 principal: Principal = Depends(admin)) -> dict[str, str]:
    service.create_account(conn, actor_for(principal, request), body.username, body.password,
                           display_name=body.display_name, roles=body.roles, groups=body.groups, branch=body.branch)
    return {"username": body.username}


@router.get("/staff/{username}")
def get_staff(username: str, request: Request, conn: DB = Depends(get_conn),
              principal: Principal = Depends(admin)) -> dict[str, Any]:
    return _account_json(service.get_account(conn, actor_for(principal, request), username))


@router.patch("/staff/{username}")
def update_staff(username: str, body: StaffPatch, request: Request, conn: DB = Depends(get_conn),
                 principal: Principal = Depends(admin)) -> dict[str, str]:
    service.update_account(conn, actor_for(principal, request), username, **body.model_dump(exclude_none=True))
    return {"username": username}


@router.post("/staff/{username}/unlock")
def unlock_staff(username: str, request: Request, conn: DB = Depends(get_conn),
                 principal: Principal = Depends(admin)) -> dict[str, str]:
    service.unlock_account(conn, actor_for(principal, request), username)
    return {"username": username}


@router.post("/staff-assignments")
def import_assignments(request: Request, csv_text: str = Body(..., media_type="text/csv"), dry_run: bool = False,
                       conn: DB = Depends(get_conn), principal: Principal = Depends(admin)) -> dict[str, Any]:
    """Year-end assignment changes: a CSV with username, branch, roles, groups, active."""
    report = service.import_assignments(conn, actor_for(principal, request), csv_text, dry_run=dry_run)
    return {"dry_run": report.dry_run, "applied": report.applied,
            "rejected": [{"line": line, "reason": reason} for line, reason in report.rejected]}


@router.get("/roles")
def list_roles(conn: DB = Depends(get_conn),
               _: Principal = Depends(api_permission("system", "view"))) -> list[dict[str, Any]]:
    return [dict(r) for r in service.list_roles(conn)]


class GrantsIn(BaseModel):
    permissions: list[str]


@router.put("/roles/{code}/permissions")
def set_role_permissions(code: str, body: GrantsIn, request: Request, conn: DB = Depends(get_conn),
                         principal: Principal = Depends(admin)) -> dict[str, Any]:
    service.set_permissions(conn, actor_for(principal, request), "role", code, parse_permissions(body.permissions))
    return {"code": code, "permissions": sorted(body.permissions)}


class GroupIn(BaseModel):
    code: str
    name: str


@router.post("/groups", status_code=201)
def create_group(body: GroupIn, request: Request, conn: DB = Depends(get_conn),
                 principal: Principal = Depends(admin)) -> dict[str, str]:
    service.create_group(conn, actor_for(principal, request), body.code, body.name)
    return {"code": body.code}


@router.put("/groups/{code}/permissions")
def set_group_permissions(code: str, body: GrantsIn, request: Request, conn: DB = Depends(get_conn),
                          principal: Principal = Depends(admin)) -> dict[str, Any]:
    service.set_permissions(conn, actor_for(principal, request), "group", code, parse_permissions(body.permissions))
    return {"code": code, "permissions": sorted(body.permissions)}
