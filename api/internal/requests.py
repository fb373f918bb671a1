"""Internal API: purchase requests (リクエスト) from the OPAC, for the patron of the session only.

GET answers the patron's requests and the branches that hand out holds; POST submits a request
(validation errors name the field and the value); DELETE withdraws one staff have not acted on.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Response
from pydantic import BaseModel, Field

from api.branches.service import list_branches
from api.deps import DB, get_conn
from api.internal.deps import PatronSession, internal_router, json_dates, patron_session
from api.requests import service

router = internal_router("/internal/v1/requests")


class RequestIn(BaseModel):
    title: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=2000)
    publisher: str | None = Field(default=None, max_length=2000)
    isbn: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=5000)
    pickup_branch: str = Field(default="", max_length=32)


def _json(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "title", "author", "publisher", "isbn", "note", "status", "decline_reason", "record_id",
            "hold_id", "hold_status", "created_at", "updated_at", "pickup_branch", "pickup_branch_name",
            "pickup_branch_name_en")
    out: dict[str, Any] = json_dates({k: row.get(k) for k in keep})
    return out


@router.get("")
def my_requests(conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    branches = [{"code": b["code"], "name": b["name"], "name_en": b["name_en"]}
                for b in list_branches(conn, active_only=True) if b["takes_holds"]]
    return {"requests": [_json(r) for r in service.patron_requests(conn, me.patron_id)],
            "pickup_branches": branches}


@router.post("", status_code=201)
def submit(body: RequestIn, conn: DB = Depends(get_conn),
           me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
    form = service.clean_request(title=body.title, pickup_branch=body.pickup_branch, author=body.author,
                                 publisher=body.publisher, isbn=body.isbn, note=body.note)
    request_id = service.submit_request(conn, me.actor(), me.patron_id, form)
    return {"id": request_id, "status": "received", "isbn": form.isbn}


@router.delete("/{request_id}", status_code=204)
def withdraw(request_id: int, conn: DB = Depends(get_conn), me: PatronSession = Depends(patron_session)) -> Response:
    service.cancel_own(conn, me.actor(), request_id, me.patron_id)
    return Response(status_code=204)
