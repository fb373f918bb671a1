"""OPAC: My Library (マイライブラリ): the patron's loans, holds, reading history and settings.

The OPAC keeps no patron data: each page asks the internal API (opac/internal.py) with the opaque
session token from the cookie, renders the answer and forgets it. Card numbers, names and email
addresses travel only in POST bodies and in the page itself, never in a URL, a redirect or a log
line; redirects carry paths and message codes only. Every state change is a POST with the CSRF token
derived from the session cookie; every answer is `Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.branches.service import list_branches
from api.deps import DB, client_addr, get_conn
from api.errors import ShokaError, invalid
from api.web import request_lang
from opac import search as search_module
from opac.internal import (
    LOGIN_CSRF_COOKIE,
    MyLibraryRoute,
    Patron,
    check_csrf,
    clear_session_cookie,
    internal_api,
    render,
    secure_cookies,
    session_token,
    set_session_cookie,
    signed_in,
)

router = APIRouter(include_in_schema=False, route_class=MyLibraryRoute)

LOGIN_ATTEMPTS_PER_ADDRESS = 20   # sign-in attempts per client address ...
LOGIN_WINDOW_SECONDS = 600.0      # ... within ten minutes; the per-card lockout is the internal API's


class LoginLimiter:
    """A sliding-window limit of sign-in attempts per client address, in this process's memory."""

    def __init__(self, limit: int = LOGIN_ATTEMPTS_PER_ADDRESS, window: float = LOGIN_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        """Count one attempt; False when the address has used up its attempts for the window."""
        now = self.clock()
        with self._lock:
            if len(self._hits) > 10_000:  # forget quiet addresses so memory stays bounded
                self._hits = {a: q for a, q in self._hits.items() if q and q[-1] > now - self.window}
            hits = self._hits.setdefault(address, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True


class SharedLoginLimiter:
    """The same limit kept in Valkey/Redis, so that it holds across all the OPAC's worker processes.
    A fixed window per address (hashed: no address is stored); if Valkey does not answer, the
    process's own limiter takes over rather than locking everyone out."""

    def __init__(self, client: Any, limit: int = LOGIN_ATTEMPTS_PER_ADDRESS, window: float = LOGIN_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.time, namespace: str = "") -> None:
        self.client, self.limit, self.window, self.clock = client, limit, window, clock
        self.prefix = f"shoka:opac:login:{namespace}:" if namespace else "shoka:opac:login:"
        self.fallback = LoginLimiter(limit, window)

    def allow(self, address: str) -> bool:
        slot = int(self.clock() // self.window)
        key = self.prefix + hashlib.sha256(address.encode()).hexdigest()[:24] + f":{slot}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, int(self.window) + 1)
            count = int(pipe.execute()[0])
        except Exception:  # any Valkey failure: limit in this process instead
            return self.fallback.allow(address)
        return count <= self.limit


TOO_MANY_ATTEMPTS = ShokaError(
    "too_many_attempts", "ログインの試行が多すぎます。しばらく時間をおいてからもう一度お試しください。",
    "Too many sign-in attempts from this network. Please wait a while and try again.", status=429)


def login_limiter(request: Request) -> LoginLimiter | SharedLoginLimiter:
    state = request.app.state
    limiter: LoginLimiter | SharedLoginLimiter | None = getattr(state, "mylibrary_login_limiter", None)
    if limiter is None:
        redis_url = getattr(state, "redis_url", "")
        if redis_url:
            import redis

            # One count per library: every worker of this OPAC (same database) shares it.
            namespace = hashlib.sha256(str(getattr(state, "opac_database_url", "")).encode()).hexdigest()[:12]
            limiter = SharedLoginLimiter(redis.Redis.from_url(redis_url, socket_timeout=0.5), namespace=namespace)
        else:
            limiter = LoginLimiter()
        state.mylibrary_login_limiter = limiter
    return limiter


def _safe_next(target: str) -> str:
    """Only a path on this site: never another host, never a scheme."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or "\n" in target or \
            "\r" in target:
        return "/mylibrary"
    return target


def _back(path: str, msg: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?msg={msg}", status_code=303)


def _lang(request: Request) -> str:
    return request_lang(request)


def _pickup_branches(conn: DB) -> list[Any]:
    return [b for b in list_branches(conn, active_only=True) if b["takes_holds"]]


# -- sign-in -----------------------------------------------------------------------------------------

def _login_page(request: Request, *, next_path: str, error: str = "", status_code: int = 200,
                card: str = "") -> Response:
    csrf = secrets.token_urlsafe(24)
    response = render(request, "mylibrary_login.html", {
        "login_csrf": csrf, "next": next_path, "error": error, "card": card,
        "expired": request.query_params.get("expired") == "1"}, status_code=status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="lax",
                        secure=secure_cookies(), path="/mylibrary")
    return response


@router.get("/mylibrary/login")
def login_form(request: Request, next: str = "/mylibrary") -> Response:
    return _login_page(request, next_path=_safe_next(next))


@router.post("/mylibrary/login")
def login(request: Request, card: str = Form(""), password: str = Form(""), csrf_token: str = Form(""),
          next: str = Form("/mylibrary")) -> Response:
    next_path = _safe_next(next)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    try:
        if not cookie or not csrf_token or not secrets.compare_digest(cookie.encode(), csrf_token.encode()):
            raise ShokaError("csrf_failed", "フォームの有効期限が切れました。もう一度ログインしてください。",
                             "The form expired. Please sign in again.", status=403)
        if not login_limiter(request).allow(client_addr(request)):
            raise TOO_MANY_ATTEMPTS
        if not card.strip() or not password:
            raise ShokaError("credentials_required", "利用者番号とパスワードを入力してください。",
                             "Enter your card number and password.", status=422,
                             field="card" if not card.strip() else "password")
        answer = internal_api(request).call("POST", "/internal/v1/login", client_addr=client_addr(request),
                                            body={"card": card, "password": password})
    except ShokaError as exc:
        return _login_page(request, next_path=next_path, error=exc.message(_lang(request)),
                           status_code=exc.status, card=card)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, str(answer["session"]))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/mylibrary")
    return response


@router.post("/mylibrary/logout")
def logout(request: Request, csrf_token: str = Form(""), me: Patron = Depends(signed_in)) -> Response:
    check_csrf(request, csrf_token)
    try:
        me.post("/internal/v1/logout")
    except ShokaError as exc:
        if exc.status != 401:
            raise
    response = _back("/mylibrary/login", "logged_out")
    clear_session_cookie(response)
    return response


# -- the home page: loans and holds ----------------------------------------------------------------

def _home(request: Request, me: Patron, conn: DB, *, error: str = "", error_field: str = "",
          status_code: int = 200) -> Response:
    profile = me.get("/internal/v1/me")
    return render(request, "mylibrary.html", {
        "me": profile, "loans": me.get("/internal/v1/loans")["loans"], "holds": me.get("/internal/v1/holds")["holds"],
        "branches": _pickup_branches(conn), "today": date.today().isoformat(), "error": error,
        "error_field": error_field}, status_code=status_code)


@router.get("/mylibrary")
def home(request: Request, me: Patron = Depends(signed_in), conn: DB = Depends(get_conn)) -> Response:
    return _home(request, me, conn)


def _act(request: Request, me: Patron, conn: DB, csrf: str, call: Callable[[], Any], msg: str) -> Response:
    """A change from the home page: done → back with a message; refused → the page with the reason."""
    check_csrf(request, csrf)
    try:
        call()
    except ShokaError as exc:
        if exc.status in (401, 503):
            raise
        return _home(request, me, conn, error=exc.message(_lang(request)), error_field=exc.field or "",
                     status_code=exc.status)
    return _back("/mylibrary", msg)


@router.post("/mylibrary/loans/{loan_id}/renew")
def renew(loan_id: int, request: Request, csrf_token: str = Form(""), me: Patron = Depends(signed_in),
          conn: DB = Depends(get_conn)) -> Response:
    return _act(request, me, conn, csrf_token, lambda: me.post(f"/internal/v1/loans/{loan_id}/renew"), "renewed")


@router.post("/mylibrary/holds/{hold_id}/cancel")
def cancel_hold(hold_id: int, request: Request, csrf_token: str = Form(""), me: Patron = Depends(signed_in),
                conn: DB = Depends(get_conn)) -> Response:
    return _act(request, me, conn, csrf_token, lambda: me.delete(f"/internal/v1/holds/{hold_id}"), "hold_cancelled")


def _parse_day(field: str, value: str) -> str:
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise invalid(field, value, "日付は 2026-04-01 の形で入力してください。", "use the form 2026-04-01") from None


@router.post("/mylibrary/holds/{hold_id}/suspend")
def suspend_hold(hold_id: int, request: Request, suspended_until: str = Form(""), csrf_token: str = Form(""),
                 me: Patron = Depends(signed_in), conn: DB = Depends(get_conn)) -> Response:
    """保留: the hold keeps its place in the queue but is skipped until the date."""
    return _act(request, me, conn, csrf_token, lambda: me.patch(
        f"/internal/v1/holds/{hold_id}", {"suspended_until": _parse_day("suspended_until", suspended_until)}),
        "hold_suspended")


@router.post("/mylibrary/holds/{hold_id}/resume")
def resume_hold(hold_id: int, request: Request, csrf_token: str = Form(""), me: Patron = Depends(signed_in),
                conn: DB = Depends(get_conn)) -> Response:
    return _act(request, me, conn, csrf_token, lambda: me.patch(f"/internal/v1/holds/{hold_id}", {"resume": True}),
                "hold_resumed")


@router.post("/mylibrary/holds/{hold_id}/pickup")
def change_pickup(hold_id: int, request: Request, pickup_branch: str = Form(""), csrf_token: str = Form(""),
                  me: Patron = Depends(signed_in), conn: DB = Depends(get_conn)) -> Response:
    return _act(request, me, conn, csrf_token, lambda: me.patch(
        f"/internal/v1/holds/{hold_id}", {"pickup_branch": pickup_branch}), "pickup_changed")


# -- placing a hold from a record page ---------------------------------------------------------------

def _confirm_page(request: Request, me: Patron, conn: DB, record_id: int, pickup: str, *, error: str = "",
                  status_code: int = 200) -> Response:
    record = search_module.record_page(conn, record_id)
    if record is None:
        raise ShokaError("not_found", "この資料は見つかりません。", "No such record.", status=404)
    branches = _pickup_branches(conn)
    if not pickup or pickup not in {b["code"] for b in branches}:
        home_branch = me.get("/internal/v1/me").get("home_branch")
        pickup = home_branch if home_branch in {b["code"] for b in branches} else \
            (branches[0]["code"] if branches else "")
    return render(request, "mylibrary_hold.html", {"record": record, "branches": branches, "pickup": pickup,
                                                   "error": error}, status_code=status_code)


@router.get("/mylibrary/holds/new")
def hold_confirm(request: Request, record_id: int, pickup_branch: str = "", me: Patron = Depends(signed_in),
                 conn: DB = Depends(get_conn)) -> Response:
    """The confirmation of a hold: the title and the pickup branch, then 予約する."""
    return _confirm_page(request, me, conn, record_id, pickup_branch)


@router.post("/mylibrary/holds/new")
def hold_place(request: Request, record_id: int = Form(...), pickup_branch: str = Form(""),
               csrf_token: str = Form(""), conn: DB = Depends(get_conn)) -> Response:
    """From a record page (no token there: the page is public) → the confirmation page, after signing in if
    need be. From the confirmation page (with the session's token) → the hold is placed."""
    query = urlencode({"record_id": record_id, **({"pickup_branch": pickup_branch} if pickup_branch else {})})
    confirm = f"/mylibrary/holds/new?{query}"
    if not session_token(request):
        return RedirectResponse("/mylibrary/login?next=" + quote(confirm, safe="/"), status_code=303)
    if not csrf_token:
        return RedirectResponse(confirm, status_code=303)
    me = signed_in(request)
    check_csrf(request, csrf_token)
    try:
        me.post("/internal/v1/holds", {"record_id": record_id, "pickup_branch": pickup_branch})
    except ShokaError as exc:
        if exc.status in (401, 503):
            raise
        return _confirm_page(request, me, conn, record_id, pickup_branch, error=exc.message(_lang(request)),
                             status_code=exc.status)
    return _back("/mylibrary", "hold_placed")


# -- reading history and settings ---------------------------------------------------------------------

@router.get("/mylibrary/history")
def history(request: Request, me: Patron = Depends(signed_in)) -> Response:
    profile = me.get("/internal/v1/me")
    return render(request, "mylibrary_history.html", {"me": profile,
                                                      "history": me.get("/internal/v1/history")["history"]})


def _settings_page(request: Request, me: Patron, *, error: str = "", error_field: str = "", email: str | None = None,
                   status_code: int = 200) -> Response:
    profile = me.get("/internal/v1/me")
    return render(request, "mylibrary_settings.html", {
        "me": profile, "email": (profile.get("email") or "") if email is None else email, "error": error,
        "error_field": error_field}, status_code=status_code)


@router.get("/mylibrary/settings")
def settings_page(request: Request, me: Patron = Depends(signed_in)) -> Response:
    return _settings_page(request, me)


def _setting(request: Request, me: Patron, csrf: str, call: Callable[[], Any], msg: str,
             email: str | None = None) -> Response:
    check_csrf(request, csrf)
    try:
        call()
    except ShokaError as exc:
        if exc.status in (401, 503):
            raise
        return _settings_page(request, me, error=exc.message(_lang(request)), error_field=exc.field or "",
                              email=email, status_code=exc.status)
    return _back("/mylibrary/settings", msg)


@router.post("/mylibrary/settings/email")
def change_email(request: Request, email: str = Form(""), csrf_token: str = Form(""),
                 me: Patron = Depends(signed_in)) -> Response:
    return _setting(request, me, csrf_token, lambda: me.patch("/internal/v1/me", {"email": email.strip()}),
                    "email_saved", email=email)


@router.post("/mylibrary/settings/history")
def change_history(request: Request, keep_history: str = Form(""), csrf_token: str = Form(""),
                   me: Patron = Depends(signed_in)) -> Response:
    """読書記録を残す (opt-in) or not; without consent the nightly job forgets returned loans."""
    if keep_history not in ("yes", "no"):
        check_csrf(request, csrf_token)
        raise invalid("keep_history", keep_history, "「残す」か「残さない」を選んでください。", "choose yes or no")
    return _setting(request, me, csrf_token,
                    lambda: me.patch("/internal/v1/me", {"keep_history": keep_history == "yes"}), "history_saved")


@router.post("/mylibrary/settings/password")
def change_password(request: Request, current_password: str = Form(""), new_password: str = Form(""),
                    new_password_again: str = Form(""), csrf_token: str = Form(""),
                    me: Patron = Depends(signed_in)) -> Response:
    def call() -> None:
        if new_password != new_password_again:
            raise ShokaError("password_mismatch", "新しいパスワードが確認用と一致しません。",
                             "The new password and its confirmation differ.", status=422,
                             field="new_password_again")
        me.post("/internal/v1/password", {"current_password": current_password, "new_password": new_password})

    return _setting(request, me, csrf_token, call, "password_changed")
