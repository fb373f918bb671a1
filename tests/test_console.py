"""The staff console: login with CSRF, sessions, navigation, audit screen, account administration."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from tests.conftest import PASSWORDS, console_login


def test_login_page_is_japanese_first_with_english_available(staff_client: TestClient) -> None:
    ja = staff_client.get("/login")
    assert ja.status_code == 200 and '<html lang="ja">' in ja.text and "職員ログイン" in ja.text
    en = staff_client.get("/login?lang=en")
    assert '<html lang="en">' in en.text and "職員ログイン" not in en.text
    assert staff_client.cookies.get("lang") == "en"
    assert '<html lang="en">' in staff_client.get("/login").text  # remembered


def test_pages_require_login(staff_client: TestClient) -> None:
    for path in ("/", "/audit", "/admin/staff", "/circulation"):
        r = staff_client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert staff_client.get("/audit", follow_redirects=False).headers["location"] == "/login?next=/audit"


def test_login_shows_navigation_and_is_audited(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    console_login(staff_client, "admin")
    home = staff_client.get("/")
    for label in ("貸出・返却", "利用者", "資料", "予約", "統計", "管理"):
        assert label in home.text
    cookie = staff_client.cookies.get("shoka_session")
    assert cookie
    row = seeded.execute("SELECT actor, action, client_addr FROM audit_log WHERE action = 'auth.login'").fetchone()
    assert row["actor"] == "admin" and row["client_addr"]
    audit = staff_client.get("/audit?action=auth.login")
    assert audit.status_code == 200 and "auth.login" in audit.text and "admin" in audit.text


def test_session_cookie_is_httponly_and_strict(staff_client: TestClient) -> None:
    page = staff_client.get("/login")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = staff_client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"], "csrf_token": csrf},
                          follow_redirects=False)
    set_cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("shoka_session="))
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie


def test_login_without_the_form_token_is_refused(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    staff_client.get("/login")
    r = staff_client.post("/login", data={"username": "admin", "password": PASSWORDS["admin"],
                                          "csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and "shoka_session" not in r.headers.get("set-cookie", "")


def test_wrong_password_shows_a_message_in_japanese(staff_client: TestClient) -> None:
    page = staff_client.get("/login")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = staff_client.post("/login", data={"username": "admin", "password": "wrong-password", "csrf_token": csrf})
    assert r.status_code == 401 and "ユーザーIDまたはパスワードが違います" in r.text
    assert 'value="admin"' in r.text  # the user ID is kept, the password is not


def test_post_without_session_csrf_is_refused(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    console_login(staff_client, "admin")
    r = staff_client.post("/admin/groups", data={"code": "g1", "name": "班", "csrf_token": "wrong"})
    assert r.status_code == 403
    assert seeded.execute("SELECT count(*) AS n FROM staff_group").fetchone()["n"] == 0


def test_expired_session_redirects_to_login_with_a_message(staff_client: TestClient,
                                                           seeded: psycopg.Connection) -> None:
    console_login(staff_client, "counter")
    seeded.execute("UPDATE staff_session SET last_seen_at = now() - interval '31 minutes'")
    r = staff_client.get("/circulation", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?expired=1")
    page = staff_client.get(r.headers["location"])
    assert "セッションの有効期限が切れました" in page.text


def test_logout_ends_the_session(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "counter")
    r = staff_client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert staff_client.get("/", follow_redirects=False).status_code == 303
    assert seeded.execute("SELECT count(*) AS n FROM staff_session").fetchone()["n"] == 0
    assert seeded.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'auth.logout'").fetchone()["n"] == 1


def test_missing_permission_shows_a_forbidden_page(staff_client: TestClient) -> None:
    console_login(staff_client, "counter")
    r = staff_client.get("/admin/staff")
    assert r.status_code == 403 and "権限がありません" in r.text
    assert staff_client.get("/statistics").status_code == 403
    assert staff_client.get("/circulation").status_code == 200


def test_admin_creates_and_edits_an_account_through_forms(staff_client: TestClient,
                                                          seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    r = staff_client.post("/admin/staff", data={"csrf_token": csrf, "username": "tanaka", "display_name": "田中",
                                                "password": "tanaka-password", "branch": "east",
                                                "roles": ["counter", "cataloguer"]})
    assert r.status_code == 200 and "tanaka" in r.text
    detail = staff_client.get("/admin/staff/tanaka")
    assert "田中" in detail.text
    r = staff_client.post("/admin/staff/tanaka", data={"csrf_token": csrf, "display_name": "田中 一郎",
                                                       "branch": "main", "roles": ["counter"], "active": "on"})
    assert r.status_code == 200
    row = seeded.execute("SELECT a.display_name, b.code FROM staff_account a JOIN branch b ON b.id = a.branch_id "
                         "WHERE username = 'tanaka'").fetchone()
    assert row == {"display_name": "田中 一郎", "code": "main"}
    actions = [r["action"] for r in seeded.execute(
        "SELECT action FROM audit_log WHERE subject_id = 'tanaka' ORDER BY id").fetchall()]
    # created, viewed (each detail page view is audited), then updated
    assert actions[0] == "staff.create" and "staff.view" in actions and "staff.update" in actions


def test_form_errors_name_the_field_in_japanese(staff_client: TestClient) -> None:
    csrf = console_login(staff_client, "admin")
    r = staff_client.post("/admin/staff", data={"csrf_token": csrf, "username": "bad name", "password": "x" * 12})
    assert r.status_code == 422 and "username" in r.text and "bad name" in r.text


def test_roles_screen_updates_grants(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    r = staff_client.post("/admin/roles/role/counter", data={"csrf_token": csrf,
                                                             "perm": ["circulation:view", "patrons:view"]})
    assert r.status_code == 200
    perms = {f"{p['area']}:{p['action']}" for p in seeded.execute(
        "SELECT area, action FROM role_permission p JOIN staff_role r ON r.id = p.role_id "
        "WHERE r.code = 'counter'").fetchall()}
    assert perms == {"circulation:view", "patrons:view"}


def test_year_end_assignments_csv_applies_good_rows_and_reports_bad_ones(staff_client: TestClient,
                                                                         seeded: psycopg.Connection) -> None:
    csrf = console_login(staff_client, "admin")
    csv_text = ("username,branch,roles,groups,active\n"
                "counter,east,counter;cataloguer,,\n"
                "ghost,main,counter,,\n"
                "viewer,nowhere,,,\n").encode("cp932")
    dry = staff_client.post("/admin/assignments", data={"csrf_token": csrf, "dry_run": "on"},
                            files={"file": ("異動.csv", csv_text, "text/csv")})
    assert dry.status_code == 200 and "確認のみ" in dry.text
    branch = "SELECT b.code FROM staff_account a JOIN branch b ON b.id = a.branch_id WHERE username = 'counter'"
    assert seeded.execute(branch).fetchone()["code"] == "main"
    done = staff_client.post("/admin/assignments", data={"csrf_token": csrf},
                             files={"file": ("異動.csv", csv_text, "text/csv")})
    assert done.status_code == 200
    assert "反映 1 件、不備 2 件" in done.text and "ghost" in done.text and "nowhere" in done.text
    assert seeded.execute(branch).fetchone()["code"] == "east"


def test_section_pages_exist_for_later_capabilities(staff_client: TestClient) -> None:
    console_login(staff_client, "admin")
    for path in ("/circulation", "/patrons", "/catalogue", "/holds", "/statistics", "/admin", "/admin/branches"):
        assert staff_client.get(path).status_code == 200, path


def test_security_headers(staff_client: TestClient) -> None:
    r = staff_client.get("/login")
    assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
