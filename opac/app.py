"""The OPAC app on :8000. It connects as the read-only OPAC role and never sees patron tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from api import db
from api.branches.service import library_name, list_branches
from api.config import Settings
from api.deps import DB, get_conn
from api.errors import ShokaError, invalid, not_found
from api.web import (
    Templates,
    health_router,
    install_error_handlers,
    install_security_headers,
    readiness_checks,
    request_lang,
    static_css,
)
from indexer.engine import engine_for
from indexer.params import from_params, has_criteria
from indexer.query import MAX_RESULT_WINDOW, QueryError, SearchRequest
from opac import search as search_module

OPAC_DIR = Path(__file__).resolve().parent


def create_opac_app(settings: Settings, opac_database_url: str, redis_url: str) -> FastAPI:
    app = FastAPI(title="Shoka OPAC", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.settings = settings
    app.state.redis_url = redis_url
    app.state.opac_database_url = opac_database_url
    app.state.pool = db.pool(opac_database_url, max_size=10)
    templates = Templates([OPAC_DIR / "templates"], {"library_name": settings.library_name})
    install_error_handlers(app, templates)
    install_security_headers(app)

    # The probe reads a public table, so it also proves the OPAC role's grants are in place.
    app.include_router(health_router(readiness_checks(app.state.pool, "SELECT count(*) FROM branch", redis_url,
                                                      engine_for(settings).ping)))
    app.add_api_route("/static/opac.css", static_css(OPAC_DIR / "static" / "opac.css"), include_in_schema=False)

    @app.get("/", include_in_schema=False)
    def top(request: Request, conn: DB = Depends(get_conn)) -> Response:
        return templates.render(request, "index.html", {
            "library_name": library_name(conn, settings.library_name),
            "branches": list_branches(conn, active_only=True)})

    engine = engine_for(settings)

    def run_search(request: Request, conn: DB) -> search_module.Outcome:
        try:
            search_request = from_params(request.query_params)
        except QueryError as exc:
            raise invalid(exc.param, exc.value, "検索条件を確認してください。", exc.reason) from None
        try:
            return search_module.search(conn, engine, search_request)
        except QueryError as exc:
            raise invalid(exc.param, exc.value, "これより先の結果は表示できません。条件を絞ってください。",
                          exc.reason) from None

    @app.get("/search", include_in_schema=False)
    def search_page(request: Request, conn: DB = Depends(get_conn)) -> Response:
        params = request.query_params
        if not has_criteria(params):
            return templates.render(request, "search.html", {"outcome": None, "params": params, "error": "",
                                                              "query_string": ""})
        try:
            outcome = run_search(request, conn)
        except ShokaError as exc:
            return templates.render(request, "search.html", {
                "outcome": None, "params": params, "error": exc.message(request_lang(request)),
                "query_string": ""}, status_code=exc.status)
        kept = [(k, v) for k, v in params.multi_items() if k not in ("page", "lang") and v]
        return templates.render(request, "search.html", {
            "outcome": outcome, "params": params, "error": "", "query_string": urlencode(kept),
            "pages": max(1, -(-min(outcome.result.total, MAX_RESULT_WINDOW) // outcome.request.size))})

    @app.get("/new", include_in_schema=False)
    def new_arrivals(request: Request, conn: DB = Depends(get_conn)) -> Response:
        """新着: the most recently added records, newest first."""
        outcome = search_module.search(conn, engine, SearchRequest(facets=("material_type", "ndc_class"), size=50))
        return templates.render(request, "search.html", {
            "outcome": outcome, "params": request.query_params, "error": "", "query_string": "", "pages": 1,
            "heading": "新着資料"})

    @app.get("/records/{record_id}", include_in_schema=False)
    def record_html(record_id: int, request: Request, conn: DB = Depends(get_conn)) -> Response:
        record = search_module.record_page(conn, record_id)
        if record is None:
            raise not_found("record", str(record_id))
        return templates.render(request, "record.html", {"record": record})

    @app.get("/api/v1/search", tags=["search"])
    def search_api(request: Request, conn: DB = Depends(get_conn)) -> dict[str, Any]:
        """Search the catalogue. Parameters: q, title, author, publisher, subject, isbn, ndc, year_from,
        year_to, branch, available, material_type, match (partial|exact|prefix), sort
        (relevance|newest|oldest|title), page, size (1-100)."""
        outcome = run_search(request, conn)
        return {
            "total": outcome.result.total, "page": outcome.request.page, "size": outcome.request.size,
            "retried": outcome.retried or None,
            "hits": [{k: r[k] for k in ("id", "title", "title_reading", "authors", "publisher", "year", "isbn",
                                        "ndc", "available")} for r in outcome.records],
            "facets": {name: [{"value": v, "count": c} for v, c in buckets]
                       for name, buckets in outcome.result.facets.items()},
        }

    @app.get("/api/v1/records/{record_id}", tags=["search"])
    def record_api(record_id: int, conn: DB = Depends(get_conn)) -> dict[str, Any]:
        """One record with its live holdings per branch."""
        record = search_module.record_page(conn, record_id)
        if record is None:
            raise not_found("record", str(record_id))
        return record

    from opac.mylibrary import router as mylibrary
    from opac.requests import router as requests_form

    app.include_router(mylibrary)
    app.include_router(requests_form)
    return app
