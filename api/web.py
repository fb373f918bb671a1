"""What the two web apps share: languages and templates, error bodies, security headers, health checks."""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import ShokaError

LANGUAGES = ("ja", "en")
LOCALE_DIR = Path(__file__).parent / "locale"
log = logging.getLogger("shoka.web")


@cache
def translations(lang: str) -> NullTranslations:
    """Japanese is the source language; English comes from locale/en.po, compiled in memory."""
    po = LOCALE_DIR / f"{lang}.po"
    if lang == "ja" or not po.exists():
        return NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf)


def _now() -> datetime:
    return datetime.now(UTC)


def request_lang(request: Request) -> str:
    """?lang= wins (and is remembered in a cookie), then the cookie; Japanese by default."""
    lang = request.query_params.get("lang") or request.cookies.get("lang") or "ja"
    return lang if lang in LANGUAGES else "ja"


class Templates:
    """One Jinja2 environment per language, so rendering never swaps translations between requests."""

    def __init__(self, directories: Sequence[Path], globals_: dict[str, Any] | None = None) -> None:
        self._envs: dict[str, jinja2.Environment] = {}
        for lang in LANGUAGES:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader([str(d) for d in directories]),
                autoescape=True,
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
                undefined=jinja2.StrictUndefined,
            )
            env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
            # Defaults a page may override; error pages render with none of the page's own context.
            env.globals.update({"me": None, "message": "", "csrf_token": "", "now": _now})
            env.globals.update(globals_ or {})
            env.globals["lang"] = lang
            self._envs[lang] = env

    def render(self, request: Request, name: str, context: dict[str, Any] | None = None,
               status_code: int = 200) -> HTMLResponse:
        lang = request_lang(request)
        html = self._envs[lang].get_template(name).render({"request": request, **(context or {})})
        response = HTMLResponse(html, status_code=status_code)
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax", httponly=True)
        return response

    def env(self, lang: str) -> jinja2.Environment:
        return self._envs[lang]


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def install_error_handlers(app: FastAPI, templates: Templates,
                           on_unauthenticated: Callable[[Request, ShokaError], Response] | None = None) -> None:
    """API paths answer {"error": {"code", "message"}}; pages answer a readable HTML page. Never a trace."""

    def _page(request: Request, status: int, title: str, message: str) -> Response:
        return templates.render(request, "error.html", {"title": title, "message": message}, status_code=status)

    @app.exception_handler(ShokaError)
    async def _shoka_error(request: Request, exc: ShokaError) -> Response:
        lang = request_lang(request)
        if wants_json(request):
            return JSONResponse(exc.body(lang), status_code=exc.status)
        if exc.status == 401 and on_unauthenticated is not None:
            return on_unauthenticated(request, exc)
        return _page(request, exc.status, exc.code, exc.message(lang))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            err = ShokaError("malformed_json", "リクエスト本文が正しいJSONではありません。",
                             "The request body is not valid JSON.", status=400)
        else:
            loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
            field = ".".join(loc) or "body"
            value = first.get("input")
            err = ShokaError("validation_error", f"{field}: {value!r} — {first.get('msg', '')}",
                             f"{field}: {value!r} — {first.get('msg', '')}", status=422, field=field)
        return await _shoka_error(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: ("not_found", "ページが見つかりません。", "Page not found."),
                 405: ("method_not_allowed", "この方法では操作できません。", "Method not allowed.")}
        code, ja, en = codes.get(exc.status_code, ("http_error", "リクエストを処理できません。", "Request failed."))
        return await _shoka_error(request, ShokaError(code, ja, en, status=exc.status_code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return await _shoka_error(request, ShokaError(
            "internal_error", "システムエラーが発生しました。操作は記録されていません。もう一度お試しください。",
            "An internal error occurred; nothing was saved. Please try again.", status=500))


class AccessLogWithoutQuery(logging.Filter):
    """Access logs keep the path but drop the query string, where search terms and names would be."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; frame-ancestors 'none'"),
)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response that does not set them itself.

    A plain ASGI middleware: it only rewrites the response's start message. Starlette's `@app.middleware("http")`
    runs each request through a task and a memory stream of its own, which cost an OPAC search page more than
    the framework's own work (docs/benchmarks.md)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: FastAPI) -> None:
    app.add_middleware(SecurityHeaders)


Check = Callable[[], str]


def readiness_checks(pool: Any, probe_sql: str, redis_url: str, search: Check) -> dict[str, Check]:
    """What /readyz asks: the database (with a query the app's own role may run), Redis and search."""

    def database() -> str:
        with pool.connection(timeout=3) as conn:
            conn.execute(probe_sql)
        return f"{probe_sql} ok"

    def redis_ping() -> str:
        import redis

        redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2).ping()
        return "PING ok"

    return {"database": database, "redis": redis_ping, "search": search}


def health_router(checks: dict[str, Check]) -> APIRouter:
    """/healthz: the process answers. /readyz: every dependency answers, naming any that does not."""
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        results: dict[str, dict[str, str]] = {}
        failed = []
        for name, check in checks.items():
            try:
                results[name] = {"status": "ok", "detail": check()}
            except Exception as exc:  # any failure means "not ready", with its reason
                results[name] = {"status": "failed", "detail": str(exc).splitlines()[0][:300]}
                failed.append(name)
        body = {"status": "ready" if not failed else "not_ready", "failed": failed, "checks": results}
        return JSONResponse(body, status_code=200 if not failed else 503)

    return router


def static_css(path: Path, media_type: str = "text/css") -> Callable[[], Response]:
    """Serve one small static file (read once at start-up)."""
    body = path.read_text(encoding="utf-8")

    def _serve() -> Response:
        return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=3600"})

    return _serve


def iter_po_msgids(lang: str = "en") -> Iterator[str]:
    with (LOCALE_DIR / f"{lang}.po").open("rb") as fh:
        for message in read_po(fh, locale=lang):
            if message.id:
                yield str(message.id)
