"""The transactional outbox keeps the index in step with PostgreSQL; a rebuild switches generations."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.audit import Actor
from api.items import service as items
from indexer import tantivy_engine
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


TITLES = [("門", "モン"), ("坊っちゃん", "ボッチャン"), ("草枕", "クサマクラ"), ("吾輩は猫である", None),
          ("それから", "ソレカラ"), ("三四郎", None), ("虞美人草", "グビジンソウ")]


def _catalogue(conn: psycopg.Connection) -> list[int]:
    ids = [_record(conn, f"c{i}", title, reading) for i, (title, reading) in enumerate(TITLES)]
    items.create_item(conn, ACTOR, items.NewItem(ids[1], "3000101", "east", "book"))
    items.create_item(conn, ACTOR, items.NewItem(ids[1], "3000102", "main", "book"))
    items.create_item(conn, ACTOR, items.NewItem(ids[3], "3000103", "main", "book"))
    conn.execute("UPDATE item SET status = 'on_loan' WHERE barcode = '3000103'")
    return ids


def _everything(engine: TantivyEngine) -> object:
    result = engine.search(SearchRequest(facets=("branch", "available"), size=100))
    return sorted(h.id for h in result.hits), result.total, sorted(result.facets["branch"]), \
        sorted(result.facets["available"])


def test_rebuild_in_analysis_workers_gives_the_same_index(seeded: psycopg.Connection, tmp_path: Path) -> None:
    ids = _catalogue(seeded)
    one, pool = TantivyEngine(tmp_path / "one"), TantivyEngine(tmp_path / "pool")
    assert rebuild(seeded, one, workers=1) == len(TITLES)
    seen: list[int] = []
    assert rebuild(seeded, pool, seen.append, workers=2, batch=2) == len(TITLES)  # 4 batches over 2 processes
    assert seen == [2, 4, 6, 7]
    expected = (sorted(ids), 7, [("east", 1), ("main", 2)], [("false", 6), ("true", 1)])
    assert _everything(one) == _everything(pool) == expected
    for engine in (one, pool):
        assert _ids(engine, "ぼっちゃん") == [ids[1]]
        assert _ids(engine, "わがはい") == [ids[3]]  # reading generated by Sudachi at index time
        assert _ids(engine, "ねこ", filters=(Keyword("branch", "main"),)) == [ids[3]]


def test_search_answers_from_the_old_generation_until_the_switch(seeded: psycopg.Connection, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tantivy_engine, "RELOAD_EVERY", 0.0)  # the searcher looks for a switch on every search
    ids = _catalogue(seeded)
    engine = TantivyEngine(tmp_path / "index")
    apply_outbox(seeded, engine)
    searcher = TantivyEngine(tmp_path / "index")  # another process's engine, as the OPAC has
    during: list[list[int]] = []
    changed: list[int] = []

    def meanwhile(done: int) -> None:
        during.append(_ids(searcher, "くさまくら"))
        if not changed:  # a record edited and one added while the rebuild runs reach the new generation
            with seeded.transaction():
                seeded.execute("UPDATE bib_record SET data = data || '{\"title\": \"草枕 改版\"}' WHERE id = %s",
                               (ids[2],))
                seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (ids[2],))
            changed.append(_record(seeded, "late", "明暗", "メイアン"))

    before = (tmp_path / "index" / "current").read_text()
    rebuild(seeded, engine, meanwhile, workers=2, batch=3)
    assert during == [[ids[2]]] * 3 and (tmp_path / "index" / "current").read_text() != before
    assert _ids(searcher, "めいあん") == changed
    assert _ids(searcher, "改版") == [ids[2]]


def _generations(engine: TantivyEngine) -> list[str]:
    return sorted(p.name for p in engine.index_dir.iterdir() if p.is_dir())


def test_replaced_generations_are_deleted_after_the_grace_period(seeded: psycopg.Connection, engine: TantivyEngine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _record(seeded, "1", "それから", "ソレカラ")
    rebuild(seeded, engine, workers=1)
    first = engine._current_name()
    rebuild(seeded, engine, workers=1)
    second = engine._current_name()
    # Within the grace period the replaced generation stays: another process may still read it.
    assert _generations(engine) == sorted([first, second])
    assert engine.prune_generations() == []
    assert (engine.index_dir / str(first) / "retired").exists()

    monkeypatch.setattr(tantivy_engine, "RETIRED_GRACE", 0.0)
    rebuild(seeded, engine, workers=1)  # prunes at the end: both earlier generations are gone
    assert _generations(engine) == [engine._current_name()]
    assert _ids(engine, "それから")


def test_an_interrupted_rebuild_leaves_no_generation_behind(seeded: psycopg.Connection, engine: TantivyEngine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _record(seeded, "1", "それから", "ソレカラ")
    rebuild(seeded, engine, workers=1)
    before = _generations(engine)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(tantivy_engine.BulkWriter, "add", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        rebuild(seeded, engine, workers=1)
    assert _generations(engine) == before
    assert _ids(engine, "それから")  # searches still answer from the generation in use
