"""Demo data for `script/server`: branches, the library's name, two staff accounts, and a catalogue
from the shared real data (NDL JAPAN/MARC records with copies at the branches, Aozora Bunko works).

Idempotent: running it again changes nothing. The demo passwords are in the README.
"""

from __future__ import annotations

import os
from pathlib import Path

from psycopg.types.json import Jsonb

from api import db
from api.audit import Actor, record
from api.auth import service
from api.config import Settings

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


def demo_data_dir() -> Path:
    """The project's shared real data (../shared/data beside the checkout), or SHOKA_DEMO_DATA."""
    configured = os.environ.get("SHOKA_DEMO_DATA")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def load_catalogue(settings: Settings, url: str) -> str:
    """Import the shared MARC and Aozora files once, give the MARC records copies, build the index."""
    from api.catalog.aozora import read_aozora
    from api.catalog.importer import run_import
    from api.catalog.marc_import import read_marc
    from indexer.engine import engine_for
    from indexer.sync import rebuild

    data = demo_data_dir()
    marc, aozora = data / "ndl_japan_marc21_sample.mrc", data / "aozora_list_person_all_utf8.csv"
    with db.connect(url) as conn:
        if conn.execute("SELECT 1 FROM item LIMIT 1").fetchone():
            return "Demo catalogue: already loaded."  # (an interrupted load re-imports: imports update)
        if not marc.exists():
            return f"Demo catalogue: skipped ({data} not found; set SHOKA_DEMO_DATA to the shared data folder)."
        actor = Actor.cli()
        counts = [run_import(conn, actor, read_marc(marc, "ndl-marc21"), origin=marc.name).added]
        if aozora.exists():
            counts.append(run_import(conn, actor, read_aozora(aozora), origin=aozora.name, unit="line").added)
        with conn.transaction():
            # One or two copies of each printed book, spread over the two libraries, shelved by NDC and
            # the first kana of the title reading (a common Japanese call-number pattern).
            items = conn.execute(
                """INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number,
                                     status, acquired_on, price)
                   SELECT r.id, '2' || lpad((r.id * 10 + c.n)::text, 7, '0'), b.id, b.id,
                          CASE WHEN r.data->>'audience' = 'juvenile' THEN 'children' ELSE 'book' END,
                          concat_ws('/', nullif(r.ndc, ''), left(r.title_reading, 1)),
                          CASE WHEN (r.id + c.n) % 4 = 0 THEN 'on_loan' ELSE 'available' END,
                          current_date - (r.id % 365)::int, 1000 + (r.id % 20) * 100
                   FROM bib_record r
                   CROSS JOIN (VALUES (1), (2)) AS c(n)
                   JOIN branch b ON b.code = CASE WHEN c.n = 1 THEN 'main' ELSE 'east' END
                   WHERE r.material_type = 'book' AND (c.n = 1 OR r.id % 3 = 0)""").rowcount
            record(conn, actor, "demo.items", "demo", "", {"items": items})
        indexed = rebuild(conn, engine_for(settings))
    return (f"Demo catalogue: {sum(counts)} records ({counts[0]} NDL MARC"
            f"{f', {counts[1]} Aozora Bunko' if len(counts) > 1 else ''}), {items} items, {indexed} indexed.")
