"""Importing records into PostgreSQL: batches, re-import updates, ISBN matching, raw MARC kept,
readings filled, outbox and audit rows, and rejected records reported while the rest are saved."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pymarc import MARCReader

from api.audit import Actor, record
from api.catalog import importer, service
from api.catalog.aozora import read_aozora
from api.catalog.bib import BibRecord, Imported, Rejected, Staged
from api.catalog.importer import ImportReport, run_import
from api.catalog.marc_import import read_marc
from api.catalog.service import save_records
from api.cli import main as shoka

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MARC = DATA / "ndl_japan_marc21_sample.mrc"
ACTOR = Actor("cataloguer", "127.0.0.1")
pytestmark = pytest.mark.skipif(not MARC.exists(), reason=f"shared data not found at {DATA}")


def _count(conn: psycopg.Connection, sql: str) -> int:
    return int(conn.execute(sql).fetchone()["n"])


def test_import_then_reimport_updates_instead_of_duplicating(conn: psycopg.Connection) -> None:
    first = run_import(conn, ACTOR, read_marc(MARC, "ndl-marc21"), origin=MARC.name)
    assert (first.read, first.added, first.updated, first.rejected) == (233, 233, 0, [])
    second = run_import(conn, ACTOR, read_marc(MARC, "ndl-marc21"), origin=MARC.name)
    assert (second.added, second.updated) == (0, 233)
    assert _count(conn, "SELECT count(*) AS n FROM bib_record") == 233
    assert _count(conn, "SELECT count(*) AS n FROM search_outbox") == 466
    assert _count(conn, "SELECT count(*) AS n FROM audit_log WHERE action = 'catalog.import'") == 2


def test_original_marc_is_kept_verbatim_and_readings_are_complete(conn: psycopg.Connection) -> None:
    run_import(conn, ACTOR, read_marc(MARC, "ndl-marc21"), origin=MARC.name)
    with MARC.open("rb") as fh:
        original = next(iter(MARCReader(fh, to_unicode=True, force_utf8=True)))
    row = conn.execute("SELECT raw, title_reading, data FROM bib_record WHERE control_number = %s",
                       (original["001"].data,)).fetchone()
    assert bytes(row["raw"]) == original.as_marc()
    missing = _count(conn, "SELECT count(*) AS n FROM bib_record WHERE title_reading IS NULL OR title_reading = ''")
    assert missing == 0
    generated = conn.execute("SELECT data->'readings_generated' AS g FROM bib_record "
                             "WHERE jsonb_array_length(data->'readings_generated') > 0 LIMIT 1").fetchone()
    assert generated is not None  # some NDL records lack a reading for a name or publisher: generated, marked


def test_isbn_match_updates_a_record_from_another_source(conn: psycopg.Connection) -> None:
    run_import(conn, ACTOR, read_marc(MARC, "ndl-marc21"), origin=MARC.name)
    target = conn.execute("SELECT id, isbns FROM bib_record WHERE isbns <> '{}' ORDER BY id LIMIT 1").fetchone()
    other = BibRecord(source="TRC", control_number="T0001", title="改題された書名", isbns=[target["isbns"][0]])
    result = save_records(conn, ACTOR, [other])
    assert (result.added, result.updated) == (0, 1)
    assert conn.execute("SELECT title FROM bib_record WHERE id = %s", (target["id"],)).fetchone()["title"] == \
        "改題された書名"


def test_the_same_record_twice_in_one_batch(conn: psycopg.Connection) -> None:
    a = BibRecord(source="local", control_number="L1", title="初版")
    b = BibRecord(source="local", control_number="L1", title="改訂版")
    result = save_records(conn, ACTOR, [a, b])
    assert result.added == 1
    assert [r["title"] for r in conn.execute("SELECT title FROM bib_record").fetchall()] == ["改訂版"]


def test_bad_records_are_reported_and_the_rest_saved(conn: psycopg.Connection, tmp_path: Path) -> None:
    raw = MARC.read_bytes()
    records = raw.split(b"\x1d")[:3]
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(records[0] + b"\x1d" + b"99999xxxx garbage" + b"\x1d" + records[1] + b"\x1d" + records[2][:80])
    report = run_import(conn, ACTOR, read_marc(broken, "ndl-marc21"), origin=broken.name)
    assert report.added == 2 and len(report.rejected) >= 1
    position, reason = report.rejected[0]
    assert position.startswith("record 2") and reason
    assert _count(conn, "SELECT count(*) AS n FROM bib_record") == 2


def test_aozora_old_list_imports_every_work(conn: psycopg.Connection) -> None:
    path = DATA / "aozora_list_person_all_utf8.csv"
    report = run_import(conn, ACTOR, read_aozora(path), origin=path.name, unit="line")
    assert report.rejected == [] and report.added == report.read > 14_000
    row = conn.execute("SELECT data FROM bib_record WHERE source = 'aozora' AND control_number = '056078'").fetchone()
    assert "https://www.aozora.gr.jp/cards/001257/card56078.html" in row["data"]["links"]
    assert row["data"]["title_reading"]  # generated: the old list has no readings


def test_cli_import_reports_rejections_and_exit_code(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert shoka(["import", "marc", str(MARC)]) == 0
    assert "233 read, 233 added" in capsys.readouterr().out
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"this is not MARC at all\x1d")
    assert shoka(["import", "marc", str(bad)]) == 1
    assert "rejected at record 1" in capsys.readouterr().out
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    assert shoka(["import", "marc", str(empty)]) == 0
    assert "contains no records" in capsys.readouterr().out
    assert shoka(["import", "marc", str(MARC), "--profile", "no-such-profile"]) == 1
    assert "ndl-marc21" in capsys.readouterr().err
    assert shoka(["import", "marc", str(tmp_path / "missing.mrc")]) == 1


def test_cli_refuses_a_csv_with_missing_columns(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    bad = tmp_path / "list.csv"
    bad.write_text("作品ID,作品名\n000001,吾輩は猫である\n", encoding="utf-8")
    assert shoka(["import", "aozora", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "not imported" in out and "Traceback" not in out


def test_a_bulk_load_writes_no_outbox_rows(conn: psycopg.Connection) -> None:
    report = run_import(conn, ACTOR, read_marc(MARC, "ndl-marc21"), origin=MARC.name, outbox=False)
    assert (report.added, report.rejected) == (233, [])
    assert _count(conn, "SELECT count(*) AS n FROM search_outbox") == 0
    again = save_records(conn, ACTOR, [BibRecord(source="local", control_number="L9", title="追加")])
    assert again.added == 1 and _count(conn, "SELECT count(*) AS n FROM search_outbox") == 1


def test_a_batch_mixing_new_updated_and_repeated_records(conn: psycopg.Connection) -> None:
    old = BibRecord(source="local", control_number="L1", title="旧題", isbns=["9784000000001"], raw=b"\x00\x01raw")
    save_records(conn, ACTOR, [old])
    batch = [BibRecord(source="local", control_number="L2", title="新しい本", year=2024),
             BibRecord(source="local", control_number="L1", title="新題"),
             BibRecord(source="local", control_number="L2", title="新しい本 第2版", year=2025),
             BibRecord(source="TRC", control_number="T1", title="ISBNで一致", isbns=["9784000000001"]),
             BibRecord(source="local", control_number="L3", title="三冊目", raw=b"\xff\x00")]
    result = save_records(conn, ACTOR, batch)
    assert (result.added, result.updated) == (2, 3)
    rows = conn.execute("SELECT source, control_number, title, pub_year, isbns, raw FROM bib_record "
                        "ORDER BY id").fetchall()
    assert [(r["control_number"], r["title"], r["pub_year"]) for r in rows] == [
        ("L1", "ISBNで一致", None), ("L2", "新しい本 第2版", 2025), ("L3", "三冊目", None)]
    assert rows[0]["isbns"] == ["9784000000001"] and rows[0]["raw"] is None and bytes(rows[2]["raw"]) == b"\xff\x00"
    assert _count(conn, "SELECT count(DISTINCT record_id) AS n FROM search_outbox") == 3


def test_cli_import_then_reindex(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from indexer.query import SearchRequest, parse_keywords
    from indexer.tantivy_engine import TantivyEngine

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SHOKA_DATA_DIR", str(tmp_path))
    assert shoka(["import", "marc", str(MARC), "--then-reindex"]) == 0
    assert "Reindexed 233 records" in capsys.readouterr().out
    with psycopg.connect(db_url) as c:
        assert c.execute("SELECT count(*) FROM search_outbox").fetchone() == (0,)
        record_id, title = c.execute("SELECT id, title FROM bib_record ORDER BY id LIMIT 1").fetchone()
    hits = TantivyEngine(tmp_path / "index").search(SearchRequest(query=parse_keywords(title))).hits
    assert hits and hits[0].id == record_id


def _local(n: int, title: str = "") -> BibRecord:
    return BibRecord(source="local", control_number=f"L{n}", title=title or f"本{n}", title_reading="ホン")


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "shoka-import-writer"]


def test_batches_are_written_in_order_and_see_the_previous_one(conn: psycopg.Connection,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 2)
    items = [Imported(_local(1), 1), Imported(_local(2), 2),
             Rejected(3, None, "壊れている"),
             Imported(_local(1, "第2版"), 4), Imported(_local(3), 5),  # batch 2 repeats batch 1's L1
             Imported(_local(1, "第3版"), 6), Imported(_local(1, "第4版"), 7),  # twice in batch 3
             Imported(_local(4), 8),
             Rejected(9, 1234, "短すぎる")]
    seen: list[tuple[int, int, int, int]] = []

    def progress(r: ImportReport) -> None:
        seen.append((r.read, r.added, r.updated, len(r.rejected)))

    report = run_import(conn, ACTOR, iter(items), origin="test", progress=progress)
    assert (report.read, report.added, report.updated) == (7, 4, 3)
    assert report.rejected == [("record 3", "壊れている"), ("record 9 (byte 1234)", "短すぎる")]
    assert seen == [(2, 2, 0, 0), (4, 3, 1, 1), (6, 3, 3, 1), (7, 4, 3, 2)]  # the last batch is saved after the end
    rows = conn.execute("SELECT control_number, title FROM bib_record ORDER BY id").fetchall()
    assert [(r["control_number"], r["title"]) for r in rows] == [("L1", "第4版"), ("L2", "本2"), ("L3", "本3"),
                                                                 ("L4", "本4")]
    assert _count(conn, "SELECT count(*) AS n FROM audit_log WHERE action = 'catalog.import'") == 4
    assert _count(conn, "SELECT count(*) AS n FROM search_outbox") == 6  # one per record and batch
    assert not _writer_threads()


def test_a_database_error_stops_the_import_after_the_batches_before_it(conn: psycopg.Connection,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 2)
    audited = 0

    def failing_record(c: psycopg.Connection, *args: object, **kwargs: object) -> int:
        nonlocal audited
        audited += 1
        if audited == 2:  # the second batch's last statement: its records are already inserted
            c.execute("SELECT 1 / 0")
        return record(c, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "record", failing_record)
    consumed = 0

    def items() -> Iterator[Imported]:
        nonlocal consumed
        for n in range(1, 101):
            consumed += 1
            yield Imported(_local(n), n)

    threads, interval = set(threading.enumerate()), sys.getswitchinterval()
    with pytest.raises(psycopg.errors.DivisionByZero):
        run_import(conn, ACTOR, items(), origin="test")
    assert set(threading.enumerate()) == threads and sys.getswitchinterval() == interval
    # The reader is at most the queued batch and the one being prepared ahead of the writer, plus one item.
    assert consumed <= 4 * 2 + 1
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert [r["control_number"] for r in conn.execute("SELECT control_number FROM bib_record ORDER BY id")] == \
        ["L1", "L2"]
    assert _count(conn, "SELECT count(*) AS n FROM audit_log WHERE action = 'catalog.import'") == 1
    assert _count(conn, "SELECT count(*) AS n FROM search_outbox") == 2


def test_an_error_while_reading_is_raised_after_the_batches_read_before_it(conn: psycopg.Connection,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 2)

    def items() -> Iterator[Imported]:
        for n in range(1, 6):
            yield Imported(_local(n), n)
        raise OSError("the file went away")

    with pytest.raises(OSError, match="went away"):
        run_import(conn, ACTOR, items(), origin="test")
    assert not _writer_threads()
    # Batches 1 and 2 were complete: saved, as without pipelining; record 5 was in the unfinished third.
    assert _count(conn, "SELECT count(*) AS n FROM bib_record") == 4
    assert _count(conn, "SELECT count(*) AS n FROM audit_log WHERE action = 'catalog.import'") == 2


@pytest.mark.parametrize("path", ["new records: straight into bib_record", "with an update: through staging"])
def test_staging_rows_keep_every_value(conn: psycopg.Connection, path: str) -> None:
    if path.startswith("with"):
        save_records(conn, ACTOR, [BibRecord(source="local", control_number="L0", title="既存")])
    odd = BibRecord(source="local", control_number='L"1\\', title='書名 "引用" \\ {a,b} 𠮷', title_reading="ショメイ",
                    material_type="book", year=2024, ndc="913.6", isbns=["9784000000001", "978400000000X"],
                    raw=b"\x00\xff", raw_format="marc21")
    bare = BibRecord(source="local", control_number="L2", title="題")
    batch = [odd, bare] + ([BibRecord(source="local", control_number="L0", title="更新")] if path.startswith("with")
                           else [])
    assert (save_records(conn, ACTOR, batch).added, _count(conn, "SELECT count(*) AS n FROM search_outbox")) == \
        (2, len(batch) + (1 if path.startswith("with") else 0))
    rows = conn.execute("SELECT source, control_number, title, title_reading, material_type, pub_year, ndc, isbns, "
                        "data, raw_format, raw FROM bib_record WHERE control_number <> 'L0' ORDER BY id").fetchall()
    for r, row in zip([odd, bare], rows, strict=True):
        assert (row["source"], row["control_number"], row["title"], row["title_reading"], row["material_type"],
                row["pub_year"], row["ndc"], row["isbns"], row["raw_format"]) == \
            (r.source, r.control_number, r.title, r.title_reading, r.material_type, r.year, r.ndc, r.isbns,
             r.raw_format)
        assert row["data"] == json.loads(r.dumps())
        assert (bytes(row["raw"]) if row["raw"] is not None else None) == r.raw


def test_saving_refuses_a_connection_not_in_utf8(conn: psycopg.Connection) -> None:
    conn.execute("SET client_encoding = 'EUC_JP'")
    with pytest.raises(RuntimeError, match="UTF8"):
        save_records(conn, ACTOR, [_local(1)])



def test_isbn_matching_probes_an_index_without_a_pending_list(conn: psycopg.Connection) -> None:
    # With GIN's fastupdate every ISBN lookup also scans the recent insertions: the import's largest cost.
    options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'bib_record_isbns'").fetchone()
    assert "fastupdate=off" in options["reloptions"]
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # a near-empty test table would be scanned instead
        plan = conn.execute("EXPLAIN SELECT id FROM bib_record WHERE isbns @> ARRAY['9784000000000']").fetchall()
    assert "bib_record_isbns" in "\n".join(row["QUERY PLAN"] for row in plan)


def test_the_original_marc_is_stored_uncompressed(conn: psycopg.Connection) -> None:
    # pglz cost a quarter of PostgreSQL's CPU in a bulk import for a copy that is seldom read (migration 0007)
    storage = conn.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = 'bib_record'::regclass "
                           "AND attname = 'raw'").fetchone()
    assert storage["attstorage"] == "e"
    run_import(conn, ACTOR, read_marc(MARC, "ndl-marc21"), origin=MARC.name)
    counts = conn.execute("SELECT count(pg_column_compression(raw)) AS raw, count(pg_column_compression(data)) "
                          "AS data FROM bib_record").fetchone()
    assert counts["raw"] == 0 and counts["data"] > 100  # the JSON, read by every result page, still compressed


@pytest.mark.parametrize("workers", [1, 2])
def test_records_staged_where_they_are_read_are_saved_the_same(conn: psycopg.Connection, tmp_path: Path,
                                                               workers: int) -> None:
    """`read_marc(staged=True)` (readings filled and columns encoded in the reading processes) saves the same
    rows and reports the same counts and rejections as records staged by run_import itself."""
    records = MARC.read_bytes().split(b"\x1d")[:-1]
    mixed = tmp_path / "mixed.mrc"
    mixed.write_bytes(b"\x1d".join([*records[:100], b"99999xxxx garbage", *records[100:]]) + b"\x1d")
    columns = "source, control_number, title, title_reading, material_type, pub_year, ndc, isbns, data, raw_format, raw"

    def saved(staged: bool) -> tuple[list[Any], tuple[int, int, int, list[tuple[str, str]], int]]:
        conn.execute("TRUNCATE bib_record CASCADE")
        report = run_import(conn, ACTOR, read_marc(mixed, "ndl-marc21", workers=workers, staged=staged),
                            origin=mixed.name)
        rows = conn.execute(f"SELECT {columns} FROM bib_record ORDER BY id").fetchall()
        return rows, (report.read, report.added, report.updated, report.rejected, report.readings_generated)

    items = list(read_marc(mixed, "ndl-marc21", workers=workers, staged=True))
    assert sum(isinstance(i, Staged) for i in items) == 233 and sum(isinstance(i, Rejected) for i in items) == 1
    rows, report = saved(True)
    assert (rows, report) == saved(False)
    assert report[:3] == (233, 233, 0) and report[3][0][0].startswith("record 101") and report[4] > 0
    assert [r["control_number"] for r in rows] == [i.control_number for i in items if isinstance(i, Staged)]
