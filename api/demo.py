"""Demo data for `script/server`: branches, the library's name and two staff accounts.

Idempotent: running it again changes nothing. The demo passwords are in the README.
"""

from __future__ import annotations

from psycopg.types.json import Jsonb

from api import db
from api.audit import Actor, record
from api.auth import service

DEMO_BRANCHES = (
    ("main", "中央図書館", "Central Library", "library"),
    ("east", "東分館", "East Branch", "library"),
    ("mobile", "移動図書館 ひまわり号", "Bookmobile Himawari", "bookmobile"),
)
DEMO_STAFF = (
    ("admin", "shoka-admin-2026", "管理者（デモ）", ["admin"], "main"),
    ("counter", "shoka-counter-2026", "カウンター（デモ）", ["counter"], "main"),
)


def load(url: str) -> str:
    actor = Actor.cli()
    created: list[str] = []
    with db.connect(url) as conn:
        with conn.transaction():
            for code, name, name_en, kind in DEMO_BRANCHES:
                row = conn.execute(
                    "INSERT INTO branch (code, name, name_en, kind) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (code) DO NOTHING RETURNING code", (code, name, name_en, kind)).fetchone()
                if row:
                    created.append(f"branch {code}")
            if conn.execute("INSERT INTO library_setting (key, value) VALUES ('library_name', %s) "
                            "ON CONFLICT (key) DO NOTHING RETURNING key", (Jsonb("書架市立図書館"),)).fetchone():
                created.append("library name")
            if created:
                record(conn, actor, "demo.load", "demo", "", {"created": created})
        existing = {r["username"] for r in service.list_accounts(conn)}
        for username, password, display, roles, branch in DEMO_STAFF:
            if username not in existing:
                service.create_account(conn, actor, username, password, display_name=display, roles=roles,
                                       branch=branch)
                created.append(f"staff {username}")
    return "Demo data: " + (", ".join(created) + " created." if created else "already loaded.")
