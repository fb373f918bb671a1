"""A role without update cannot change anything, through the API or the console; only
administrators manage accounts and grants."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.conftest import console_login, token_for

UNPROTECTED = {"/api/v1/auth/token", "/api/v1/auth/logout", "/login", "/logout",
               "/circulation/workstation"}  # only sets this browser's counter cookie
# /internal/ routes answer only the OPAC's service token (X-Shoka-Service-Token), never a staff session or
# staff permissions: tests/test_mylibrary.py proves each refuses a missing or wrong token with 403.
SERVICE_TOKEN_ONLY = ("/internal/",)
# The counter role may update circulation and patrons (migration 0001); everything else is closed to it.
COUNTER_GRANTED = ("/api/v1/circulation/", "/api/v1/patrons", "/api/v1/holds", "/circulation/", "/patrons",
                   "/holds/", "/lockers/", "/requests/")
SAMPLE = {"username": "x", "code": "x", "name": "x"}


def _walk(routes: list) -> Iterator[APIRoute]:
    """Every APIRoute, also those inside included routers (newer FastAPI keeps them nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _walk(nested.routes)
        elif isinstance(route, APIRoute):
            yield route


def _mutating_routes(client: TestClient, prefix_api: bool, user: str = "viewer") -> list[tuple[str, str]]:
    routes = []
    for route in _walk(client.app.routes):  # type: ignore[attr-defined]
        if route.path in UNPROTECTED or route.path.startswith(SERVICE_TOKEN_ONLY):
            continue
        if user == "counter" and route.path.startswith(COUNTER_GRANTED):
            continue
        if route.path.startswith("/api/") != prefix_api:
            continue
        for method in route.methods - {"GET", "HEAD", "OPTIONS"}:
            path = route.path
            for name in route.param_convertors:
                path = path.replace("{" + name + "}", "admin" if name == "username" else "main")
            path = path.replace("{kind}", "role")
            routes.append((method, path))
    return sorted(routes)


def _state(conn: psycopg.Connection) -> tuple:
    return (
        conn.execute("SELECT count(*) FROM staff_account").fetchone(),
        conn.execute("SELECT array_agg(username || active::text || coalesce(branch_id, 0)::text ORDER BY id) "
                     "FROM staff_account").fetchone(),
        conn.execute("SELECT count(*) FROM role_permission").fetchone(),
        conn.execute("SELECT count(*) FROM staff_account_role").fetchone(),
        conn.execute("SELECT array_agg(code || name ORDER BY id) FROM branch").fetchone(),
        conn.execute("SELECT count(*) FROM staff_group").fetchone(),
    )


def test_there_are_mutating_routes_to_check(staff_client: TestClient) -> None:
    assert len(_mutating_routes(staff_client, True)) >= 8
    assert len(_mutating_routes(staff_client, False)) >= 6


@pytest.mark.parametrize("user", ["viewer", "counter"])
def test_api_refuses_every_change_without_permission(staff_client: TestClient, seeded: psycopg.Connection,
                                                      user: str) -> None:
    headers = token_for(staff_client, user)
    before = _state(seeded)
    for method, path in _mutating_routes(staff_client, True, user):
        resp = staff_client.request(method, path, headers=headers, json=SAMPLE)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "forbidden"
    assert _state(seeded) == before


@pytest.mark.parametrize("user", ["viewer", "counter"])
def test_console_refuses_every_change_without_permission(staff_client: TestClient, seeded: psycopg.Connection,
                                                          user: str) -> None:
    csrf = console_login(staff_client, user)
    before = _state(seeded)
    for method, path in _mutating_routes(staff_client, False, user):
        files = {"file": ("a.csv", b"username,branch\nadmin,east\n", "text/csv")} if "assignments" in path else None
        resp = staff_client.request(method, path, data={"csrf_token": csrf, **SAMPLE}, files=files,
                                    follow_redirects=False)
        assert resp.status_code == 403, (method, path, resp.status_code)
    assert _state(seeded) == before


def test_viewer_can_read_what_view_grants(staff_client: TestClient) -> None:
    headers = token_for(staff_client, "viewer")
    assert staff_client.get("/api/v1/branches", headers=headers).status_code == 200
    assert staff_client.get("/api/v1/audit", headers=headers).status_code == 200
    assert staff_client.get("/api/v1/staff", headers=headers).status_code == 403  # accounts: admins only


def test_update_without_administer_cannot_manage_accounts_or_grants(staff_client: TestClient,
                                                                    seeded: psycopg.Connection) -> None:
    admin = token_for(staff_client, "admin")
    r = staff_client.put("/api/v1/roles/counter/permissions", headers=admin,
                         json={"permissions": ["circulation:view", "system:update", "system:view"]})
    assert r.status_code == 200
    counter = token_for(staff_client, "counter")
    assert staff_client.post("/api/v1/branches", headers=counter,
                             json={"code": "west", "name": "西分館"}).status_code == 201
    for method, path, body in [("POST", "/api/v1/staff", {"username": "sneaky", "password": "long-enough-1"}),
                               ("PUT", "/api/v1/roles/counter/permissions", {"permissions": ["system:administer"]}),
                               ("PATCH", "/api/v1/staff/counter", {"roles": ["admin"]})]:
        resp = staff_client.request(method, path, headers=counter, json=body)
        assert resp.status_code == 403, path
    assert seeded.execute("SELECT count(*) AS n FROM staff_account WHERE username = 'sneaky'").fetchone()["n"] == 0


def test_permissions_are_the_union_of_roles_and_groups(staff_client: TestClient) -> None:
    admin = token_for(staff_client, "admin")
    assert staff_client.post("/api/v1/groups", headers=admin,
                             json={"code": "east-team", "name": "東分館班"}).status_code == 201
    assert staff_client.put("/api/v1/groups/east-team/permissions", headers=admin,
                            json={"permissions": ["statistics:export"]}).status_code == 200
    staff_client.patch("/api/v1/staff/viewer", headers=admin, json={"groups": ["east-team"]})
    me = staff_client.get("/api/v1/me", headers=token_for(staff_client, "viewer")).json()
    assert "statistics:export" in me["permissions"] and "statistics:view" in me["permissions"]
    bad = staff_client.put("/api/v1/groups/east-team/permissions", headers=admin,
                           json={"permissions": ["statistics:fly"]})
    assert bad.status_code == 422 and "statistics:fly" in bad.json()["error"]["message"]


def test_admin_role_keeps_administer_and_admins_cannot_lock_themselves_out(staff_client: TestClient) -> None:
    admin = token_for(staff_client, "admin")
    r = staff_client.put("/api/v1/roles/admin/permissions", headers=admin, json={"permissions": ["system:view"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "admin_role_locked"
    r = staff_client.patch("/api/v1/staff/admin", headers=admin, json={"roles": ["counter"]})
    assert r.status_code == 409
    r = staff_client.patch("/api/v1/staff/admin", headers=admin, json={"active": False})
    assert r.status_code == 409
