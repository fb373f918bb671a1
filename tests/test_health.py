"""/healthz and /readyz on both apps, naming the dependency that fails."""

from __future__ import annotations

from dataclasses import replace

import psycopg
from fastapi.testclient import TestClient

from api.config import Settings


def test_both_apps_are_alive_and_ready(staff_client: TestClient, opac_client: TestClient) -> None:
    for client in (staff_client, opac_client):
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and set(body["checks"]) == {"database", "redis", "search"}


def test_readyz_names_the_failed_dependency(seeded: psycopg.Connection, settings: Settings, db_url: str) -> None:
    from api.app import create_staff_app

    app = create_staff_app(settings, db_url, "redis://127.0.0.1:1/0")
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["failed"] == ["redis"] and r.json()["checks"]["database"]["status"] == "ok"


def test_readyz_reports_a_broken_search_index(seeded: psycopg.Connection, settings: Settings, db_url: str,
                                              redis_url: str, tmp_path) -> None:
    from opac.app import create_opac_app

    generation = tmp_path / "index" / "gen-broken"
    generation.mkdir(parents=True)
    (generation / "meta.json").write_text("{ not json")
    (tmp_path / "index" / "current").write_text("gen-broken")
    broken = replace(settings, data_dir=tmp_path)
    app = create_opac_app(broken, db_url, redis_url)
    with TestClient(app) as client:
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["failed"] == ["search"]


def test_access_log_drops_query_strings() -> None:
    import logging

    from api.web import AccessLogWithoutQuery

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("10.0.0.1:5000", "GET", "/audit?actor=yamada&subject=staff:suzuki", "1.1", 200), None)
    assert AccessLogWithoutQuery().filter(record)
    line = record.getMessage()
    assert "/audit?…" in line and "yamada" not in line and "suzuki" not in line


def test_every_response_carries_the_security_headers(staff_client: TestClient, opac_client: TestClient) -> None:
    from api.web import SECURITY_HEADERS

    for client, paths in ((opac_client, ("/", "/search?q=猫", "/api/v1/search?q=猫", "/no-such-page",
                                         "/api/v1/search?size=abc")),
                          (staff_client, ("/healthz", "/no-such-page"))):
        for path in paths:
            r = client.get(path)
            for name, value in SECURITY_HEADERS:
                assert r.headers.get(name.decode()) == value.decode(), (path, name)


def test_a_response_keeps_a_security_header_it_sets_itself() -> None:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from api.web import install_security_headers

    app = FastAPI()
    install_security_headers(app)

    @app.get("/framed")
    def framed() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"X-Frame-Options": "SAMEORIGIN"})

    with TestClient(app) as client:
        r = client.get("/framed")
    assert r.headers["x-frame-options"] == "SAMEORIGIN" and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
