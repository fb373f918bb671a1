"""JSON API for patrons (利用者). Paths carry the internal patron id, never the card number or a name:
URLs end up in logs and browser histories. A look-up by card goes in the query string (`?card=`),
which the access log leaves out."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from api.auth.permissions import Principal
from api.deps import DB, actor_for, api_permission, get_conn
from api.errors import invalid
from api.patrons import service

router = APIRouter(prefix="/api/v1/patrons", tags=["patrons"])
MAX_LIMIT = 200


class PatronIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped field name is an error, not ignored

    card: str
    name: str
    name_reading: str
    category: str
    branch: str
    email: str | None = None
    birth_date: date | None = None
    phone: str | None = None
    address: str | None = None
    postal_code: str | None = None
    expires_on: date | None = None
    notes: str | None = None
    keep_history: bool = False
    contact_name: str | None = None
    allow_duplicate: bool = False


class PatronPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped field name is an error, not ignored

    card: str | None = None
    name: str | None = None
    name_reading: str | None = None
    category: str | None = None
    branch: str | None = None
    email: str | None = None
    birth_date: date | None = None
    phone: str | None = None
    address: str | None = None
    postal_code: str | None = None
    expires_on: date | None = None
    notes: str | None = None
    keep_history: bool | None = None
    contact_name: str | None = None


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a mistyped field name is an error, not ignored

    kind: str
    reason: str
    ends_on: date | None = None
    starts_on: date | None = None


def standing_json(standing: service.Standing) -> dict[str, Any]:
    out = asdict(standing)
    out["blocked"] = standing.blocked
    out["reasons"] = list(standing.reasons)
    return out


def patron_json(row: dict[str, Any]) -> dict[str, Any]:
    return dict(row)


@router.post("", status_code=201)
def register_patron(body: PatronIn, request: Request, conn: DB = Depends(get_conn),
                    principal: Principal = Depends(api_permission("patrons", "update"))) -> dict[str, Any]:
    fields = body.model_dump(exclude={"allow_duplicate"})
    patron_id = service.register_patron(conn, actor_for(principal, request), service.NewPatron(**fields),
                                        allow_duplicate=body.allow_duplicate)
    return {"id": patron_id, "card": service.load_patron(conn, patron_id)["card"]}


@router.get("")
def search_patrons(request: Request, card: str | None = None, q: str | None = None, limit: int = 50,
                   conn: DB = Depends(get_conn),
                   principal: Principal = Depends(api_permission("patrons", "view"))) -> dict[str, Any]:
    """`?card=` finds the patron with exactly that card; `?q=` searches card, name, reading and phone."""
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid("limit", limit, f"1〜{MAX_LIMIT}で指定してください。", f"must be between 1 and {MAX_LIMIT}")
    actor = actor_for(principal, request)
    if card is not None:
        found = service.search_patrons(conn, actor, card, limit, only=("card",))
    elif q is not None:
        found = service.search_patrons(conn, actor, q, limit)
    else:
        raise invalid("q", "", "card か q を指定してください。", "give card or q")
    return {"patrons": [dict(p) for p in found.patrons], "kinds": list(found.kinds), "truncated": found.truncated}


@router.get("/{patron_id}")
def get_patron(patron_id: int, request: Request, conn: DB = Depends(get_conn),
               principal: Principal = Depends(api_permission("patrons", "view"))) -> dict[str, Any]:
    out = patron_json(service.get_patron(conn, actor_for(principal, request), patron_id))
    out["standing"] = standing_json(service.standing(conn, patron_id))
    out["blocks"] = [asdict(b) for b in service.list_blocks(conn, patron_id)]
    return out


@router.patch("/{patron_id}")
def update_patron(patron_id: int, body: PatronPatch, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("patrons", "update"))) -> dict[str, Any]:
    service.update_patron(conn, actor_for(principal, request), patron_id, body.model_dump(exclude_unset=True))
    return patron_json(service.load_patron(conn, patron_id))


@router.post("/{patron_id}/blocks", status_code=201)
def add_block(patron_id: int, body: BlockIn, request: Request, conn: DB = Depends(get_conn),
              principal: Principal = Depends(api_permission("patrons", "update"))) -> dict[str, Any]:
    block_id = service.add_block(conn, actor_for(principal, request), patron_id, body.kind, body.reason,
                                 ends_on=body.ends_on, starts_on=body.starts_on)
    return {"id": block_id, "standing": standing_json(service.standing(conn, patron_id))}


@router.delete("/{patron_id}/blocks/{block_id}")
def lift_block(patron_id: int, block_id: int, request: Request, conn: DB = Depends(get_conn),
               principal: Principal = Depends(api_permission("patrons", "update"))) -> dict[str, Any]:
    service.lift_block(conn, actor_for(principal, request), block_id, patron_id=patron_id)
    return {"id": block_id, "lifted": True, "standing": standing_json(service.standing(conn, patron_id))}


@router.get("/{patron_id}/loans")
def current_loans(patron_id: int, request: Request, conn: DB = Depends(get_conn),
                  principal: Principal = Depends(api_permission("patrons", "view"))) -> dict[str, Any]:
    """The loans not yet returned; for a group (団体) this is the counter's 団体貸出 list."""
    service.get_patron(conn, actor_for(principal, request), patron_id)  # audited: a view of the record
    return {"loans": [asdict(loan) for loan in service.current_loans(conn, patron_id)]}


@router.post("/{patron_id}/renew-card")
def renew_card(patron_id: int, request: Request, conn: DB = Depends(get_conn),
               principal: Principal = Depends(api_permission("patrons", "update"))) -> dict[str, Any]:
    expires_on = service.renew_card(conn, actor_for(principal, request), patron_id)
    return {"id": patron_id, "expires_on": expires_on.isoformat()}
