"""The internal app on :8001: the staff console and the JSON API, sharing one connection pool."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api import db
from api.audit.routes import router as audit_api
from api.auth.routes import router as auth_api
from api.branches.routes import router as branches_api
from api.catalog.routes import router as catalog_api
from api.circulation.routes import router as circulation_api
from api.config import Settings
from api.errors import ShokaError
from api.holds.routes import router as holds_api
from api.internal.requests import router as internal_requests_api
from api.internal.routes import router as internal_api
from api.items.routes import router as items_api
from api.patrons.routes import router as patrons_api
from api.web import (
    Templates,
    health_router,
    install_error_handlers,
    install_security_headers,
    readiness_checks,
    static_css,
)
from indexer.engine import engine_for

STAFF_DIR = Path(__file__).resolve().parent.parent / "staff"


def create_staff_app(settings: Settings, database_url: str, redis_url: str) -> FastAPI:
    from staff.circulation_admin import router as circulation_admin_console
    from staff.counter import router as counter_console
    from staff.holds import router as holds_console
    from staff.lockers import router as lockers_console
    from staff.notices import router as notices_console
    from staff.patrons import router as patrons_console
    from staff.requests import router as requests_console
    from staff.routes import router as console

    app = FastAPI(title="Shoka internal API", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.settings = settings
    app.state.pool = db.pool(database_url)
    templates = Templates([STAFF_DIR / "templates"], {"library_name": settings.library_name})
    app.state.templates = templates
    app.state.engine = engine_for(settings)

    def to_login(request: Request, exc: ShokaError) -> Response:
        target = "/login?expired=1" if exc.code == "session_expired" else "/login"
        if request.method == "GET" and request.url.path not in ("/", "/login"):
            from urllib.parse import quote

            target += ("&" if "?" in target else "?") + "next=" + quote(request.url.path, safe="/")
        return RedirectResponse(target, status_code=303)

    install_error_handlers(app, templates, on_unauthenticated=to_login)
    install_security_headers(app)

    app.include_router(health_router(readiness_checks(app.state.pool, "SELECT 1", redis_url,
                                                      engine_for(settings).ping)))
    app.add_api_route("/static/staff.css", static_css(STAFF_DIR / "static" / "staff.css"),
                      include_in_schema=False)
    app.add_api_route("/static/counter.js", static_css(STAFF_DIR / "static" / "counter.js", "text/javascript"),
                      include_in_schema=False)
    app.include_router(auth_api)
    app.include_router(branches_api)
    app.include_router(items_api)
    app.include_router(catalog_api)
    app.include_router(audit_api)
    app.include_router(patrons_api)
    app.include_router(circulation_api)
    app.include_router(holds_api)
    app.include_router(console)
    app.include_router(counter_console)
    app.include_router(patrons_console)
    app.include_router(circulation_admin_console)
    app.include_router(holds_console)
    app.include_router(lockers_console)
    app.include_router(notices_console)
    app.include_router(requests_console)
    app.include_router(internal_api)
    app.include_router(internal_requests_api)
    return app
