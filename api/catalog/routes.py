"""Staff JSON API for the catalogue: search on the same engine as the OPAC, exact lookups by item
barcode, call number and record ID, and a record with its items as staff see them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from api.auth.permissions import Principal
from api.catalog import service
from api.deps import DB, actor_for, api_permission, get_conn
from api.errors import invalid
from indexer.params import from_params
from indexer.query import QueryError

router = APIRouter(prefix="/api/v1/catalog", tags=["catalogue"])
viewer = api_permission("catalogue", "view")


@router.get("/search")
def staff_search(request: Request, barcode: str = "", call_number: str = "", record_id: int | None = None,
                 conn: DB = Depends(get_conn), _: Principal = Depends(viewer)) -> dict[str, Any]:
    """Exact lookups (barcode, call_number, record_id) when given; otherwise the OPAC's search parameters."""
    if barcode or call_number or record_id is not None:
        ids = service.lookup(conn, barcode=barcode.strip(), call_number=call_number.strip(), record_id=record_id)
        return {"total": len(ids), "page": 1, "size": len(ids), "hits": service.staff_summaries(conn, ids),
                "facets": {}}
    try:
        search_request = from_params(request.query_params)
    except QueryError as exc:
        raise invalid(exc.param, exc.value, "検索条件を確認してください。", exc.reason) from None
    from opac.search import search

    try:
        outcome = search(conn, request.app.state.engine, search_request)
    except QueryError as exc:
        raise invalid(exc.param, exc.value, "これより先の結果は表示できません。", exc.reason) from None
    return {"total": outcome.result.total, "page": outcome.request.page, "size": outcome.request.size,
            "retried": outcome.retried or None,
            "hits": service.staff_summaries(conn, [h.id for h in outcome.result.hits]),
            "facets": {k: [{"value": v, "count": c} for v, c in b] for k, b in outcome.result.facets.items()}}


class RecordPatch(BaseModel):
    title: str | None = None
    title_reading: str | None = None
    subtitle: str | None = None
    responsibility: str | None = None
    publisher: str | None = None
    publisher_reading: str | None = None
    year: int | None = None
    ndc: str | None = None
    isbns: list[str] | None = None
    notes: list[str] | None = None


@router.patch("/records/{record_id}")
def edit_record(record_id: int, body: RecordPatch, request: Request, conn: DB = Depends(get_conn),
                principal: Principal = Depends(api_permission("catalogue", "update"))) -> dict[str, Any]:
    service.update_record(conn, actor_for(principal, request), record_id, body.model_dump(exclude_unset=True))
    return service.staff_record(conn, record_id)


@router.get("/records/{record_id}")
def staff_record(record_id: int, conn: DB = Depends(get_conn), _: Principal = Depends(viewer)) -> dict[str, Any]:
    return service.staff_record(conn, record_id)
