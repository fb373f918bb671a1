"""tantivy's two ways of counting facets give the same answer: a search with few hits is evaluated once and its
facets are counted from the hits' `facet_key` values; a broad one is counted by tantivy's aggregation. When a
key cannot be trusted (a value that cannot be keyed, two sets with one key) the aggregation counts, and a
generation built before the keys existed keeps answering until the rebuild switches."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from indexer import tantivy_engine
from indexer.document import build
from indexer.query import FACETS, Keyword, Range, SearchRequest, SearchResult, parse_keywords
from indexer.tantivy_engine import TantivyEngine, build_schema, facet_set
from tests.test_search_conformance import RECORDS

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
MORE = [
    (10, {"title": "Cat's cradle", "language": "eng", "year": 1963, "ndc": "933.7"}, [("east", "available")], "book"),
    (11, {"title": "猫の歌", "language": "jpn", "year": 2003, "ndc": "911.5"}, [("main", "on_loan")], "sound"),
    (12, {"title": "猫と暮らす", "year": 2003}, [("main", "available"), ("east", "on_loan")], "video"),
    (13, {"title": "猫の事務所", "year": 1990, "ndc": "913.6", "language": "jpn"},
     [("west", "available"), ("main", "available"), ("east", "available")], "book"),
    (14, {"title": "猫の手帖", "language": "jpn", "year": 2003, "ndc": "911.56"}, [("main", "on_loan")], "sound"),
]
SEARCHES = [SearchRequest(query=None, facets=FACETS), SearchRequest(query=parse_keywords("猫"), facets=FACETS),
            SearchRequest(query=parse_keywords("夏目"), facets=FACETS, sort="newest"),
            SearchRequest(query=parse_keywords("図書館 OR 猫"), facets=("branch", "year"), size=2, page=2),
            SearchRequest(query=parse_keywords("猫"), filters=(Keyword("branch", "main"),), facets=FACETS),
            SearchRequest(query=None, filters=(Range("year", 2000, 2010),), facets=FACETS, sort="title"),
            SearchRequest(query=parse_keywords("存在しない言葉"), facets=FACETS)]


def documents() -> list[dict[str, Any]]:
    return ([build(rid, data, holdings, WHEN) for rid, data, holdings in RECORDS] +
            [build(rid, data, holdings, WHEN, material_type=mt) for rid, data, holdings, mt in MORE])


def plain(result: SearchResult) -> tuple[int, list[tuple[int, float]], dict[str, list[tuple[str, int]]]]:
    return result.total, [(h.id, round(h.score, 4)) for h in result.hits], result.facets


@pytest.fixture
def engine(tmp_path: Path) -> TantivyEngine:
    e = TantivyEngine(tmp_path / "index")
    e.write(documents())
    return e


def by_aggregation(engine: TantivyEngine, request: SearchRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        m.setattr(tantivy_engine, "FEW_HITS", -1)  # never few: the aggregation counts
        return plain(engine.search(request))


def old_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int) -> TantivyEngine:
    """An engine over a generation written as the engine of schema `version` wrote it (the documents in it)."""
    with monkeypatch.context() as m:
        m.setattr(tantivy_engine, "SCHEMA_VERSION", version)
        old = TantivyEngine(tmp_path / "index")
        old.schema = build_schema(version)
        old.write(documents())
    engine = TantivyEngine(tmp_path / "index")
    assert engine.needs_rebuild()
    return engine


@pytest.mark.parametrize("request_", SEARCHES, ids=range(len(SEARCHES)))
def test_few_hits_count_what_the_aggregation_counts(engine: TantivyEngine, request_: SearchRequest,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert plain(engine.search(request_)) == by_aggregation(engine, request_, monkeypatch)


def no_aggregation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the aggregation path fail, to show an answer came from the facet keys."""
    monkeypatch.setattr(tantivy_engine, "COUNTING_FACET", "no such field")


def test_the_counts_themselves(engine: TantivyEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    no_aggregation(monkeypatch)
    result = engine.search(SearchRequest(query=parse_keywords("猫"), facets=FACETS))
    # 吾輩は猫である, 猫の歌, 猫と暮らす, 猫の事務所, 猫の手帖 (Cat's cradle is not a 猫); 猫の歌 and 猫の手帖
    # have the same facet values, so one key counts twice.
    assert result.total == 5
    assert result.facets == {
        "branch": [("main", 5), ("east", 2), ("west", 1)],
        "available": [("true", 3), ("false", 2)],
        "material_type": [("book", 2), ("sound", 2), ("video", 1)],  # a tie: by value
        "ndc_class": [("9", 4)],  # 猫と暮らす has no NDC
        "year": [("2003", 4), ("1990", 1)],
        "language": [("jpn", 3)],  # 吾輩は猫である and 猫と暮らす have none
    }


def test_a_page_beyond_the_few_hits_collected(engine: TantivyEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tantivy_engine, "FEW_HITS", 2)
    for page in (1, 2, 3):
        request = SearchRequest(query=parse_keywords("猫 OR 夏目"), facets=FACETS, size=2, page=page)
        assert plain(engine.search(request)) == by_aggregation(engine, request, monkeypatch)
    assert [h.id for h in engine.search(SearchRequest(query=parse_keywords("猫 OR 夏目"), size=2, page=3,
                                                      facets=FACETS)).hits] != []


def test_values_first_seen_after_a_commit(engine: TantivyEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    engine.search(request)  # the keys known so far are remembered
    engine.write([build(20, {"title": "猫町", "language": "fre"}, [("kita", "available")], WHEN, "map")])
    with monkeypatch.context() as m:
        no_aggregation(m)
        result = engine.search(request)
    assert ("kita", 1) in result.facets["branch"] and ("fre", 1) in result.facets["language"]
    assert ("map", 1) in result.facets["material_type"]
    assert plain(result) == by_aggregation(engine, request, monkeypatch)


def test_a_value_that_cannot_be_keyed_is_counted_by_aggregation(engine: TantivyEngine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    doc = build(21, {"title": "猫の本"}, [("main\x1fx", "available")], WHEN)
    assert facet_set(doc) is None
    engine.write([doc])
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    result = engine.search(request)
    assert result.total == 6 and ("main\x1fx", 1) in result.facets["branch"]
    assert plain(result) == by_aggregation(engine, request, monkeypatch)


def test_two_sets_with_one_key_are_counted_by_aggregation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tantivy_engine, "facet_key", lambda text: 0 if text is None else 7)
    engine = TantivyEngine(tmp_path / "index")
    engine.write(documents())
    result = engine.search(SearchRequest(query=parse_keywords("猫"), facets=FACETS))
    assert result.total == 5 and result.facets["branch"] == [("main", 5), ("east", 2), ("west", 1)]


def test_a_generation_from_before_the_keys_keeps_answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = old_generation(tmp_path, monkeypatch, 1)  # the engine as it was: schema 1, no facet keys
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    assert engine.search(request).total == 5
    # The worker goes on writing changes into it until the rebuild switches.
    engine.write([build(22, {"title": "猫町"}, [("main", "available")], WHEN)])
    result = engine.search(request)
    assert result.total == 6 and result.facets["branch"][0] == ("main", 6)


@pytest.mark.parametrize("version", [1, 2])
def test_a_generation_from_before_the_id_keys_keeps_answering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              version: int) -> None:
    engine = old_generation(tmp_path, monkeypatch, version)  # ids read from the `id` column
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    before = sorted(h.id for h in engine.search(request).hits)
    engine.write([build(22, {"title": "猫町"}, [("main", "available")], WHEN)])
    assert sorted(h.id for h in engine.search(request).hits) == sorted([*before, 22])
    assert len(before) == 5


def test_hits_carry_their_record_ids_through_the_id_key(tmp_path: Path) -> None:
    engine = TantivyEngine(tmp_path / "index")
    big = [2**63 - 1, 2**40 + 7, 123_456_789_012]
    engine.write([build(i, {"title": f"猫の記録 {n}"}, [], WHEN) for n, i in enumerate(big)])
    assert sorted(h.id for h in engine.search(SearchRequest(query=parse_keywords("記録"))).hits) == sorted(big)


@pytest.mark.parametrize("record_id", [0, 1, 2, 3, 1000, 3_650_000, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1])
def test_id_keys_map_back_to_their_ids(record_id: int) -> None:
    key = tantivy_engine.id_key(record_id)
    assert 0 <= key < 2**64 and tantivy_engine.id_of_key(key) == record_id
    assert record_id < 2 or key != record_id  # mixed, so tantivy does not store them as a linear sequence


@pytest.mark.parametrize("request_", SEARCHES)
def test_branches_counted_through_branch_one_as_through_branch(engine: TantivyEngine, request_: SearchRequest,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The broad searches' branch counts (one branch from `branch_one`, several from `branch` under a filter)
    are those of the multi-valued `branch` column alone, for records with no, one and several branches."""
    engine._open()
    with monkeypatch.context() as m:
        m.setattr(engine, "_combined", False)  # as a schema 4 generation counts
        m.setattr(engine, "_open", lambda: engine._index)
        split = by_aggregation(engine, request_, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(engine, "_combined", False)
        m.setattr(engine, "_branch_one", False)
        m.setattr(engine, "_open", lambda: engine._index)
        whole = by_aggregation(engine, request_, monkeypatch)
    assert split == whole


def test_branch_one_marks_none_one_and_several() -> None:
    assert [tantivy_engine.branch_one(d) for d in documents() if d["id"] in (5, 10, 12)] == [
        tantivy_engine.ONE_NONE, "east", tantivy_engine.ONE_SEVERAL]


def test_a_rebuilt_generation_counts_as_one_written_by_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rebuild's bulk path (JSON documents) and the changes' path (documents field by field) give the
    same branch_one values, so the same counts."""
    changed = TantivyEngine(tmp_path / "changed")
    changed.write(documents())
    rebuilt = TantivyEngine(tmp_path / "rebuilt")
    generation = rebuilt.new_generation()
    writer = rebuilt.bulk_writer(generation)
    writer.add(tantivy_engine.bulk_encode(documents()))
    writer.commit()
    writer.close()
    rebuilt.switch_to(generation)
    for request in SEARCHES:
        assert by_aggregation(rebuilt, request, monkeypatch) == by_aggregation(changed, request, monkeypatch)


def test_a_generation_from_before_branch_one_counts_branches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = old_generation(tmp_path, monkeypatch, 3)  # no branch_one
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    assert by_aggregation(engine, request, monkeypatch)[2]["branch"] == [("main", 5), ("east", 2), ("west", 1)]
    engine.write([build(22, {"title": "猫町"}, [("main", "available"), ("kita", "available")], WHEN)])
    assert by_aggregation(engine, request, monkeypatch)[2]["branch"] == [
        ("main", 6), ("east", 2), ("kita", 1), ("west", 1)]


def test_hits_say_whether_their_record_is_on_the_shelf(engine: TantivyEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the facet sets, for the few hits and the broad search's page alike."""
    shelf = {d["id"]: d["available"] == ["true"] for d in documents()}
    request = SearchRequest(query=parse_keywords("猫 OR 夏目 OR 國語"), facets=FACETS)
    few = engine.search(request).hits
    assert few and {h.id: h.available for h in few} == {h.id: shelf[h.id] for h in few}
    assert {True, False} <= {h.available for h in few}
    with monkeypatch.context() as m:
        m.setattr(tantivy_engine, "FEW_HITS", -1)
        broad = engine.search(request).hits
    assert [(h.id, h.available) for h in broad] == [(h.id, h.available) for h in few]


def test_hits_of_a_generation_without_facet_keys_leave_availability_to_the_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hits = old_generation(tmp_path, monkeypatch, 1).search(SearchRequest(query=parse_keywords("猫"))).hits
    assert hits and all(h.available is None for h in hits)


CAT_FACETS = {
    "branch": [("main", 5), ("east", 2), ("west", 1)],
    "available": [("true", 3), ("false", 2)],
    "material_type": [("book", 2), ("sound", 2), ("video", 1)],
    "ndc_class": [("9", 4)],
    "year": [("2003", 4), ("1990", 1)],
    "language": [("jpn", 3)],
}


def one_by_one(engine: TantivyEngine, request: SearchRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The broad search's answer with every facet aggregated on its own column (branches through branch_one)."""
    engine._open()
    with monkeypatch.context() as m:
        m.setattr(engine, "_combined", False)
        m.setattr(engine, "_open", lambda: engine._index)
        return by_aggregation(engine, request, monkeypatch)


@pytest.mark.parametrize("request_", SEARCHES, ids=range(len(SEARCHES)))
def test_combinations_counted_as_one_by_one(engine: TantivyEngine, request_: SearchRequest,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    together = by_aggregation(engine, request_, monkeypatch)
    assert together == one_by_one(engine, request_, monkeypatch)


def test_single_facets_counts_themselves(engine: TantivyEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    total, _, facets = by_aggregation(engine, SearchRequest(query=parse_keywords("猫"), facets=FACETS), monkeypatch)
    assert total == 5 and facets == CAT_FACETS
    doc = next(d for d in documents() if d["id"] == 12)  # 猫と暮らす: no NDC, no language
    assert tantivy_engine.single_facets(doc) == "true\x1fvideo\x1f\x1f"


def test_a_document_whose_single_facets_do_not_fit_is_counted_one_by_one(
        engine: TantivyEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {**build(23, {"title": "猫の図鑑", "ndc": "489"}, [("main", "available")], WHEN),
           "material_type": ["book", "video"]}
    assert tantivy_engine.single_facets(doc) == tantivy_engine.COMBINED_UNKNOWN
    engine.write([doc])
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    total, _, facets = by_aggregation(engine, request, monkeypatch)
    assert total == 6 and facets["material_type"] == [("book", 3), ("sound", 2), ("video", 2)]
    assert facets["ndc_class"] == [("9", 4), ("4", 1)]
    assert (total, facets) == one_by_one(engine, request, monkeypatch)[::2]


def test_more_combinations_than_buckets_are_counted_one_by_one(engine: TantivyEngine,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tantivy_engine, "COMBINED_BUCKETS", 1)
    total, _, facets = by_aggregation(engine, SearchRequest(query=parse_keywords("猫"), facets=FACETS), monkeypatch)
    assert total == 5 and facets == CAT_FACETS


def test_a_generation_from_before_single_facets_counts_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = old_generation(tmp_path, monkeypatch, 4)
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    assert by_aggregation(engine, request, monkeypatch)[::2] == (5, CAT_FACETS)
    engine.write([build(22, {"title": "猫町", "language": "fre"}, [("main", "available")], WHEN)])
    total, _, facets = by_aggregation(engine, request, monkeypatch)
    assert total == 6 and ("fre", 1) in facets["language"]


def test_branch_set_values() -> None:
    by_id = {d["id"]: d for d in documents()}
    assert [tantivy_engine.branch_set(by_id[i]) for i in (5, 10, 13)] == ["", "east", "east\x1emain\x1ewest"]
    assert tantivy_engine.branch_set({"branch": ["main\x1ex"]}) == tantivy_engine.COMBINED_UNKNOWN
    assert tantivy_engine.branch_set({"branch": ["_"]}) == tantivy_engine.COMBINED_UNKNOWN


def test_a_branch_set_that_does_not_fit_is_counted_one_by_one(engine: TantivyEngine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    engine.write([build(21, {"title": "猫の本"}, [("main\x1ex", "available"), ("east", "available")], WHEN)])
    request = SearchRequest(query=parse_keywords("猫"), facets=FACETS)
    total, _, facets = by_aggregation(engine, request, monkeypatch)
    assert total == 6 and facets["branch"] == [("main", 5), ("east", 3), ("main\x1ex", 1), ("west", 1)]
    assert facets["available"] == [("true", 4), ("false", 2)]  # the other combination is read as usual


def test_bulk_documents_carry_their_facet_columns() -> None:
    """The rebuild's JSON documents: facet columns remembered by combination, values as text."""
    for d in documents():
        plain = tantivy_engine._plain(d)
        key, term = tantivy_engine.facet_fields(d)
        assert (plain[tantivy_engine.FACET_KEY], plain.get(tantivy_engine.FACET_FIELD)) == (key, term)
        assert plain[tantivy_engine.BRANCH_SET] == tantivy_engine.branch_set(d)
        assert plain[tantivy_engine.SINGLE_FIELD] == tantivy_engine.single_facets(d)
        assert plain[tantivy_engine.BRANCH_ONE] == tantivy_engine.branch_one(d)
    odd = tantivy_engine._plain({"id": 7, "isbn": [9784000000000], "ndc": ["913"], "title_c": "", "year": "1999"})
    assert odd["isbn"] == ["9784000000000"] and odd["year"] == 1999 and "title_c" not in odd
