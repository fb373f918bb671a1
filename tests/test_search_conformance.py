"""Conformance: the same cases on every engine (tantivy always; OpenSearch when OPENSEARCH_URL is
set): readings, 表記ゆれ, old kanji, partial matches, filters, facets, sorting, paging, replacement
and generations."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from indexer.document import build
from indexer.query import Bool, Keyword, QueryError, Range, SearchRequest, Text, parse_keywords
from indexer.tantivy_engine import TantivyEngine

RECORDS = [
    (1, {"title": "それから", "title_reading": "ソレカラ",
         "authors": [{"name": "夏目, 漱石", "reading": "ナツメ, ソウセキ"}],
         "publisher": "岩波書店", "year": 1989, "ndc": "913.6", "isbns": ["9784003101056"], "language": "jpn"},
     [("main", "available")]),
    (2, {"title": "図書館情報学概論", "authors": [{"name": "根本, 彰"}], "publisher": "勁草書房", "year": 2004,
         "ndc": "010", "subjects": [{"term": "図書館学", "reading": "トショカンガク"}]},
     [("main", "on_loan"), ("east", "on_loan")]),
    (3, {"title": "ヴァイオリン教本", "publisher": "音楽之友社", "year": 2015, "ndc": "763.42"},
     [("east", "available")]),
    (4, {"title": "吾輩は猫である", "title_reading": "ワガハイ ワ ネコ デ アル",
         "authors": [{"name": "夏目, 漱石", "reading": "ナツメ, ソウセキ"}], "publisher": "新潮社", "year": 2003,
         "ndc": "913.6"}, [("main", "available")]),
    (5, {"title": "國語の歴史", "year": 1950, "ndc": "810.2"}, []),
]


@pytest.fixture(params=["tantivy", "opensearch"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "tantivy":
        e: Any = TantivyEngine(tmp_path / "index")
    else:
        url = os.environ.get("OPENSEARCH_URL") or os.environ.get("SEARCH_URL")
        if not url:
            pytest.skip("OPENSEARCH_URL is not set: the OpenSearch conformance run was NOT executed "
                        "(set OPENSEARCH_URL=http://host:9200 to run it)")
        from indexer.opensearch_engine import OpenSearchEngine

        e = OpenSearchEngine(url, prefix=f"shoka-test-{uuid.uuid4().hex[:8]}")
    docs = [build(rid, data, holdings, datetime(2026, 1, rid, tzinfo=UTC)) for rid, data, holdings in RECORDS]
    e.write(docs)
    yield e
    if request.param == "opensearch":
        e.client.indices.delete(index=f"{e.prefix}-records-*")


def ids(engine: Any, query: object, **kwargs: object) -> list[int]:
    return [h.id for h in engine.search(SearchRequest(query=query, **kwargs)).hits]  # type: ignore[arg-type]


@pytest.mark.parametrize("text,expected", [
    ("それから", 1), ("ソレカラ", 1),                    # hiragana and katakana readings
    ("わがはいはねこである", 4), ("ネコ", 4),              # reading, particle は read ワ by NDL
    ("バイオリン", 3), ("ヴァイオリン", 3), ("ばいおりん", 3),  # 表記ゆれ and reading
    ("国語", 5), ("國語", 5), ("こくご", 5),               # old/new kanji, generated reading
    ("図書館", 2), ("圖書館", 2), ("情報学", 2),            # partial inside a compound
    ("国語歴史", 5), ("図書館概論", 2),                    # words typed together, apart in the title
    ("漱石", 1), ("なつめ", 1),                          # author by name and by reading
])
def test_finds_the_record(engine: Any, text: str, expected: int) -> None:
    assert expected in ids(engine, parse_keywords(text)), text


def test_kana_word_matches_its_reading_not_scattered_words(engine: Any) -> None:
    # A kana word is found by its reading or its own characters in a row, not by its Sudachi units spread over
    # the record: 犬 の 話 in another order is another title.
    when = datetime(2026, 2, 1, tzinfo=UTC)
    engine.write([build(6, {"title": "犬の話", "title_reading": "イヌ ノ ハナシ"}, [], when),
                  build(7, {"title": "話の犬", "title_reading": "ハナシ ノ イヌ"}, [], when),
                  build(8, {"title": "ぐりとぐら"}, [], when)])
    assert ids(engine, parse_keywords("いぬのはなし")) == [6]
    assert ids(engine, parse_keywords("イヌノハナシ")) == [6]
    assert ids(engine, parse_keywords("犬の話")) == [6, 7]  # kanji words: each anywhere, the phrase first
    assert ids(engine, parse_keywords("ぐりと")) == [8]


def test_and_or_not(engine: Any) -> None:
    assert ids(engine, parse_keywords("夏目 猫")) == [4]
    assert sorted(ids(engine, parse_keywords("それから OR 猫"))) == [1, 4]
    assert ids(engine, parse_keywords("漱石 -猫")) == [1]


def test_fielded_and_exact_and_prefix(engine: Any) -> None:
    assert ids(engine, Text("author", "夏目")) != [] and 2 not in ids(engine, Text("author", "夏目"))
    assert ids(engine, Text("title", "夏目")) == []
    assert ids(engine, Text("title", "それから", "exact")) == [1]
    assert ids(engine, Text("title", "それ", "exact")) == []
    assert ids(engine, Text("title", "吾輩", "prefix")) == [4]
    assert ids(engine, Text("title", "わがは", "prefix")) == [4]
    assert ids(engine, Text("subject", "としょかんがく")) == [2]


def test_filters_isbn_ndc_year_branch_availability(engine: Any) -> None:
    assert ids(engine, Keyword("isbn", "9784003101056")) == [1]
    assert sorted(ids(engine, Keyword("ndc", "913", prefix=True))) == [1, 4]
    assert sorted(ids(engine, None, filters=(Range("year", 2000, 2010),))) == [2, 4]
    assert sorted(ids(engine, None, filters=(Keyword("branch", "east"),))) == [2, 3]
    assert sorted(ids(engine, None, filters=(Keyword("available", "true"),))) == [1, 3, 4]
    assert ids(engine, Bool(must_not=(Keyword("ndc_class", "9"),)), sort="oldest") == [5, 2, 3]


def test_facets_count_matching_records(engine: Any) -> None:
    result = engine.search(SearchRequest(query=parse_keywords("夏目"), facets=("branch", "ndc_class", "available")))
    assert result.total == 2
    assert dict(result.facets["branch"]) == {"main": 2}
    assert dict(result.facets["ndc_class"]) == {"9": 2}
    assert dict(result.facets["available"]) == {"true": 2}


@pytest.mark.parametrize("facets", [(), ("ndc_class",), ("available", "year"), ("branch", "language")])
def test_total_counts_every_match_whatever_the_facets(engine: Any, facets: tuple[str, ...]) -> None:
    # tantivy takes the total from the facet aggregation when there is one: it must not depend on which.
    cases: list[tuple[Any, tuple[Any, ...], int]] = [
        (parse_keywords("夏目"), (), 2), (None, (), 5), (None, (Keyword("branch", "east"),), 2),
        (parse_keywords("図書館 OR 猫"), (), 2), (Bool(must_not=(Keyword("ndc_class", "9"),)), (), 3),
        (parse_keywords("夏目"), (Range("year", 2000, 2010),), 1), (parse_keywords("存在しない言葉"), (), 0)]
    for query, filters, expected in cases:
        result = engine.search(SearchRequest(query=query, filters=filters, facets=facets, size=1))
        assert (result.total, sorted(result.facets)) == (expected, sorted(facets)), (query, filters)
        assert len(result.hits) == min(1, expected)
    engine.write([], deleted=[5])
    assert engine.search(SearchRequest(facets=facets)).total == 4


def test_sorting_and_paging(engine: Any) -> None:
    assert ids(engine, None, sort="newest") == [3, 2, 4, 1, 5]
    assert ids(engine, None, sort="oldest", size=2, page=2) == [4, 2]
    assert ids(engine, None) == [5, 4, 3, 2, 1]  # no query: newest arrivals first
    titles = ids(engine, None, sort="title")
    assert titles.index(1) < titles.index(4)  # ソレカラ before ワガハイ
    assert ids(engine, None, page=100) == []
    with pytest.raises(QueryError):
        engine.search(SearchRequest(page=1000, size=100))


def test_replacing_and_deleting(engine: Any) -> None:
    engine.write([build(1, {"title": "門", "year": 1990}, [], datetime(2026, 2, 1, tzinfo=UTC))])
    assert ids(engine, parse_keywords("それから")) == []
    assert ids(engine, parse_keywords("門")) == [1]
    engine.write([], deleted=[1])
    assert ids(engine, parse_keywords("門")) == []
    assert engine.search(SearchRequest()).total == 4


def test_new_generation_switches_atomically(engine: Any) -> None:
    gen = engine.new_generation()
    engine.write([build(9, {"title": "こころ"}, [], datetime(2026, 3, 1, tzinfo=UTC))], generation=gen)
    assert ids(engine, parse_keywords("こころ")) == []  # still answering from the old one
    engine.switch_to(gen)
    assert ids(engine, parse_keywords("こころ")) == [9]
    assert not engine.needs_rebuild()


def test_hostile_queries_do_not_crash(engine: Any) -> None:
    for text in ["*", "(", ")", "\\", "AND", "~~~", "a:b", "title:x", "'", "🙂", "。。。", "図" * 10_000]:
        engine.search(SearchRequest(query=parse_keywords(text)))
