"""The internal API's guard: only Shoka's own OPAC may call it, and it acts for one patron session at a time.

Two headers, both sent by the OPAC's client (opac/internal.py), never by a browser:

- ``X-Shoka-Service-Token``: the shared secret SHOKA_SERVICE_TOKEN (secrets.json in embedded mode).
  Missing or wrong → 403 ``service_forbidden``. Checked with secrets.compare_digest.
- ``X-Shoka-Patron-Session``: the opaque token from the patron's OPAC cookie, resolved through
  patron_session (stored hashed; 30 minutes idle, 12 hours at most). Missing or unknown → 401
  ``unauthenticated``; idle or too old → 401 ``session_expired``.
- ``X-Shoka-Client-Addr`` (optional): the patron's own address as the OPAC saw it, for the audit log.

Errors answer ``{"error": {"code", "message", "message_en", "field"}}`` (message in Japanese), whatever the
path: the staff app's own handlers would answer an HTML page or a redirect to the console login.

How to add internal routes (e.g. api/internal/requests.py)::

    from fastapi import Depends
    from api.deps import DB, get_conn
    from api.internal.deps import PatronSession, internal_router, patron_session

    router = internal_router("/internal/v1/requests")   # service token checked on every route

    @router.post("", status_code=201)
    def create(body: RequestIn, conn: DB = Depends(get_conn),
               me: PatronSession = Depends(patron_session)) -> dict[str, Any]:
        return {"id": service.create(conn, me.actor(), me.patron_id, ...)}

``me.actor()`` is the audit actor ("patron:<card>" from the patron's address). Ownership is the
route's job: load rows with ``patron_id = me.patron_id``. A route that needs no patron (only
/login) simply leaves out ``patron_session``. Answer JSON only; never put personal data in a path.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from api.audit import Actor
from api.config import Settings
from api.deps import DB, client_addr, get_conn
from api.errors import ShokaError
from api.mylibrary import service as mylibrary

SERVICE_TOKEN_HEADER = "X-Shoka-Service-Token"  # noqa: S105 - a header name
PATRON_SESSION_HEADER = "X-Shoka-Patron-Session"
CLIENT_ADDR_HEADER = "X-Shoka-Client-Addr"

SERVICE_FORBIDDEN = ShokaError(
    "service_forbidden", "この内部APIは書架のOPACからのみ利用できます。",
    "This internal API answers only Shoka's own OPAC (X-Shoka-Service-Token).", status=403)


def error_body(exc: ShokaError) -> dict[str, dict[str, str]]:
    """The internal error JSON: both languages, so the OPAC can show the patron's own."""
    body = exc.body("ja")
    body["error"]["message_en"] = exc.message_en
    return body


def _validation_error(exc: RequestValidationError) -> ShokaError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or "body"
    msg = str(first.get("msg", ""))
    return ShokaError("validation_error", f"{field}: {msg}", f"{field}: {msg}", status=422, field=field)


class InternalRoute(APIRoute):
    """Answers every refusal as internal error JSON, before the staff app's HTML handlers see it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except ShokaError as exc:
                response = JSONResponse(error_body(exc), status_code=exc.status)
            except RequestValidationError as exc:
                err = _validation_error(exc)
                response = JSONResponse(error_body(err), status_code=err.status)
            except json.JSONDecodeError:
                err = ShokaError("malformed_json", "リクエスト本文が正しいJSONではありません。",
                                 "The request body is not valid JSON.", status=400)
                response = JSONResponse(error_body(err), status_code=400)
            response.headers["Cache-Control"] = "no-store"
            return response

        return guarded


def configured_token(settings: Settings) -> str | None:
    """SHOKA_SERVICE_TOKEN; in embedded mode (no DATABASE_URL) the one kept in secrets.json."""
    if settings.service_token:
        return settings.service_token
    if settings.database_url is None and (settings.data_dir / "secrets.json").exists():
        from api.runtime.datadir import load_secrets

        return load_secrets(settings.data_dir).get("service_token") or None
    return None


def require_service(request: Request) -> None:
    """Dependency: the caller presents the service token, else 403."""
    state = request.app.state
    expected = getattr(state, "internal_service_token", None)
    if expected is None:
        expected = configured_token(state.settings) or ""
        state.internal_service_token = expected
    given = request.headers.get(SERVICE_TOKEN_HEADER, "")
    if not expected or not given or not secrets.compare_digest(given.encode(), expected.encode()):
        raise SERVICE_FORBIDDEN


def internal_router(prefix: str) -> APIRouter:
    """A router for internal routes: JSON errors, no-store, and the service token checked on every route."""
    return APIRouter(prefix=prefix, include_in_schema=False, route_class=InternalRoute,
                     dependencies=[Depends(require_service)])


def patron_addr(request: Request) -> str:
    """The patron's address as the OPAC reports it (only believed after the service token), else the caller's."""
    raw = request.headers.get(CLIENT_ADDR_HEADER, "").strip()
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        return client_addr(request)


@dataclass(frozen=True)
class PatronSession:
    """The signed-in patron an internal request acts for."""

    patron_id: int
    card: str
    client_addr: str
    token: str

    def actor(self) -> Actor:
        return mylibrary.patron_actor(self.card, self.client_addr)


def patron_session(request: Request, conn: DB = Depends(get_conn),
                   _service: None = Depends(require_service)) -> PatronSession:
    """Dependency: the patron behind X-Shoka-Patron-Session, else 401 (unauthenticated / session_expired)."""
    token = request.headers.get(PATRON_SESSION_HEADER, "").strip()
    found = mylibrary.resolve_session(conn, token)
    return PatronSession(found.patron_id, found.card, patron_addr(request), token)


def json_dates(value: Any) -> Any:
    """Dates and times as ISO strings, recursively, for answers built from database rows."""
    if isinstance(value, dict):
        return {k: json_dates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_dates(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value
