"""The query model and the search-box parser: any input gives a query or a clear error, never a crash."""

from __future__ import annotations

import pytest

from indexer.query import (
    MAX_PAGE_SIZE,
    Bool,
    QueryError,
    SearchRequest,
    Text,
    parse_keywords,
    relax_to_or,
)


def test_words_are_anded() -> None:
    assert parse_keywords("夏目 漱石") == Bool(must=(Text("any", "夏目"), Text("any", "漱石")))


def test_single_word() -> None:
    assert parse_keywords("こころ", "title") == Text("title", "こころ")


def test_ideographic_space_separates_words() -> None:
    assert parse_keywords("夏目\u3000漱石") == Bool(must=(Text("any", "夏目"), Text("any", "漱石")))


def test_or_and_not() -> None:
    q = parse_keywords("猫 OR 犬 -子猫")
    assert q == Bool(must=(Bool(should=(Text("any", "猫"), Text("any", "犬"))),), must_not=(Text("any", "子猫"),))
    assert parse_keywords("猫 NOT 犬") == Bool(must=(Text("any", "猫"),), must_not=(Text("any", "犬"),))


def test_quoted_phrase_and_unbalanced_quote() -> None:
    assert parse_keywords('"吾輩は猫である" 夏目') == Bool(must=(Text("any", "吾輩は猫である", "phrase"),
                                                              Text("any", "夏目")))
    assert parse_keywords('"吾輩は 猫') == Text("any", "吾輩は 猫", "phrase")


@pytest.mark.parametrize("text", ["", "   ", '"', '""', "OR", "AND OR NOT", "-猫", "NOT 犬"])
def test_nothing_searchable(text: str) -> None:
    assert parse_keywords(text) is None


@pytest.mark.parametrize("text", ["!!!", "（）「」", "*?~^", "\\", "a" * 10_000, "図書 " * 5_000])
def test_hostile_input_is_bounded(text: str) -> None:
    q = parse_keywords(text)
    if isinstance(q, Bool):
        assert len(q.must) <= 32
    elif q is not None:
        assert len(q.text) <= 500  # type: ignore[union-attr]


def test_relax_to_or() -> None:
    assert relax_to_or(parse_keywords("猫 犬")) == Bool(should=(Text("any", "猫"), Text("any", "犬")))
    assert relax_to_or(Text("any", "猫")) == Text("any", "猫")


@pytest.mark.parametrize("kwargs,param", [({"size": 0}, "size"), ({"size": MAX_PAGE_SIZE + 1}, "size"),
                                          ({"size": 100_000}, "size"), ({"page": 0}, "page"),
                                          ({"sort": "random"}, "sort"), ({"facets": ("colour",)}, "facets")])
def test_bad_request_values_name_the_parameter(kwargs: dict, param: str) -> None:
    with pytest.raises(QueryError) as err:
        SearchRequest(**kwargs)
    assert err.value.param == param and str(kwargs[param]).strip("(),'") in str(err.value)


def test_unknown_field() -> None:
    with pytest.raises(QueryError):
        parse_keywords("x", "colour")
