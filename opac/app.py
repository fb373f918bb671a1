"""The OPAC app on :8000. It connects as the read-only OPAC role and never sees patron tables."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response

from api import db
from api.branches.service import library_name, list_branches
from api.config import Settings
from api.deps import DB, get_conn
from api.web import (
    Templates,
    health_router,
    install_error_handlers,
    install_security_headers,
    readiness_checks,
    static_css,
)
from indexer.engine import engine_for

OPAC_DIR = Path(__file__).resolve().parent


def create_opac_app(settings: Settings, opac_database_url: str, redis_url: str) -> FastAPI:
    app = FastAPI(title="Shoka OPAC", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.settings = settings
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

    @app.get("/search", include_in_schema=False)
    def search(request: Request, q: str = "") -> Response:
        return templates.render(request, "search.html", {"q": q}, status_code=503)

    return app
