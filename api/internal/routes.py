"""Internal API: My Library for the OPAC (/internal/v1). Every route needs the service token; every route
but /login acts for the patron of X-Shoka-Patron-Session and only on that patron's own loans and holds.
See api/internal/deps.py for the headers and the error format."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import Depends, Request, Response
from pydantic import BaseModel, Field

from api.circulation.service import renew
from api.deps import DB, get_conn
from api.errors import not_found
from api.holds import service as holds
from api.internal.deps import PatronSession, internal_router, json_dates, patron_addr, patron_session
from api.mylibrary import service as mylibrary
from api.patrons.service import current_loans

router = internal_router("/internal/v1")


class LoginIn(BaseModel):
    card: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class PasswordIn(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class SettingsIn(BaseModel):
    email: str | None = Field(default=None, max_length=254, description="'' removes the address")
    keep_history: bool | None = None


class HoldIn(BaseModel):
    record_id: int
    pickup_branch: str = Field(max_length=32)


class HoldPatch(BaseModel):
    suspended_until: date | None = None
    resume: bool = False
    pickup_branch: str | None = Field(default=None, max_length=32)


# -- session ----------------------------------------------------------------------------------------

@router.post("/login")
def login(body: LoginIn, request: Request, conn: DB = Depends(get_conn)) -> dict[str, Any]:
    """Card + password → an opaque session token for the OPAC's cookie (the only thing the OPAC keeps)."""
    done = mylibrary.login(conn, body.card, body.password, patron_addr(request))
    return {"session": done.token, "expires_at": done.expires_at.isoformat()}


@router.post("/logout", status_code=204)
def logout(conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> Response:
    mylibrary.logout(conn, me.token, me.client_addr)
    return Response(status_code=204)


# -- the patron -------------------------------------------------------------------------------------

@router.get("/me")
def me_(conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    """Name for the greeting, email, history consent, home branch, counts of loans and holds."""
    return json_dates(mylibrary.profile(conn, me.patron_id))


@router.patch("/me")
def change_settings(body: SettingsIn, conn: DB = Depends(get_conn),
                    me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    email = body.email.strip() if body.email is not None else None
    mylibrary.update_settings(conn, me.actor(), me.patron_id, email=email or None, clear_email=email == "",
                              keep_history=body.keep_history)
    return json_dates(mylibrary.profile(conn, me.patron_id))


@router.post("/password", status_code=204)
def change_password(body: PasswordIn, conn: DB = Depends(get_conn),
                    me: PatronSession = Depends(patron_session)) -> Response:
    mylibrary.change_password(conn, me.patron_id, body.current_password, body.new_password, me.client_addr,
                              keep_token=me.token)
    return Response(status_code=204)


@router.get("/history")
def history(conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    """読書記録: returned loans kept with the patron's consent."""
    return {"history": json_dates(mylibrary.history(conn, me.patron_id))}


# -- loans ------------------------------------------------------------------------------------------

def _loan_json(loan: Any) -> dict[str, Any]:
    return {"id": loan.id, "title": loan.title, "checked_out_at": loan.checked_out_at.isoformat(),
            "due_date": loan.due_date.isoformat(), "renewals": loan.renewals, "overdue": loan.overdue,
            "branch": loan.branch}


@router.get("/loans")
def loans(conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    return {"loans": [_loan_json(loan) for loan in current_loans(conn, me.patron_id)]}


@router.post("/loans/{loan_id}/renew")
def renew_loan(loan_id: int, conn: DB = Depends(get_conn),
               me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    """延長 of one of the patron's own loans, under the rules of the branch that lent it."""
    row = conn.execute("SELECT i.barcode, b.code AS branch FROM loan l JOIN item i ON i.id = l.item_id "
                       "JOIN branch b ON b.id = l.branch_id "
                       "WHERE l.id = %s AND l.patron_id = %s AND l.returned_at IS NULL",
                       (loan_id, me.patron_id)).fetchone()
    if row is None:
        raise not_found("loan", str(loan_id))
    done = renew(conn, me.actor(), row["barcode"], branch=row["branch"], patron_id=me.patron_id)
    return {"id": done.loan_id, "title": done.title, "due_date": done.due_date.isoformat(),
            "renewals": done.renewals}


# -- holds ------------------------------------------------------------------------------------------

@router.get("/holds")
def list_holds(conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    """Holds with queue position, status, pickup branch and deadline, locker."""
    return {"holds": [holds.hold_json(h) for h in holds.patron_holds(conn, me.patron_id)]}


@router.post("/holds", status_code=201)
def place(body: HoldIn, conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    placed = holds.place_hold(conn, me.actor(), me.patron_id, body.record_id, body.pickup_branch, placed_by="opac")
    return {"id": placed.id, "status": placed.status, "position": placed.position}


@router.delete("/holds/{hold_id}", status_code=204)
def cancel(hold_id: int, conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> Response:
    holds.cancel_hold(conn, me.actor(), hold_id, patron_id=me.patron_id, reason="patron")
    return Response(status_code=204)


@router.patch("/holds/{hold_id}")
def change(hold_id: int, body: HoldPatch, conn: DB = Depends(get_conn),
           me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    """保留 (suspended_until), 保留解除 (resume) or 受取館の変更 (pickup_branch)."""
    actor = me.actor()
    if body.suspended_until is not None or body.resume:
        holds.suspend_hold(conn, actor, hold_id, None if body.resume else body.suspended_until,
                           patron_id=me.patron_id)
    if body.pickup_branch:
        holds.change_pickup(conn, actor, hold_id, body.pickup_branch, patron_id=me.patron_id)
    mine = [h for h in holds.patron_holds(conn, me.patron_id) if h["id"] == hold_id]
    if not mine:
        raise not_found("hold", str(hold_id))
    return holds.hold_json(mine[0])
