"""The OPAC's side of the channel to the internal API (My Library, purchase requests).

The OPAC holds no patron data: the patron's cookie carries an opaque session token, and every page
asks the internal API (the staff app, SHOKA_INTERNAL_URL) and forgets the answer after rendering.
This module is all an OPAC page needs for that:

- ``InternalAPI``: an httpx client with a timeout that sends the service token, the patron's session
  and the patron's address, and turns the internal error JSON back into a ShokaError (Japanese and
  English messages), so a page can show ``exc.message(lang)``. No answer (down, timeout, not JSON)
  → ShokaError ``mylibrary_unavailable`` (503).
- ``signed_in`` (dependency) → ``Patron``, whose ``get/post/patch/delete(path, body)`` call the internal
  API for this patron. No cookie → 401 ``unauthenticated``.
- ``MyLibraryRoute``: route class for patron pages. Every response gets ``Cache-Control: no-store``; a
  401 from the internal API (no session, expired) clears the cookie and redirects to the login page
  (``?next=`` is the page's own path); other refusals render error.html.
- ``render`` (a page with ``csrf_token`` and ``signed_in`` in its context) and ``check_csrf`` (every
  POST: the form's ``csrf_token`` must match the one derived from the session cookie).

A purchase-request page (opac/requests.py), for example::

    router = APIRouter(include_in_schema=False, route_class=MyLibraryRoute)

    @router.get("/mylibrary/requests")
    def requests_page(request: Request, me: Patron = Depends(signed_in)) -> Response:
        return render(request, "requests.html", {"requests": me.get("/internal/v1/requests")["requests"]})

    @router.post("/mylibrary/requests")
    def create(request: Request, csrf_token: str = Form(""), title: str = Form(""),
               me: Patron = Depends(signed_in)) -> Response:
        check_csrf(request, csrf_token)
        try:
            me.post("/internal/v1/requests", {"title": title})
        except ShokaError as exc:
            if exc.status == 401:
                raise                                   # MyLibraryRoute sends the patron to sign in
            return render(request, "requests.html", {"error": exc.message(request_lang(request))},
                          status_code=exc.status)
        return RedirectResponse("/mylibrary/requests?msg=request_sent", status_code=303)

Never put a card number, name or email in a path, a query or a log line: send them in the JSON body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from api.config import Settings
from api.deps import client_addr
from api.errors import ShokaError
from api.web import Templates, request_lang

log = logging.getLogger("shoka.opac.internal")

OPAC_DIR = Path(__file__).resolve().parent
SESSION_COOKIE = "shoka_opac_session"
LOGIN_CSRF_COOKIE = "shoka_opac_login_csrf"
SERVICE_TOKEN_HEADER = "X-Shoka-Service-Token"  # noqa: S105 - header names as in api/internal/deps.py
PATRON_SESSION_HEADER = "X-Shoka-Patron-Session"
CLIENT_ADDR_HEADER = "X-Shoka-Client-Addr"
DEFAULT_TIMEOUT = 5.0
SESSION_COOKIE_AGE = 12 * 3600   # the internal API ends the session sooner when idle

UNAVAILABLE = ShokaError(
    "mylibrary_unavailable", "ただいまマイライブラリを利用できません。しばらくしてからもう一度お試しください。",
    "My Library is not available right now. Please try again later.", status=503)
NOT_SIGNED_IN = ShokaError("unauthenticated", "ログインしてください。", "Please sign in.", status=401)
CSRF_FAILED = ShokaError(
    "csrf_failed", "フォームの有効期限が切れたか、不正な送信です。画面を開き直してからもう一度お試しください。",
    "The form expired or was not sent from this site. Reload the page and try again.", status=403)


class InternalAPI:
    """A client of the internal API, shared by the OPAC's requests (one connection pool)."""

    def __init__(self, base_url: str, service_token: str | None, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.service_token = service_token or ""
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                    follow_redirects=False, headers={"Accept": "application/json"})

    def call(self, method: str, path: str, *, session: str | None = None, client_addr: str | None = None,
             body: dict[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer (None for 204). Refusals raise ShokaError."""
        if not self.service_token:
            log.error("SHOKA_SERVICE_TOKEN is not set: My Library cannot reach the internal API")
            raise UNAVAILABLE
        headers = {SERVICE_TOKEN_HEADER: self.service_token}
        if session:
            headers[PATRON_SESSION_HEADER] = session
        if client_addr:
            headers[CLIENT_ADDR_HEADER] = client_addr
        try:
            response = self._client.request(method, path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            log.warning("internal API %s %s failed: %s", method, path, type(exc).__name__)
            raise UNAVAILABLE from None
        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            raise _refusal(response.status_code, data, method, path)
        if data is None:
            log.warning("internal API %s %s answered %s without JSON", method, path, response.status_code)
            raise UNAVAILABLE
        return data

    def close(self) -> None:
        self._client.close()


def _refusal(status: int, data: Any, method: str, path: str) -> ShokaError:
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not error.get("code"):
        log.warning("internal API %s %s answered %s", method, path, status)
        return UNAVAILABLE
    if status == 403 and error.get("code") == "service_forbidden":
        log.error("the internal API refused the OPAC's service token (SHOKA_SERVICE_TOKEN differs?)")
        return UNAVAILABLE
    ja = str(error.get("message") or error["code"])
    return ShokaError(str(error["code"]), ja, str(error.get("message_en") or ja), status=status,
                      field=error.get("field"))


def _service_token(settings: Settings) -> str | None:
    from api.internal.deps import configured_token

    return configured_token(settings)


def internal_api(request: Request) -> InternalAPI:
    """The app's client, made on first use from SHOKA_INTERNAL_URL and SHOKA_SERVICE_TOKEN."""
    state = request.app.state
    api: InternalAPI | None = getattr(state, "internal_api", None)
    if api is None:
        settings: Settings = state.settings
        api = InternalAPI(settings.internal_base_url, _service_token(settings))
        state.internal_api = api
    return api


# -- the patron's session (cookie) and CSRF ------------------------------------------------------------

def secure_cookies() -> bool:
    return os.environ.get("SHOKA_COOKIE_SECURE", "").lower() in ("1", "true", "yes")


def session_token(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_COOKIE_AGE, httponly=True, samesite="lax",
                        secure=secure_cookies(), path="/")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure_cookies())


def csrf_token(request: Request) -> str:
    """The form token for this session: derived from the session cookie with the service token as key,
    so the OPAC stores nothing and a page from another site cannot know it."""
    token = session_token(request)
    key = internal_api(request).service_token
    if not token or not key:
        return ""
    digest = hmac.new(key.encode(), b"opac-csrf\0" + token.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def check_csrf(request: Request, submitted: str) -> None:
    expected = csrf_token(request)
    if not expected or not submitted or not secrets.compare_digest(expected.encode(), submitted.encode()):
        raise CSRF_FAILED


@dataclass(frozen=True)
class Patron:
    """A signed-in patron as the OPAC knows them: only the opaque session token."""

    api: InternalAPI
    session: str
    client_addr: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.api.call(method, path, session=self.session, client_addr=self.client_addr, body=body)

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body)

    def patch(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.call("DELETE", path)


def signed_in(request: Request) -> Patron:
    """Dependency: the patron of this browser's session cookie, else 401 (→ the login page)."""
    token = session_token(request)
    if not token:
        raise NOT_SIGNED_IN
    return Patron(internal_api(request), token, client_addr(request))


# -- pages ---------------------------------------------------------------------------------------------

def templates(request: Request) -> Templates:
    state = request.app.state
    found: Templates | None = getattr(state, "mylibrary_templates", None)
    if found is None:
        found = Templates([OPAC_DIR / "templates"], {"library_name": state.settings.library_name})
        state.mylibrary_templates = found
    return found


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status_code: int = 200) -> HTMLResponse:
    """A My Library page: never cached, with the session's CSRF token and the ?msg= code."""
    base = {"csrf_token": csrf_token(request), "signed_in": bool(session_token(request)),
            "message": request.query_params.get("msg", ""), "error": "", "error_field": ""}
    response = templates(request).render(request, name, {**base, **(context or {})}, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


def login_redirect(request: Request, exc: ShokaError) -> Response:
    """To the login page, coming back here afterwards (the path only; GET pages only)."""
    target = "/mylibrary/login"
    params = []
    if exc.code == "session_expired":
        params.append("expired=1")
    if request.method == "GET" and request.url.path.startswith("/mylibrary") and \
            request.url.path not in ("/mylibrary/login", "/mylibrary"):
        here = request.url.path + ("?" + request.url.query if request.url.query else "")
        params.append("next=" + quote(here, safe="/"))
    response = RedirectResponse(target + ("?" + "&".join(params) if params else ""), status_code=303)
    clear_session_cookie(response)
    return response


def _error_page(request: Request, exc: ShokaError) -> Response:
    return render(request, "error.html", {"title": exc.code, "message": exc.message(request_lang(request))},
                  status_code=exc.status)


class MyLibraryRoute(APIRoute):
    """Patron pages: no-store on every answer, sign-in when the session is missing or over."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except ShokaError as exc:
                if exc.status == 401 and exc.code in ("unauthenticated", "session_expired"):
                    response = login_redirect(request, exc)
                else:
                    response = _error_page(request, exc)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "form"))
                response = _error_page(request, ShokaError(
                    "validation_error", f"{field}: 入力内容を確認してください。", f"{field}: please check this value.",
                    status=422, field=field))
            response.headers["Cache-Control"] = "no-store"
            return response

        return guarded
