"""Demo data for `script/server`: branches, the library's name, two staff accounts, a catalogue
from the shared real data (NDL JAPAN/MARC records with copies at the branches, Aozora Bunko works),
and a circulation desk: patrons (fictional), a group, loan rules, calendars, barcode ranges, a
counter workstation whose receipt printer writes to a file, and loans made through the real
check-out code (some overdue).

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
from api.errors import ShokaError

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
                          'available',
                          current_date - (r.id % 365)::int, 1000 + (r.id % 20) * 100
                   FROM bib_record r
                   CROSS JOIN (VALUES (1), (2)) AS c(n)
                   JOIN branch b ON b.code = CASE WHEN c.n = 1 THEN 'main' ELSE 'east' END
                   WHERE r.material_type = 'book' AND (c.n = 1 OR r.id % 3 = 0)""").rowcount
            record(conn, actor, "demo.items", "demo", "", {"items": items})
        indexed = rebuild(conn, engine_for(settings))
    return (f"Demo catalogue: {sum(counts)} records ({counts[0]} NDL MARC"
            f"{f', {counts[1]} Aozora Bunko' if len(counts) > 1 else ''}), {items} items, {indexed} indexed.")


# My Library password of every demo patron (public, like the demo staff passwords: demo data only).
DEMO_PATRON_PASSWORD = "shoka-patron-2026"  # noqa: S105 - published demo password
# Fictional patrons (架空の利用者): name, reading, category, birth date.
DEMO_PATRONS = (
    ("山田 花子", "ヤマダ ハナコ", "general", "1985-04-12"),
    ("佐藤 太郎", "サトウ タロウ", "general", "1972-11-03"),
    ("鈴木 一郎", "スズキ イチロウ", "general", "1958-01-20"),
    ("高橋 美咲", "タカハシ ミサキ", "general", "1996-07-07"),
    ("田中 健太", "タナカ ケンタ", "child", "2016-09-15"),
    ("伊藤 さくら", "イトウ サクラ", "child", "2014-03-30"),
    ("渡辺 大輔", "ワタナベ ダイスケ", "nonresident", "1990-12-01"),
    ("書架市立第一小学校", "ショカシリツダイイチショウガッコウ", "group", None),
)


def demo_card(n: int) -> str:
    """Demo card numbers: 10 digits starting 1, the last a modulus-10 (weights 2-1, 分割法) check digit."""
    from api.barcodes.nw7 import compute_check_digit

    body = f"1{n:08d}"
    return body + compute_check_digit(body, "mod10_w21_digits")


def load_circulation(settings: Settings, url: str) -> str:
    """Rules, calendars, ranges, a workstation, patrons and some loans; once."""
    from datetime import date, timedelta

    from api.calendar.days import YearPattern, plan_year
    from api.circulation import service as circulation

    actor = Actor.cli()
    receipts_dir = settings.data_dir / "receipts"
    receipts_dir.mkdir(parents=True, exist_ok=True)
    with db.connect(url) as conn:
        if conn.execute("SELECT 1 FROM patron LIMIT 1").fetchone():
            return "Demo circulation: already loaded."
        if not conn.execute("SELECT 1 FROM item LIMIT 1").fetchone():
            return "Demo circulation: skipped (no items)."
        today = date.today()
        with conn.transaction():
            conn.execute("""INSERT INTO loan_rule (patron_category, item_type, branch_id, loan_days, max_loans,
                                                   max_loans_of_type, renewals, renewal_days, max_holds)
                            VALUES ('group', NULL, NULL, 30, 100, NULL, 1, 30, 20),
                                   ('child', NULL, NULL, 14, 10, NULL, 1, 14, 5),
                                   (NULL, 'av', NULL, 7, 10, 3, 0, 7, 5),
                                   ('nonresident', NULL, NULL, 14, 5, NULL, 1, 14, 3)""")
            pattern = YearPattern(weekly_closed=frozenset({0}))
            for code in ("main", "east"):
                branch = conn.execute("SELECT id FROM branch WHERE code = %s", (code,)).fetchone()
                assert branch is not None
                conn.execute("INSERT INTO branch_calendar (branch_id, weekly_closed) VALUES (%s, '{0}')",
                             (branch["id"],))
                days = [d for year in (today.year, today.year + 1) for d in plan_year(year, pattern)]
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO calendar_day (branch_id, day, closed, reason) VALUES (%s, %s, %s, %s) "
                                    "ON CONFLICT DO NOTHING", [(branch["id"], d.day, d.closed, d.reason) for d in days])
            conn.execute("""INSERT INTO barcode_rule (kind, name, prefix, length, check_scheme) VALUES
                            ('patron', '利用者カード', '1', 10, 'mod10_w21_digits'),
                            ('item', '資料ラベル', '2', 8, 'none')""")
            conn.execute("""INSERT INTO workstation (code, name, branch_id, printer)
                            SELECT 'main-1', '中央図書館 カウンター1', id, %s FROM branch WHERE code = 'main'""",
                         (Jsonb({"connection": "file", "path": str(receipts_dir / "main-1.prn")}),))
            for n, (name, reading, category, birth) in enumerate(DEMO_PATRONS, start=1):
                conn.execute(
                    """INSERT INTO patron (card, name, name_reading, reading_key, birth_date, category, home_branch_id,
                                           expires_on, phone, email, keep_history, contact_name)
                       SELECT %s, %s, %s, %s, %s, %s, id, %s, %s, %s, %s, %s FROM branch WHERE code = 'main'""",
                    (demo_card(n), name, reading, reading.replace(" ", ""), birth, category,
                     today + timedelta(days=365 * 2), f"026-000-{n:04d}", f"patron{n}@example.jp", n % 3 == 0,
                     "教頭 木村" if category == "group" else None))
            record(conn, actor, "demo.circulation", "demo", "", {"patrons": len(DEMO_PATRONS)})
        from api.mylibrary.service import set_password

        for row in conn.execute("SELECT id FROM patron ORDER BY id").fetchall():
            set_password(conn, actor, row["id"], DEMO_PATRON_PASSWORD)
        items = [r["barcode"] for r in conn.execute(
            "SELECT barcode FROM item WHERE item_type IN ('book', 'children') ORDER BY id DESC LIMIT 40").fetchall()]
        loans = 0
        for index, barcode in enumerate(items):
            patron = demo_card(index % len(DEMO_PATRONS) + 1)
            # Some loans started weeks ago, so the desk shows overdue items too.
            started = today - timedelta(days=(index * 3) % 24)
            try:
                circulation.checkout(conn, actor, patron, barcode, branch="main", today=started,
                                     override=["patron_has_overdue", "limit_reached"])
                loans += 1
            except ShokaError:
                continue  # demo data: a refused loan is simply not made
    return f"Demo circulation: {len(DEMO_PATRONS)} patrons (cards {demo_card(1)}…), {loans} loans."
