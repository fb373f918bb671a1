"""The tantivy renderer flattens nested alternatives into one OR (the shape tantivy scores fastest);
that must change neither which records match nor their scores, so ranking stays the plan's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tantivy import Occur, Query

from indexer.document import build
from indexer.plan import AllOf, AnyOf, Clause, Phrase, Term
from indexer.query import Bool, Keyword, SearchRequest, Text, parse_keywords
from indexer.tantivy_engine import TantivyEngine, _alternatives
from tests.test_search_conformance import RECORDS

MORE = [
    (6, {"title": "日本の歴史 図書館の歴史", "authors": [{"name": "日本, 太郎", "reading": "ニホン, タロウ"}],
         "publisher": "図書館協会", "year": 2010, "ndc": "010.2",
         "subjects": [{"term": "図書館", "reading": "トショカン"}], "series": [{"title": "歴史の本"}]},
     [("main", "available")]),
    (7, {"title": "図書館", "publisher": "日本図書館協会", "year": 1999, "ndc": "010"}, [("east", "available")]),
    (8, {"title": "としょかんのほん", "year": 2020, "ndc": "016"}, [("main", "on_loan")]),
]


class NestedEngine(TantivyEngine):
    """The renderer before flattening: every AnyOf and AllOf its own boolean query."""

    def _render(self, clause: Clause) -> Any:
        if isinstance(clause, AllOf):
            return Query.boolean_query([(Occur.Must, self._render(c)) for c in clause.clauses])
        if isinstance(clause, AnyOf):
            if not clause.clauses:
                return Query.empty_query()
            return Query.boolean_query([(Occur.Should, self._render(c)) for c in clause.clauses])
        return super()._render(clause)


@pytest.fixture
def engines(tmp_path: Path) -> tuple[TantivyEngine, TantivyEngine]:
    flat = TantivyEngine(tmp_path / "index")
    docs = [build(rid, data, holdings, datetime(2026, 1, rid, tzinfo=UTC)) for rid, data, holdings in RECORDS + MORE]
    flat.write(docs)
    return flat, NestedEngine(tmp_path / "index")


@pytest.mark.parametrize("query", [
    Text("any", "図書館"), Text("any", "日本の歴史"), Text("any", "としょかん"), Text("any", "ナツメ"),
    Text("title", "猫"), Text("title", "図書館の歴史", "phrase"), Text("author", "夏目漱石"),
    Text("any", "ヴァイオリン"), Text("any", "圖書館"), Text("title", "図書", "prefix"),
    parse_keywords("図書館 OR 猫"), parse_keywords("歴史 -日本"), parse_keywords('"図書館の歴史" 日本'),
    Bool(must=(Text("any", "図書館"),), must_not=(Keyword("branch", "east"),)),
])
def test_flattening_keeps_the_hits_and_their_scores(engines: tuple[TantivyEngine, TantivyEngine],
                                                     query: Any) -> None:
    flat, nested = engines
    request = SearchRequest(query=query, size=50)
    got, want = flat.search(request), nested.search(request)
    assert got.total == want.total
    assert [h.id for h in got.hits] == [h.id for h in want.hits]
    assert [h.score for h in got.hits] == pytest.approx([h.score for h in want.hits], rel=1e-5)


def test_flattening_at_least_one_query_had_hits(engines: tuple[TantivyEngine, TantivyEngine]) -> None:
    # The comparison above means something only if the queries find records.
    flat, _ = engines
    assert flat.search(SearchRequest(query=Text("any", "図書館"))).total >= 3


def test_alternatives_lift_nested_ors_and_one_clause_ands() -> None:
    a, b, c = Term("title_c", "a"), Term("title_a", "b"), Phrase("title_bg", ("cd", "de"))
    both = AllOf((a, b))
    nested = AnyOf((AllOf((AnyOf((a, b)),)), AnyOf((c, AnyOf((both,)))), AnyOf(())))
    assert _alternatives(nested) == [a, b, c, both]


def test_an_or_of_nothing_matches_nothing(engines: tuple[TantivyEngine, TantivyEngine]) -> None:
    flat, _ = engines
    query = flat._render(AnyOf((AnyOf(()), AllOf((AnyOf(()),)))))
    assert flat._open().searcher().search(query, 10).hits == []
