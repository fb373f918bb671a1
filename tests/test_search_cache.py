"""The tantivy engine's result cache for broad searches answers exactly what the index would: a commit,
from this process or another, empties it; results handed out cannot alter it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from indexer import tantivy_engine
from indexer.document import build
from indexer.query import Keyword, SearchRequest, parse_keywords
from indexer.tantivy_engine import TantivyEngine

WHEN = datetime(2026, 11, 1, tzinfo=UTC)


def _doc(record_id: int, title: str, ndc: str, branch: str = "main") -> dict[str, object]:
    return build(record_id, {"title": title, "ndc": ndc, "year": 2000 + record_id}, [(branch, "available")], WHEN)


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TantivyEngine:
    monkeypatch.setattr(tantivy_engine, "CACHE_MIN_HITS", 2)  # cache anything with 2 hits or more
    monkeypatch.setattr(tantivy_engine, "RELOAD_EVERY", 0.0)  # look for commits on every search
    engine = TantivyEngine(tmp_path / "index")
    engine.write([_doc(1, "門", "913.6"), _doc(2, "草枕", "913.6", "east"), _doc(3, "数学入門", "410")])
    return engine


NOVELS = SearchRequest(filters=(Keyword("ndc_class", "9"),), facets=("branch", "year"))


def test_a_repeated_broad_search_is_served_from_the_cache(engine: TantivyEngine) -> None:
    first = engine.search(NOVELS)
    assert (first.total, sorted(h.id for h in first.hits)) == (2, [1, 2])
    assert sorted(first.facets["branch"]) == [("east", 1), ("main", 1)]
    first.hits.clear()
    first.facets["branch"].append(("nowhere", 9))  # a caller changing its copy changes nothing cached
    again = engine.search(NOVELS)
    assert engine.cache_stats == (1, 1)
    assert (again.total, sorted(h.id for h in again.hits)) == (2, [1, 2])
    assert sorted(again.facets["branch"]) == [("east", 1), ("main", 1)]
    assert sorted(again.facets["year"]) == [("2001", 1), ("2002", 1)]


def test_narrow_searches_are_not_cached(engine: TantivyEngine) -> None:
    narrow = SearchRequest(query=parse_keywords("数学"))
    assert [h.id for h in engine.search(narrow).hits] == [3]
    assert [h.id for h in engine.search(narrow).hits] == [3]
    assert engine.cache_stats == (0, 2)


def test_a_commit_from_another_engine_empties_the_cache(engine: TantivyEngine) -> None:
    assert engine.search(NOVELS).total == 2
    other = TantivyEngine(engine.index_dir)  # the worker's engine, as in another process
    other.write([_doc(4, "三四郎", "913.6", "east")], deleted=[1])
    after = engine.search(NOVELS)
    assert (after.total, sorted(h.id for h in after.hits)) == (2, [2, 4])
    assert sorted(after.facets["branch"]) == [("east", 2)]
    assert engine.cache_stats == (0, 2)


def test_hits_carry_the_record_ids_in_order(engine: TantivyEngine) -> None:
    newest = engine.search(SearchRequest(filters=(Keyword("ndc_class", "9"),), sort="newest"))
    assert [h.id for h in newest.hits] == [2, 1]
    paged = engine.search(SearchRequest(sort="oldest", size=1, page=3))
    assert (paged.total, [h.id for h in paged.hits]) == (3, [3])


HEADINGS = [("夏目, 漱石", "ナツメ, ソウセキ"), ("夏目, 漱石", None), ("岩波書店", "イワナミ ショテン"),
            ("圖書館", None), ("ヴァイオリン", None), ("Mac & Office", "マック アンド オフィス"), ("・・・", None),
            ("日本の歴史", None)]


def test_remembered_heading_tokens_equal_fresh_analysis() -> None:
    from indexer.document import text_tokens

    for pair in HEADINGS:
        fresh = text_tokens([pair])
        assert text_tokens([pair], headings=True) == fresh
        assert text_tokens([pair], headings=True) == fresh  # the second time from memory
    assert text_tokens([("圖書館", None)], headings=True)["c"] == ["図書館"]
    assert text_tokens([("夏目, 漱石", None)], headings=True)["r"] == ["ナツメ", "ソウセキ"]
    together = text_tokens(HEADINGS[:3], headings=True)
    assert together["r"] == ["ナツメ", "ソウセキ"] * 2 + ["イワナミ", "シヨテン"]
