"""My Library (マイライブラリ) end to end, with no personal data on the OPAC side.

Both apps are served by uvicorn on free local ports and driven over real HTTP: the browser (an httpx
client with a cookie jar) talks to the OPAC, and the OPAC talks to the staff app's internal API. Every
response the browser sees is recorded, so the tests can prove that no card number, name or email ever
appears in a URL, a redirect or a link, and that every My Library answer is `Cache-Control: no-store`;
every log line of both processes (including uvicorn's access log) is captured for the same check.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.audit import Actor
from api.circulation import service as circulation
from api.config import Settings
from api.mylibrary import service as mylibrary
from api.runtime.datadir import load_secrets
from opac.internal import SESSION_COOKIE, InternalAPI
from opac.mylibrary import LoginLimiter
from tests.conftest import Served, console_login
from tests.test_circulation import add_item

TODAY = date.today()
CARD, NAME, EMAIL, PASSWORD = "K20250417", "書架 花子", "hanako.shoka@example.jp", "hanako-pass-1"
OTHER_CARD, OTHER_PASSWORD = "K20250999", "other-pass-22"
SERVICE_TOKEN = "test-service-token-0123456789"
SECRETS = (CARD, NAME, EMAIL, "書架", "花子", "hanako")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("href", "action", "src", "formaction")]


@dataclass
class Site:
    browser: httpx.Client
    opac: Any
    staff_url: str
    conn: psycopg.Connection
    ids: dict[str, int]
    seen: list[httpx.Response] = field(default_factory=list)

    def login(self, card: str = CARD, password: str = PASSWORD, next_path: str = "/mylibrary") -> httpx.Response:
        form = self.browser.get("/mylibrary/login")
        return self.browser.post("/mylibrary/login", data={"card": card, "password": password, "next": next_path,
                                                           "csrf_token": hidden(form.text, "csrf_token")})

    def csrf(self, path: str = "/mylibrary") -> str:
        return hidden(self.browser.get(path).text, "csrf_token")

    def post(self, path: str, data: dict[str, str] | None = None, page: str = "/mylibrary") -> httpx.Response:
        return self.browser.post(path, data={"csrf_token": self.csrf(page), **(data or {})})


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} in the page"
    return match.group(1)


def add_patron(conn: psycopg.Connection, card: str, name: str, email: str | None) -> int:
    row = conn.execute(
        """INSERT INTO patron (card, name, name_reading, reading_key, category, home_branch_id, expires_on, email)
           SELECT %s, %s, 'ショカ ハナコ', 'ショカハナコ', 'general', id, %s, %s FROM branch WHERE code = 'main'
           RETURNING id""", (card, name, TODAY + timedelta(days=365), email)).fetchone()
    return int(row["id"])


@pytest.fixture
def site(seeded: psycopg.Connection, settings: Settings, db_url: str, opac_db_url: str, redis_url: str,
         caplog: pytest.LogCaptureFixture) -> Iterator[Site]:
    from api.app import create_staff_app
    from opac.app import create_opac_app

    caplog.set_level(logging.DEBUG)
    # Another test's uvicorn (its log config or log_level) may have raised these loggers' level, stopped
    # them propagating or disabled them; the records must reach caplog for the privacy checks to mean anything.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "shoka"):
        logger = logging.getLogger(name)
        logger.disabled = False
        logger.propagate = True
        logger.setLevel(logging.DEBUG)
    actor = Actor.cli()
    with seeded.transaction():
        me = add_patron(seeded, CARD, NAME, EMAIL)
        other = add_patron(seeded, OTHER_CARD, "別の 利用者", "other@example.jp")
        lent = add_item(seeded, "1001", title="吾輩は猫である")
        wanted = add_item(seeded, "1002", title="火花")
        kept = add_item(seeded, "1003", title="雪国")
    mylibrary.set_password(seeded, actor, me, PASSWORD)
    mylibrary.set_password(seeded, actor, other, OTHER_PASSWORD)
    # My loan from ten days ago (due in 4 days); the other patron has the title I will reserve; a loan of
    # mine already returned (reading history, kept only with consent).
    circulation.checkout(seeded, actor, CARD, "1001", branch="main", today=TODAY - timedelta(days=10))
    circulation.checkout(seeded, actor, OTHER_CARD, "1002", branch="main")
    circulation.checkout(seeded, actor, CARD, "1003", branch="main")
    circulation.checkin(seeded, actor, "1003", branch="main")
    record = {r: seeded.execute("SELECT record_id FROM item WHERE id = %s", (i,)).fetchone()["record_id"]
              for r, i in (("lent", lent), ("wanted", wanted), ("kept", kept))}
    ids = {"me": me, "other": other, **record}
    staff_app = create_staff_app(replace(settings, service_token=SERVICE_TOKEN), db_url, redis_url)
    with Served(staff_app) as staff:
        opac_app = create_opac_app(replace(settings, service_token=SERVICE_TOKEN, internal_url=staff.url),
                                   opac_db_url, redis_url)
        with Served(opac_app) as opac:
            seen: list[httpx.Response] = []

            def keep(response: httpx.Response) -> None:
                response.read()
                seen.append(response)

            with httpx.Client(base_url=opac.url, follow_redirects=True, timeout=20,
                              event_hooks={"response": [keep]}) as browser:
                yield Site(browser, opac_app, staff.url, seeded, ids, seen)


def urls_in(response: httpx.Response) -> list[str]:
    found = [str(response.url), response.headers.get("location", "")]
    if response.headers.get("content-type", "").startswith("text/html"):
        parser = _Links()
        parser.feed(response.text)
        found += parser.urls
    return found


def assert_nothing_personal(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    """No URL, redirect or link in any response, and no log line of either app, names the patron."""
    assert site.seen
    for response in site.seen:
        for url in urls_in(response):
            for secret in SECRETS:
                assert secret not in unquote(url), (secret, url)
        if response.url.path.startswith("/mylibrary"):
            assert response.headers.get("cache-control") == "no-store", response.url
    access = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) >= len(site.seen)  # the access log really was captured (both apps)
    for rec in caplog.records:
        line = rec.getMessage()
        for secret in SECRETS:
            assert secret not in line, (secret, rec.name, line)


# -- the channel ------------------------------------------------------------------------------------------

INTERNAL_CALLS = [("POST", "/internal/v1/login", {"card": CARD, "password": PASSWORD}),
                  ("POST", "/internal/v1/logout", None), ("GET", "/internal/v1/me", None),
                  ("PATCH", "/internal/v1/me", {"keep_history": True}),
                  ("POST", "/internal/v1/password", {"current_password": "x", "new_password": "y"}),
                  ("GET", "/internal/v1/history", None), ("GET", "/internal/v1/loans", None),
                  ("POST", "/internal/v1/loans/1/renew", None), ("GET", "/internal/v1/holds", None),
                  ("POST", "/internal/v1/holds", {"record_id": 1, "pickup_branch": "main"}),
                  ("DELETE", "/internal/v1/holds/1", None), ("PATCH", "/internal/v1/holds/1", {"resume": True})]


def test_every_internal_route_is_in_the_table(staff_client: TestClient) -> None:
    """So a new My Library route cannot escape the refusal tests below."""
    listed = {(m, re.sub(r"/\d+", "/{}", p)) for m, p, _ in INTERNAL_CALLS}

    def walk(routes: list) -> Iterator[APIRoute]:
        for route in routes:
            nested = getattr(route, "original_router", None)
            if nested is not None:
                yield from walk(nested.routes)
            elif isinstance(route, APIRoute):
                yield route

    mine = {(m, re.sub(r"\{\w+\}", "{}", r.path)) for r in walk(staff_client.app.routes)  # type: ignore[attr-defined]
            if r.path.startswith("/internal/v1") and not r.path.startswith("/internal/v1/requests")
            for m in r.methods}
    assert mine == listed


def _internal_routes(client: TestClient) -> list[tuple[str, str]]:
    found = []
    stack = list(client.app.routes)  # type: ignore[attr-defined]
    while stack:
        route = stack.pop()
        nested = getattr(route, "original_router", None)
        if nested is not None:
            stack += nested.routes
        elif isinstance(route, APIRoute) and route.path.startswith("/internal/"):
            found += [(m, re.sub(r"\{\w+\}", "1", route.path)) for m in route.methods]
    return sorted(found)


def test_internal_api_refuses_without_the_service_token(seeded: psycopg.Connection, settings: Settings, db_url: str,
                                                        redis_url: str, tmp_path: Path) -> None:
    """Every /internal/ route (My Library and purchase requests alike) answers 403 to a missing or wrong
    token, with the JSON error, and changes nothing; a staff bearer token is no substitute."""
    from api.app import create_staff_app

    app = create_staff_app(replace(settings, service_token=SERVICE_TOKEN), db_url, redis_url)
    with TestClient(app) as client:
        routes = _internal_routes(client)
        assert len(routes) >= len(INTERNAL_CALLS)
        before = seeded.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"]
        for headers in ({}, {"X-Shoka-Service-Token": "wrong"}, {"X-Shoka-Service-Token": ""},
                        {"X-Shoka-Service-Token": SERVICE_TOKEN + "x"}, {"Authorization": f"Bearer {SERVICE_TOKEN}"}):
            for method, path in routes:
                resp = client.request(method, path, headers=headers, json={"card": CARD, "password": PASSWORD})
                assert resp.status_code == 403, (method, path, headers, resp.text)
                assert resp.json()["error"]["code"] == "service_forbidden"
                assert resp.headers["cache-control"] == "no-store"
        assert seeded.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"] == before
    # Without a configured token (none set, no secrets.json) nothing opens, not even with an empty header.
    with TestClient(create_staff_app(replace(settings, data_dir=tmp_path), db_url, redis_url)) as client:
        assert client.post("/internal/v1/login", headers={"X-Shoka-Service-Token": ""},
                           json={"card": "x", "password": "y"}).status_code == 403


def test_internal_api_needs_a_live_patron_session(site: Site) -> None:
    api = InternalAPI(site.staff_url, SERVICE_TOKEN)
    raw = httpx.Client(base_url=site.staff_url, headers={"X-Shoka-Service-Token": SERVICE_TOKEN})
    for method, path, body in INTERNAL_CALLS[1:]:
        for session in (None, "not-a-session"):
            headers = {"X-Shoka-Patron-Session": session} if session else {}
            resp = raw.request(method, path, headers=headers, json=body)
            assert (resp.status_code, resp.json()["error"]["code"]) == (401, "unauthenticated"), (method, path)
    token = api.call("POST", "/internal/v1/login", body={"card": CARD, "password": PASSWORD})["session"]
    assert api.call("GET", "/internal/v1/me", session=token)["name"] == NAME
    stored = site.conn.execute("SELECT token_hash FROM patron_session").fetchall()
    assert [bytes(r["token_hash"]) for r in stored] == [mylibrary.token_hash(token)]  # only the hash is kept
    # 30 minutes idle: the session is over, and gone.
    site.conn.execute("UPDATE patron_session SET last_seen_at = now() - interval '31 minutes'")
    for method, path, body in INTERNAL_CALLS[1:]:
        resp = raw.request(method, path, headers={"X-Shoka-Patron-Session": token}, json=body)
        assert resp.status_code == 401, (method, path)
    assert site.conn.execute("SELECT count(*) AS n FROM patron_session").fetchone()["n"] == 0
    # 12 hours at most, however busy.
    token = api.call("POST", "/internal/v1/login", body={"card": CARD, "password": PASSWORD})["session"]
    site.conn.execute("UPDATE patron_session SET expires_at = now() - interval '1 second', last_seen_at = now()")
    resp = raw.get("/internal/v1/me", headers={"X-Shoka-Patron-Session": token})
    assert (resp.status_code, resp.json()["error"]["code"]) == (401, "session_expired")
    raw.close()
    api.close()


def test_session_expiry_boundaries(seeded: psycopg.Connection) -> None:
    """Idle 30 minutes and 12 hours in all: exactly at the limit still counts as alive."""
    with seeded.transaction():
        pid = add_patron(seeded, CARD, NAME, None)
    mylibrary.set_password(seeded, Actor.cli(), pid, PASSWORD)
    done = mylibrary.login(seeded, CARD, PASSWORD, "192.0.2.1")
    start = done.expires_at - timedelta(hours=12)
    seeded.execute("UPDATE patron_session SET created_at = %s, last_seen_at = %s", (start, start))
    cases = [(start + timedelta(minutes=30), True), (start + timedelta(minutes=30, microseconds=1), False)]
    for now, alive in cases:
        seeded.execute("UPDATE patron_session SET last_seen_at = %s", (start,))
        if alive:
            assert mylibrary.resolve_session(seeded, done.token, now).card == CARD
        else:
            with pytest.raises(Exception) as exc:
                mylibrary.resolve_session(seeded, done.token, now)
            assert getattr(exc.value, "code", "") == "session_expired"
    done = mylibrary.login(seeded, CARD, PASSWORD, "192.0.2.1")
    end = done.expires_at
    seeded.execute("UPDATE patron_session SET last_seen_at = %s", (end,))
    assert mylibrary.resolve_session(seeded, done.token, end).patron_id == pid
    with pytest.raises(Exception) as exc:
        mylibrary.resolve_session(seeded, done.token, end + timedelta(microseconds=1))
    assert getattr(exc.value, "code", "") == "session_expired"


def test_opac_role_cannot_read_patron_data(seeded: psycopg.Connection, opac_db_url: str) -> None:
    with seeded.transaction():
        add_patron(seeded, CARD, NAME, EMAIL)
    with psycopg.connect(opac_db_url, autocommit=True) as opac:
        for table in ("patron", "patron_session", "loan", "hold", "notice", "purchase_request", "audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                opac.execute(f"SELECT 1 FROM {table} LIMIT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            opac.execute("SELECT card FROM patron")


def test_service_token_is_generated_once_in_secrets(tmp_path: Path) -> None:
    first = load_secrets(tmp_path)["service_token"]
    assert len(first) >= 32 and load_secrets(tmp_path)["service_token"] == first


# -- sign-in ----------------------------------------------------------------------------------------------

def audit_actions(conn: psycopg.Connection, subject: str) -> list[str]:
    return [r["action"] for r in conn.execute(
        "SELECT action FROM audit_log WHERE subject_id = %s AND action LIKE 'mylibrary.%%' ORDER BY id",
        (subject,)).fetchall()]


def test_login_lockout_and_logout(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    wrong = site.login(password="wrong-password")
    unknown = site.login(card="K00000000")
    assert wrong.status_code == unknown.status_code == 401
    message = "利用者番号またはパスワードが違います。"
    assert message in wrong.text and message in unknown.text  # one answer for both
    assert SESSION_COOKIE not in site.browser.cookies
    for _ in range(3):
        assert site.login(password="wrong-password").status_code == 401
    locked = site.login(password="wrong-password")  # the fifth in a row
    assert locked.status_code == 423 and "ログインできません" in locked.text
    assert site.login().status_code == 423  # even the right password, while locked
    row = site.conn.execute("SELECT failed_logins, locked_until FROM patron WHERE card = %s", (CARD,)).fetchone()
    assert row["locked_until"] > datetime.now(UTC) + timedelta(minutes=14)
    assert audit_actions(site.conn, CARD) == ["mylibrary.login_failed"] * 5 + ["mylibrary.locked"] + \
        ["mylibrary.login_failed"]
    assert audit_actions(site.conn, "K00000000") == ["mylibrary.login_failed"]
    site.conn.execute("UPDATE patron SET locked_until = now() - interval '1 second' WHERE card = %s", (CARD,))
    home = site.login()
    assert home.status_code == 200 and str(home.url).endswith("/mylibrary")
    assert f"{NAME} さん" in home.text
    cookie = next(c for c in site.browser.cookies.jar if c.name == SESSION_COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.path == "/" and not cookie.secure
    set_cookie = [r for r in site.seen if SESSION_COOKIE in r.headers.get("set-cookie", "")][-1]
    assert "samesite=lax" in set_cookie.headers["set-cookie"].lower()
    assert site.conn.execute("SELECT failed_logins, locked_until FROM patron WHERE card = %s",
                             (CARD,)).fetchone() == {"failed_logins": 0, "locked_until": None}
    # Sign-out needs the form token, then ends the session on the internal side too.
    assert site.browser.post("/mylibrary/logout", data={"csrf_token": "forged"}).status_code == 403
    out = site.post("/mylibrary/logout")
    assert str(out.url).endswith("/mylibrary/login?msg=logged_out") and "ログアウトしました。" in out.text
    assert site.conn.execute("SELECT count(*) AS n FROM patron_session").fetchone()["n"] == 0
    assert audit_actions(site.conn, CARD)[-2:] == ["mylibrary.login", "mylibrary.logout"]
    assert str(site.browser.get("/mylibrary").url).endswith("/mylibrary/login")
    assert_nothing_personal(site, caplog)


def test_login_form_needs_its_token_and_rate_limit_per_address(site: Site) -> None:
    resp = site.browser.post("/mylibrary/login", data={"card": CARD, "password": PASSWORD, "csrf_token": "x"})
    assert resp.status_code == 403 and SESSION_COOKIE not in site.browser.cookies
    clock = [1000.0]
    site.opac.state.mylibrary_login_limiter = LoginLimiter(limit=3, window=60, clock=lambda: clock[0])
    assert [site.login(password="wrong-password").status_code for _ in range(3)] == [401, 401, 401]
    refused = site.login()
    assert refused.status_code == 429 and "ログインの試行が多すぎます" in refused.text
    clock[0] += 60.0  # the window has passed
    assert site.login().status_code == 200
    assert site.conn.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'mylibrary.login_failed'"
                             ).fetchone()["n"] == 3  # the refused attempt never reached the internal API


def test_login_limiter_window() -> None:
    clock = [0.0]
    limiter = LoginLimiter(limit=2, window=10, clock=lambda: clock[0])
    steps = [(0.0, "a", True), (1.0, "a", True), (2.0, "a", False), (2.0, "b", True), (9.99, "a", False),
             (10.0, "a", True), (10.5, "a", False), (11.0, "a", True), (11.0, "a", False)]
    for at, address, allowed in steps:
        clock[0] = at
        assert limiter.allow(address) is allowed, (at, address)


def test_pages_need_a_session_and_return_afterwards(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    for path in ("/mylibrary", "/mylibrary/history", "/mylibrary/settings"):
        resp = site.browser.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["cache-control"] == "no-store"
        assert resp.headers["location"] in ("/mylibrary/login", f"/mylibrary/login?next={path}")
    assert site.browser.post("/mylibrary/settings/email", data={"email": EMAIL}, follow_redirects=False
                             ).headers["location"] == "/mylibrary/login"
    page = site.login(next_path="/mylibrary/history")
    assert str(page.url).endswith("/mylibrary/history")
    assert site.login(next_path="//evil.example/x").url.path == "/mylibrary"
    # An idle session sends the patron to sign in again, saying why, and clears the cookie.
    site.conn.execute("UPDATE patron_session SET last_seen_at = now() - interval '31 minutes'")
    resp = site.browser.get("/mylibrary/settings")
    assert str(resp.url).endswith("/mylibrary/login?expired=1&next=/mylibrary/settings")
    assert "一定時間操作がなかったため" in resp.text and SESSION_COOKIE not in site.browser.cookies
    assert_nothing_personal(site, caplog)


# -- loans and holds --------------------------------------------------------------------------------------

def test_loans_and_renewal(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    home = site.login()
    assert "吾輩は猫である" in home.text and (TODAY + timedelta(days=4)).isoformat() in home.text
    assert "雪国" not in home.text  # returned
    loan = site.conn.execute("SELECT id FROM loan WHERE returned_at IS NULL AND patron_id = %s",
                             (site.ids["me"],)).fetchone()["id"]
    other = site.conn.execute("SELECT id FROM loan WHERE returned_at IS NULL AND patron_id = %s",
                              (site.ids["other"],)).fetchone()["id"]
    renewed = site.post(f"/mylibrary/loans/{loan}/renew")
    assert str(renewed.url).endswith("/mylibrary?msg=renewed") and "貸出期間を延長しました。" in renewed.text
    # Renewed today under the default rule (14 days, no closed days): due today + 14.
    row = site.conn.execute("SELECT due_date, renewals FROM loan WHERE id = %s", (loan,)).fetchone()
    assert row == {"due_date": TODAY + timedelta(days=14), "renewals": 1}
    assert (TODAY + timedelta(days=14)).isoformat() in renewed.text
    again = site.post(f"/mylibrary/loans/{loan}/renew")
    assert again.status_code == 409 and 'role="alert"' in again.text
    assert site.conn.execute("SELECT renewals FROM loan WHERE id = %s", (loan,)).fetchone()["renewals"] == 1
    # Someone else's loan is not there for me.
    theirs = site.post(f"/mylibrary/loans/{other}/renew")
    assert theirs.status_code == 404
    assert site.conn.execute("SELECT renewals FROM loan WHERE id = %s", (other,)).fetchone()["renewals"] == 0
    # A forged form changes nothing.
    forged = site.browser.post(f"/mylibrary/loans/{loan}/renew", data={"csrf_token": "x" * 32})
    assert forged.status_code == 403
    assert_nothing_personal(site, caplog)


def test_place_a_hold_from_the_record_page(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    wanted = site.ids["wanted"]
    record = site.browser.get(f"/records/{wanted}")
    assert 'action="/mylibrary/holds/new"' in record.text and f'value="{wanted}"' in record.text
    # Not signed in: to the login page, then to the confirmation, then placed.
    resp = site.browser.post("/mylibrary/holds/new", data={"record_id": str(wanted)})
    assert resp.url.path == "/mylibrary/login"
    confirm = site.browser.post("/mylibrary/login", data={
        "card": CARD, "password": PASSWORD, "next": hidden(resp.text, "next"),
        "csrf_token": hidden(resp.text, "csrf_token")})
    assert confirm.url.path == "/mylibrary/holds/new" and "火花" in confirm.text and "予約の確認" in confirm.text
    assert 'value="main" selected' in confirm.text  # the patron's home branch
    placed = site.browser.post("/mylibrary/holds/new", data={
        "record_id": str(wanted), "pickup_branch": "east", "csrf_token": hidden(confirm.text, "csrf_token")})
    assert str(placed.url).endswith("/mylibrary?msg=hold_placed") and "予約中（1 番目）" in placed.text
    hold = site.conn.execute("SELECT h.id, status, placed_by, b.code FROM hold h JOIN branch b ON b.id = "
                             "h.pickup_branch_id WHERE patron_id = %s", (site.ids["me"],)).fetchone()
    assert (hold["status"], hold["placed_by"], hold["code"]) == ("placed", "opac", "east")
    # Signed in, the record page's form goes to the confirmation (it carries no token), never straight through.
    again = site.browser.post("/mylibrary/holds/new", data={"record_id": str(wanted)})
    assert again.url.path == "/mylibrary/holds/new"
    refused = site.browser.post("/mylibrary/holds/new", data={
        "record_id": str(wanted), "pickup_branch": "main", "csrf_token": hidden(again.text, "csrf_token")})
    assert refused.status_code == 409 and "この資料はすでに予約しています。" in refused.text
    # A title I have on loan cannot be reserved: the reason is shown.
    mine = site.browser.get(f"/mylibrary/holds/new?record_id={site.ids['lent']}")
    refused = site.browser.post("/mylibrary/holds/new", data={
        "record_id": str(site.ids["lent"]), "pickup_branch": "main", "csrf_token": hidden(mine.text, "csrf_token")})
    assert refused.status_code == 409 and "この資料はすでに借りています。" in refused.text
    assert site.conn.execute("SELECT count(*) AS n FROM hold").fetchone()["n"] == 1
    assert_nothing_personal(site, caplog)


def test_suspend_resume_change_pickup_cancel_and_trap(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    actor = Actor.cli()
    from api.holds import service as holds

    mine = holds.place_hold(site.conn, actor, site.ids["me"], site.ids["wanted"], "main").id
    theirs_record = site.ids["lent"]
    theirs = holds.place_hold(site.conn, actor, site.ids["other"], theirs_record, "main").id
    site.login()
    until = TODAY + timedelta(days=20)
    resp = site.post(f"/mylibrary/holds/{mine}/suspend", {"suspended_until": until.isoformat()})
    assert str(resp.url).endswith("msg=hold_suspended") and f"保留中（{until.isoformat()} まで）" in resp.text
    assert site.conn.execute("SELECT suspended_until FROM hold WHERE id = %s", (mine,)).fetchone()[
        "suspended_until"] == until
    bad = site.post(f"/mylibrary/holds/{mine}/suspend", {"suspended_until": "来週"})
    assert bad.status_code == 422 and "2026-04-01" in bad.text
    past = site.post(f"/mylibrary/holds/{mine}/suspend", {"suspended_until": (TODAY - timedelta(days=1)).isoformat()})
    assert past.status_code == 422 and "今日以降" in past.text
    resp = site.post(f"/mylibrary/holds/{mine}/resume")
    assert site.conn.execute("SELECT suspended_until FROM hold WHERE id = %s", (mine,)).fetchone()[
        "suspended_until"] is None and "予約の保留を解除しました。" in resp.text
    resp = site.post(f"/mylibrary/holds/{mine}/pickup", {"pickup_branch": "east"})
    assert "受取館を変更しました。" in resp.text
    assert site.conn.execute("SELECT b.code FROM hold h JOIN branch b ON b.id = h.pickup_branch_id "
                             "WHERE h.id = %s", (mine,)).fetchone()["code"] == "east"
    nowhere = site.post(f"/mylibrary/holds/{mine}/pickup", {"pickup_branch": "nowhere"})
    assert nowhere.status_code == 422
    # The other patron's hold: not found for me, whatever I try, and untouched.
    for path, data in ((f"/mylibrary/holds/{theirs}/cancel", {}), (f"/mylibrary/holds/{theirs}/resume", {}),
                       (f"/mylibrary/holds/{theirs}/pickup", {"pickup_branch": "east"}),
                       (f"/mylibrary/holds/{theirs}/suspend", {"suspended_until": until.isoformat()})):
        assert site.post(path, data).status_code == 404, path
    row = site.conn.execute("SELECT status, suspended_until, pickup_branch_id FROM hold WHERE id = %s",
                            (theirs,)).fetchone()
    assert row["status"] == "placed" and row["suspended_until"] is None
    # Staff check the copy in at east: the hold is trapped, and My Library shows it ready with its deadline.
    circulation.checkin(site.conn, actor, "1002", branch="east")
    page = site.browser.get("/mylibrary")
    deadline = site.conn.execute("SELECT pickup_deadline FROM hold WHERE id = %s", (mine,)).fetchone()[
        "pickup_deadline"]
    assert "受け取れます" in page.text and f"受取期限: {deadline.isoformat()}" in page.text
    assert f"/mylibrary/holds/{mine}/suspend" not in page.text  # only a waiting hold can be suspended
    resp = site.post(f"/mylibrary/holds/{mine}/cancel")
    assert "予約を取り消しました。" in resp.text
    assert site.conn.execute("SELECT status, end_reason FROM hold WHERE id = %s", (mine,)).fetchone() == {
        "status": "cancelled", "end_reason": "patron"}
    assert "予約している資料はありません。" in resp.text
    actors = {r["actor"] for r in site.conn.execute(
        "SELECT actor FROM audit_log WHERE subject_type = 'hold' AND subject_id = %s", (str(mine),)).fetchall()}
    assert f"patron:{CARD}" in actors  # the audit log (internal) knows who
    assert_nothing_personal(site, caplog)


# -- history and settings ---------------------------------------------------------------------------------

def test_reading_history_is_opt_in(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.login()
    page = site.browser.get("/mylibrary/history")
    assert "読書記録は残さない設定です" in page.text and "雪国" not in page.text
    resp = site.post("/mylibrary/settings/history", {"keep_history": "yes"}, page="/mylibrary/settings")
    assert "読書記録の設定を保存しました。" in resp.text
    assert site.conn.execute("SELECT keep_history FROM patron WHERE id = %s", (site.ids["me"],)).fetchone()[
        "keep_history"] is True
    page = site.browser.get("/mylibrary/history")
    assert "雪国" in page.text and "吾輩は猫である" not in page.text  # returned loans only
    assert f'href="/records/{site.ids["kept"]}"' in page.text
    audit = site.conn.execute("SELECT actor, details FROM audit_log WHERE action = 'patron.update' "
                              "ORDER BY id DESC LIMIT 1").fetchone()
    assert audit["actor"] == f"patron:{CARD}" and audit["details"]["keep_history"] is True
    bad = site.post("/mylibrary/settings/history", {"keep_history": "maybe"}, page="/mylibrary/settings")
    assert bad.status_code == 422
    site.post("/mylibrary/settings/history", {"keep_history": "no"}, page="/mylibrary/settings")
    assert "読書記録は残さない設定です" in site.browser.get("/mylibrary/history").text
    assert_nothing_personal(site, caplog)


def test_email_change(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    site.login()
    settings = site.browser.get("/mylibrary/settings")
    assert f'value="{EMAIL}"' in settings.text
    new = "new.address@example.jp"
    resp = site.post("/mylibrary/settings/email", {"email": new}, page="/mylibrary/settings")
    assert str(resp.url).endswith("/mylibrary/settings?msg=email_saved") and f'value="{new}"' in resp.text
    assert site.conn.execute("SELECT email FROM patron WHERE id = %s", (site.ids["me"],)).fetchone()["email"] == new
    bad = site.post("/mylibrary/settings/email", {"email": "not-an-address"}, page="/mylibrary/settings")
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text and 'value="not-an-address"' in bad.text
    assert site.conn.execute("SELECT email FROM patron WHERE id = %s", (site.ids["me"],)).fetchone()["email"] == new
    site.post("/mylibrary/settings/email", {"email": ""}, page="/mylibrary/settings")
    assert site.conn.execute("SELECT email FROM patron WHERE id = %s", (site.ids["me"],)).fetchone()["email"] is None
    assert_nothing_personal(site, caplog)


def test_password_change(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    second = httpx.Client(base_url=str(site.browser.base_url), follow_redirects=True)
    form = second.get("/mylibrary/login")
    second.post("/mylibrary/login", data={"card": CARD, "password": PASSWORD, "csrf_token": hidden(form.text,
                                                                                                 "csrf_token")})
    assert second.get("/mylibrary").url.path == "/mylibrary"
    site.login()
    page = "/mylibrary/settings"
    cases = [({"current_password": "wrong-password", "new_password": "brand-new-1",
               "new_password_again": "brand-new-1"}, "現在のパスワードが違います。"),
             ({"current_password": PASSWORD, "new_password": "brand-new-1", "new_password_again": "brand-new-2"},
              "確認用と一致しません"),
             ({"current_password": PASSWORD, "new_password": "short", "new_password_again": "short"},
              "パスワードは8文字以上にしてください。")]
    for data, message in cases:
        resp = site.post("/mylibrary/settings/password", data, page=page)
        assert resp.status_code == 422 and message in resp.text, message
    done = site.post("/mylibrary/settings/password", {"current_password": PASSWORD, "new_password": "brand-new-1",
                                                      "new_password_again": "brand-new-1"}, page=page)
    assert "パスワードを変更しました。" in done.text
    assert site.browser.get("/mylibrary").url.path == "/mylibrary"  # this session stays
    assert second.get("/mylibrary").url.path == "/mylibrary/login"  # the other one ended
    second.close()
    site.post("/mylibrary/logout")
    assert site.login().status_code == 401
    assert site.login(password="brand-new-1").url.path == "/mylibrary"
    assert "mylibrary.password_change" in audit_actions(site.conn, CARD)
    assert_nothing_personal(site, caplog)


def test_staff_set_the_password_at_the_counter(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    with seeded.transaction():
        pid = add_patron(seeded, CARD, NAME, EMAIL)
        seeded.execute("UPDATE patron SET failed_logins = 4, locked_until = now() + interval '10 minutes' "
                       "WHERE id = %s", (pid,))
    csrf = console_login(staff_client, "counter")
    page = staff_client.get(f"/patrons/{pid}")
    assert "未設定" in page.text and f'action="/patrons/{pid}/password"' in page.text
    short = staff_client.post(f"/patrons/{pid}/password", data={"csrf_token": csrf, "password": "short",
                                                                "password_again": "short"})
    assert short.status_code == 422 and "パスワードは8文字以上にしてください。" in short.text
    mismatch = staff_client.post(f"/patrons/{pid}/password", data={"csrf_token": csrf, "password": "counter-set-1",
                                                                   "password_again": "counter-set-2"})
    assert mismatch.status_code == 422
    ok = staff_client.post(f"/patrons/{pid}/password", data={"csrf_token": csrf, "password": "counter-set-1",
                                                             "password_again": "counter-set-1"},
                           follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == f"/patrons/{pid}?msg=saved"
    row = seeded.execute("SELECT password_hash, failed_logins, locked_until FROM patron WHERE id = %s",
                         (pid,)).fetchone()
    assert row["password_hash"].startswith("$argon2id$") and row["failed_logins"] == 0 and row["locked_until"] is None
    audit = seeded.execute("SELECT actor, subject_id, details FROM audit_log WHERE action = 'patron.password_set'"
                           ).fetchone()
    assert (audit["actor"], audit["subject_id"]) == ("counter", CARD) and "counter-set-1" not in str(audit["details"])
    assert mylibrary.login(seeded, CARD, "counter-set-1", "192.0.2.1").patron_id == pid
    assert "設定済み" in staff_client.get(f"/patrons/{pid}").text
    # The view-only role cannot.
    staff_client.post("/logout", data={"csrf_token": csrf})
    viewer = console_login(staff_client, "viewer")
    assert staff_client.post(f"/patrons/{pid}/password", data={"csrf_token": viewer, "password": "viewer-set-1",
                                                               "password_again": "viewer-set-1"}).status_code == 403


def test_unavailable_internal_api_is_a_clear_page(seeded: psycopg.Connection, settings: Settings,
                                                  opac_db_url: str, redis_url: str, tmp_path: Path) -> None:
    """The internal API down, or the OPAC holding another token: a 503 page in Japanese, nothing else."""
    from opac.app import create_opac_app

    for token, url in ((SERVICE_TOKEN, "http://127.0.0.1:9"), ("", "http://127.0.0.1:9")):
        app = create_opac_app(replace(settings, service_token=token or None, internal_url=url, data_dir=tmp_path),
                              opac_db_url, redis_url)
        with TestClient(app) as client:
            form = client.get("/mylibrary/login")
            resp = client.post("/mylibrary/login", data={"card": CARD, "password": PASSWORD,
                                                          "csrf_token": hidden(form.text, "csrf_token")})
            assert resp.status_code == 503 and "ただいまマイライブラリを利用できません" in resp.text
            assert resp.headers["cache-control"] == "no-store"


def test_login_limit_is_shared_through_valkey(redis_url: str) -> None:
    """With several OPAC worker processes the per-address limit lives in Valkey: two limiters (two
    processes) share one count; an unreachable Valkey falls back to the process's own limit."""
    import redis

    from opac.mylibrary import SharedLoginLimiter

    clock = [1_000_000.0]
    client = redis.Redis.from_url(redis_url)
    first, second = (SharedLoginLimiter(client, limit=3, window=60, clock=lambda: clock[0]) for _ in range(2))
    address = f"192.0.2.{uuid.uuid4().int % 250}"
    assert [first.allow(address), second.allow(address), first.allow(address)] == [True, True, True]
    assert second.allow(address) is False and first.allow(address) is False
    assert first.allow("198.51.100.7") is True  # another address has its own count
    assert not [k for k in client.keys("shoka:opac:login:*") if address.encode() in k]  # hashed, not stored
    clock[0] += 60
    assert first.allow(address) is True  # the next window
    down = SharedLoginLimiter(redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2), limit=1, window=60)
    assert down.allow(address) is True and down.allow(address) is False
