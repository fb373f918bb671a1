"""Test fixtures on real services: an embedded PostgreSQL cluster and an embedded Valkey, started
once per test session in a temporary data directory. Each test gets its own database, cloned from
a migrated template, so tests never see each other's rows."""

from __future__ import annotations

import shutil
import socketserver
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import db, migrate
from api.audit import Actor
from api.auth import service as auth
from api.config import Settings
from api.runtime.postgres import OPAC_ROLE, EmbeddedPostgres
from api.runtime.valkey import EmbeddedValkey

TEMPLATE = "shoka_template"
PASSWORDS = {"admin": "admin-password-1", "counter": "counter-password-1", "viewer": "viewer-password-1"}


@dataclass
class Cluster:
    data_dir: Path
    pg: EmbeddedPostgres
    valkey: EmbeddedValkey

    def url(self, dbname: str, role: str = "shoka") -> str:
        return self.pg.url(role).rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data directory
    # from under a cluster still running in a concurrent session.
    data_dir = Path(tempfile.mkdtemp(prefix="shoka-test-"))
    pg = EmbeddedPostgres(data_dir)
    pg.ensure_running()
    valkey = EmbeddedValkey(data_dir)
    valkey.ensure_running()
    c = Cluster(data_dir, pg, valkey)
    with psycopg.connect(c.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    migrate.upgrade(c.url(TEMPLATE))
    migrate.ensure_opac_login(c.url(TEMPLATE), OPAC_ROLE)
    yield c
    db.close_all()
    valkey.stop()
    pg.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def db_url(cluster: Cluster) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    url = cluster.url(name)
    yield url
    db.close(url)
    db.close(cluster.url(name, OPAC_ROLE))
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def opac_db_url(cluster: Cluster, db_url: str) -> str:
    return cluster.url(db_url.rsplit("/", 1)[1], OPAC_ROLE)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with db.connect(db_url) as c:
        yield c


@pytest.fixture
def settings(cluster: Cluster) -> Settings:
    return Settings(data_dir=cluster.data_dir, host="127.0.0.1", opac_port=8000, staff_port=8001,
                    database_url=None, opac_database_url=None, redis_url=None, opensearch_url=None,
                    library_name="テスト図書館")


@pytest.fixture
def redis_url(cluster: Cluster) -> str:
    return cluster.valkey.url()


@pytest.fixture
def seeded(conn: psycopg.Connection) -> psycopg.Connection:
    """Two branches and three accounts: an administrator, a counter clerk and a view-only user."""
    actor = Actor.cli()
    with conn.transaction():
        conn.execute("INSERT INTO branch (code, name) VALUES ('main', '中央図書館'), ('east', '東分館')")
        conn.execute("INSERT INTO staff_role (code, name, name_en) VALUES ('viewer', '閲覧のみ', 'Viewer')")
        conn.execute("INSERT INTO role_permission (role_id, area, action) SELECT r.id, a, 'view' FROM staff_role r, "
                     "unnest(ARRAY['catalogue','circulation','patrons','statistics','system']) a "
                     "WHERE r.code = 'viewer'")
    auth.create_account(conn, actor, "admin", PASSWORDS["admin"], display_name="管理者", roles=["admin"],
                        branch="main")
    auth.create_account(conn, actor, "counter", PASSWORDS["counter"], display_name="窓口", roles=["counter"],
                        branch="main")
    auth.create_account(conn, actor, "viewer", PASSWORDS["viewer"], display_name="閲覧者", roles=["viewer"],
                        branch="east")
    return conn


@pytest.fixture
def staff_client(seeded: psycopg.Connection, settings: Settings, db_url: str, redis_url: str) -> Iterator[TestClient]:
    from api.app import create_staff_app

    app = create_staff_app(settings, db_url, redis_url)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def opac_client(seeded: psycopg.Connection, settings: Settings, opac_db_url: str,
                redis_url: str) -> Iterator[TestClient]:
    from opac.app import create_opac_app

    app = create_opac_app(replace(settings), opac_db_url, redis_url)
    with TestClient(app) as client:
        yield client


def token_for(client: TestClient, username: str) -> dict[str, str]:
    resp = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORDS[username]})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def console_login(client: TestClient, username: str, password: str | None = None) -> str:
    """Sign in through the login form; returns the session's CSRF token from the home page."""
    page = client.get("/login")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "csrf_token": csrf, "next": "/"}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    home = client.get("/")
    return home.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


# -- a real browser: Debian's Chromium driven by Playwright (tests/test_browser*.py) -------------------

CHROMIUM = "/usr/bin/chromium"
# Without these Chromium tries to reach Google's services and, on a machine with no network, floods the
# log with refused connections.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Served:
    """An ASGI app served by uvicorn in a background thread on a free port of 127.0.0.1.

    log_config=None: uvicorn leaves the logging configuration alone, so its records (the access log
    too) reach pytest's caplog, and one test's server cannot silence another's loggers."""

    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        # Bind port 0 ourselves and hand uvicorn the socket: no race for the port with other processes.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                                    access_log=True))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name=f"uvicorn-{port}")

    def __enter__(self) -> Served:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        assert not self.thread.is_alive(), f"uvicorn on {self.url} did not stop"


class _PrinterCapture(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        chunks = []
        while chunk := self.request.recv(4096):
            chunks.append(chunk)
        server: Any = self.server
        server.received.append(b"".join(chunks))
        server.done.set()


@pytest.fixture
def network_printer() -> Iterator[Any]:
    """A receipt printer stand-in listening on raw TCP (like port 9100) on the loopback address: every
    connection's bytes land in `.received`; `.server_address[1]` is its port."""
    server: Any = socketserver.TCPServer(("127.0.0.1", 0), _PrinterCapture)
    server.received, server.done = [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
