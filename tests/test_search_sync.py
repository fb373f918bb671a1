"""The transactional outbox keeps the index in step with PostgreSQL; a rebuild switches generations."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.audit import Actor
from api.items import service as items
from indexer.query import Keyword, SearchRequest, parse_keywords
from indexer.sync import apply_outbox, prune_outbox, rebuild
from indexer.tantivy_engine import TantivyEngine

ACTOR = Actor("cataloguer", "127.0.0.1")


def _record(conn: psycopg.Connection, number: str, title: str, reading: str | None = None) -> int:
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO bib_record (source, control_number, title, title_reading, data) "
            "VALUES ('JTNDL', %s, %s, %s, %s) RETURNING id",
            (number, title, reading, Jsonb({"title": title, "title_reading": reading}))).fetchone()
        conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (row["id"],))
    return int(row["id"])


def _ids(engine: TantivyEngine, text: str | None = None, **kwargs: object) -> list[int]:
    query = parse_keywords(text) if text else None
    return [h.id for h in engine.search(SearchRequest(query=query, **kwargs)).hits]  # type: ignore[arg-type]


@pytest.fixture
def engine(tmp_path: Path) -> TantivyEngine:
    return TantivyEngine(tmp_path / "index")


def test_outbox_applies_records_and_item_changes(seeded: psycopg.Connection, engine: TantivyEngine) -> None:
    sorekara = _record(seeded, "1", "それから", "ソレカラ")
    assert _ids(engine, "それから") == []
    assert apply_outbox(seeded, engine) == 1
    assert _ids(engine, "それから") == [sorekara]
    assert apply_outbox(seeded, engine) == 0  # nothing pending

    items.create_item(seeded, ACTOR, items.NewItem(sorekara, "3000001", "east", "book"))
    apply_outbox(seeded, engine)
    assert _ids(engine, "それから", filters=(Keyword("branch", "east"),)) == [sorekara]
    assert _ids(engine, None, filters=(Keyword("available", "true"),)) == [sorekara]

    seeded.execute("UPDATE item SET status = 'on_loan' WHERE barcode = '3000001'")
    seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (sorekara,))
    apply_outbox(seeded, engine)
    assert _ids(engine, None, filters=(Keyword("available", "true"),)) == []

    seeded.execute("DELETE FROM item")
    seeded.execute("DELETE FROM bib_record WHERE id = %s", (sorekara,))
    seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (sorekara,))
    apply_outbox(seeded, engine)
    assert _ids(engine, "それから") == []


def test_a_failed_engine_write_leaves_changes_pending(seeded: psycopg.Connection, engine: TantivyEngine) -> None:
    _record(seeded, "2", "こころ")

    class Broken:
        def write(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError):
        apply_outbox(seeded, Broken())
    assert seeded.execute("SELECT count(*) AS n FROM search_outbox WHERE applied_at IS NULL").fetchone()["n"] == 1
    assert apply_outbox(seeded, engine) == 1


def test_rebuild_builds_a_new_generation_and_switches(seeded: psycopg.Connection, engine: TantivyEngine) -> None:
    ids = [_record(seeded, str(10 + i), title) for i, title in enumerate(["門", "坊っちゃん", "草枕"])]
    apply_outbox(seeded, engine)
    before = (engine.index_dir / "current").read_text()
    assert rebuild(seeded, engine) == 3
    assert (engine.index_dir / "current").read_text() != before
    assert sorted(_ids(engine)) == sorted(ids)
    assert _ids(engine, "ぼっちゃん") == [ids[1]]


def test_applied_rows_are_pruned_after_a_day(seeded: psycopg.Connection, engine: TantivyEngine) -> None:
    _record(seeded, "3", "虞美人草")
    apply_outbox(seeded, engine)
    assert prune_outbox(seeded) == 0
    seeded.execute("UPDATE search_outbox SET applied_at = now() - interval '2 days'")
    assert prune_outbox(seeded) == 1


def test_worker_job_rebuilds_when_the_analyzer_changed(seeded: psycopg.Connection, db_url: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import jobs

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SHOKA_DATA_DIR", str(tmp_path))
    engine = TantivyEngine(tmp_path / "index")
    rid = _record(seeded, "4", "三四郎")
    assert jobs.apply_search_outbox() == 1
    assert _ids(engine, "さんしろう") == [rid]
    generation = (tmp_path / "index" / "current").read_text()
    meta = tmp_path / "index" / generation / "shoka.json"
    meta.write_text(meta.read_text().replace('"analyzer": "', '"analyzer": "old-'))
    assert engine.needs_rebuild()
    jobs.apply_search_outbox()
    assert not engine.needs_rebuild() and (tmp_path / "index" / "current").read_text() != generation
    assert _ids(TantivyEngine(tmp_path / "index"), "さんしろう") == [rid]
