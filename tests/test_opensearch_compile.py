"""The OpenSearch query compiler (runs without a cluster): the same query model, pre-analysed tokens,
and never a query_string that would hand user input to OpenSearch's own parser."""

from __future__ import annotations

import json

from indexer.opensearch_engine import compile_request, mappings
from indexer.params import from_params
from indexer.query import Keyword, SearchRequest, Text


def _walk(obj: object) -> list[str]:
    return [obj] if isinstance(obj, str) else [k for v in (obj.values() if isinstance(obj, dict) else obj
                                                            if isinstance(obj, list) else []) for k in _walk(v)] + \
        (list(obj.keys()) if isinstance(obj, dict) else [])


def test_no_query_string_ever() -> None:
    for q in ['title:"x" OR *', "a AND (b", "夏目 漱石 -猫", '"吾輩は猫"', "\\\\", "{}"]:
        body = compile_request(from_params({"q": q, "author": q, "publisher": q}))
        keys = _walk(body)
        assert "query_string" not in keys and "simple_query_string" not in keys


def test_kana_query_matches_reading_bigrams_as_a_phrase() -> None:
    body = json.dumps(compile_request(SearchRequest(query=Text("title", "わがはいはねこ"))), ensure_ascii=False)
    assert '"title_rb"' in body and "ワガ" in body and "ワネ" in body  # は folded to ワ for the bigram field


def test_old_kanji_is_normalised_before_it_reaches_the_cluster() -> None:
    body = json.dumps(compile_request(SearchRequest(query=Text("title", "圖書館"))), ensure_ascii=False)
    assert "図書" in body and "圖" not in body


def test_filters_facets_sort_and_paging() -> None:
    body = compile_request(SearchRequest(query=None, filters=(Keyword("branch", "main"),),
                                         facets=("branch", "year"), sort="oldest", page=3, size=10))
    assert body["from"] == 20 and body["size"] == 10
    assert body["query"]["bool"]["filter"] == [{"term": {"branch": "main"}}]
    assert set(body["aggs"]) == {"branch", "year"} and body["sort"] == [{"year": {"order": "asc", "missing": "_last"}}]


def test_mapping_uses_whitespace_analyzer_for_every_token_field() -> None:
    props = mappings()["mappings"]["properties"]
    token_fields = [k for k in props if k.rsplit("_", 1)[-1] in ("c", "a", "r", "rb", "bg")]
    assert len(token_fields) == 25 and all(props[k]["analyzer"] == "whitespace" for k in token_fields)
    assert props["isbn"] == {"type": "keyword"} and mappings()["mappings"]["dynamic"] == "strict"
