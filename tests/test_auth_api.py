"""Bearer tokens, wrong passwords, lockout, expiry and the API's error bodies."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from api.auth.service import MAX_FAILED_LOGINS
from tests.conftest import PASSWORDS, token_for


def _audit_actions(conn: psycopg.Connection, subject: str) -> list[str]:
    return [r["action"] for r in conn.execute(
        "SELECT action FROM audit_log WHERE subject_type = 'staff' AND subject_id = %s ORDER BY id",
        (subject,)).fetchall()]


def test_token_for_valid_credentials_and_me(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    headers = token_for(staff_client, "counter")
    me = staff_client.get("/api/v1/me", headers=headers).json()
    assert me["username"] == "counter" and me["roles"] == ["counter"] and me["branch"] == "main"
    assert "circulation:update" in me["permissions"] and "system:administer" not in me["permissions"]
    assert _audit_actions(seeded, "counter")[-1] == "auth.token_issued"


def test_wrong_password_and_unknown_user_get_the_same_answer(staff_client: TestClient,
                                                             seeded: psycopg.Connection) -> None:
    wrong = staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": "nope-nope-nope"})
    unknown = staff_client.post("/api/v1/auth/token", json={"username": "ghost", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    rows = seeded.execute("SELECT subject_id, details FROM audit_log WHERE action = 'auth.login_failed' "
                          "ORDER BY id").fetchall()
    assert [(r["subject_id"], r["details"]["reason"]) for r in rows] == [
        ("counter", "wrong_password"), ("ghost", "unknown_user")]


def test_lockout_after_repeated_failures_then_admin_unlocks(staff_client: TestClient,
                                                            seeded: psycopg.Connection) -> None:
    for _ in range(MAX_FAILED_LOGINS - 1):
        r = staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": "bad-password"})
        assert r.json()["error"]["code"] == "invalid_credentials"
    r = staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": "bad-password"})
    assert r.status_code == 423 and r.json()["error"]["code"] == "account_locked"
    # Even the right password is refused while locked.
    r = staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": PASSWORDS["counter"]})
    assert r.status_code == 423
    assert "auth.locked" in _audit_actions(seeded, "counter")
    admin = token_for(staff_client, "admin")
    listed = {a["username"]: a for a in staff_client.get("/api/v1/staff", headers=admin).json()}
    assert listed["counter"]["locked_until"] is not None
    assert staff_client.post("/api/v1/staff/counter/unlock", headers=admin).status_code == 200
    token_for(staff_client, "counter")
    assert "staff.unlock" in _audit_actions(seeded, "counter")


def test_a_success_resets_the_failure_count(staff_client: TestClient) -> None:
    for _ in range(MAX_FAILED_LOGINS - 1):
        staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": "bad-password"})
    token_for(staff_client, "counter")
    r = staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": "bad-password"})
    assert r.json()["error"]["code"] == "invalid_credentials"


def test_inactive_account_cannot_sign_in_and_loses_its_tokens(staff_client: TestClient) -> None:
    counter = token_for(staff_client, "counter")
    admin = token_for(staff_client, "admin")
    assert staff_client.patch("/api/v1/staff/counter", json={"active": False}, headers=admin).status_code == 200
    assert staff_client.get("/api/v1/me", headers=counter).json()["error"]["code"] == "unauthenticated"
    r = staff_client.post("/api/v1/auth/token", json={"username": "counter", "password": PASSWORDS["counter"]})
    assert r.status_code == 401


def test_missing_bad_and_expired_tokens(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    assert staff_client.get("/api/v1/me").json()["error"]["code"] == "unauthenticated"
    bad = staff_client.get("/api/v1/me", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"
    headers = token_for(staff_client, "counter")
    seeded.execute("UPDATE staff_session SET expires_at = now() - interval '1 second'")
    expired = staff_client.get("/api/v1/me", headers=headers)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"
    # The expired session is gone, not only refused.
    assert seeded.execute("SELECT count(*) AS n FROM staff_session").fetchone()["n"] == 0


def test_logout_revokes_the_token(staff_client: TestClient, seeded: psycopg.Connection) -> None:
    headers = token_for(staff_client, "counter")
    assert staff_client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert staff_client.get("/api/v1/me", headers=headers).status_code == 401
    assert _audit_actions(seeded, "counter")[-1] == "auth.token_revoked"


def test_malformed_json_and_missing_fields(staff_client: TestClient) -> None:
    r = staff_client.post("/api/v1/auth/token", content=b'{"username": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = staff_client.post("/api/v1/auth/token", json={"username": "admin"})
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "validation_error", "field": "password",
                                 "message": r.json()["error"]["message"]}
    assert "password" in r.json()["error"]["message"]


def test_errors_are_japanese_by_default_and_english_on_request(staff_client: TestClient) -> None:
    body = {"username": "ghost", "password": "whatever-1"}
    ja = staff_client.post("/api/v1/auth/token", json=body).json()["error"]["message"]
    en = staff_client.post("/api/v1/auth/token?lang=en", json=body).json()["error"]["message"]
    assert "パスワード" in ja and "password" in en


def test_validation_names_field_and_value(staff_client: TestClient) -> None:
    admin = token_for(staff_client, "admin")
    r = staff_client.post("/api/v1/staff", headers=admin,
                          json={"username": "bad name!", "password": "long-enough-pw"})
    err = r.json()["error"]
    assert r.status_code == 422 and err["field"] == "username" and "bad name!" in err["message"]
    r = staff_client.post("/api/v1/staff", headers=admin,
                          json={"username": "newbie", "password": "long-enough-pw", "roles": ["wizard"]})
    assert r.json()["error"]["field"] == "roles" and "wizard" in r.json()["error"]["message"]
    r = staff_client.post("/api/v1/staff", headers=admin, json={"username": "newbie", "password": "short"})
    assert r.json()["error"]["code"] == "weak_password"
    r = staff_client.post("/api/v1/staff", headers=admin, json={"username": "ADMIN", "password": "long-enough-pw"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "username_taken"


def test_unknown_route_gives_json_error(staff_client: TestClient) -> None:
    r = staff_client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_passwords_are_stored_as_argon2id(seeded: psycopg.Connection) -> None:
    hashes = [r["password_hash"] for r in seeded.execute("SELECT password_hash FROM staff_account").fetchall()]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    assert not any(p in h for h in hashes for p in PASSWORDS.values())
