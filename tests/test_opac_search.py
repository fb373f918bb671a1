"""OPAC search pages and the public JSON API over a real index and the OPAC's read-only role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.config import Settings
from indexer.sync import apply_outbox
from indexer.tantivy_engine import TantivyEngine

BOOKS = [
    ("1", "それから", "ソレカラ", {"authors": [{"name": "夏目, 漱石", "reading": "ナツメ, ソウセキ"}],
                                 "publisher": "岩波書店", "year": 1989, "ndc": "913.6"}, ["9784003101056"]),
    ("2", "吾輩は猫である", "ワガハイ ワ ネコ デ アル", {"authors": [{"name": "夏目, 漱石"}], "year": 2003,
                                                   "ndc": "913.6"}, []),
    ("3", "圖書館の歴史", None, {"year": 1950, "ndc": "010.2"}, []),
]


@pytest.fixture
def opac(seeded: psycopg.Connection, settings: Settings, opac_db_url: str, redis_url: str,
         tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, int]]]:
    from opac.app import create_opac_app

    ids = {}
    with seeded.transaction():
        for number, title, reading, extra, isbns in BOOKS:
            data = {"title": title, "title_reading": reading, "isbns": isbns, **extra}
            row = seeded.execute(
                "INSERT INTO bib_record (source, control_number, title, title_reading, pub_year, ndc, isbns, data) "
                "VALUES ('JTNDL', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (number, title, reading, extra.get("year"), extra.get("ndc"), isbns, Jsonb(data))).fetchone()
            ids[title] = row["id"]
            seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (row["id"],))
        seeded.execute("INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number, "
                       "status) SELECT %s, '4000001', id, id, 'book', '913.6/ナ', 'available' FROM branch "
                       "WHERE code = 'main'", (ids["それから"],))
        seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (ids["それから"],))
    local = replace(settings, data_dir=tmp_path)
    apply_outbox(seeded, TantivyEngine(local.index_dir))
    with TestClient(create_opac_app(local, opac_db_url, redis_url)) as client:
        yield client, ids


def test_search_page_by_hiragana_old_kanji_and_isbn10(opac: tuple[TestClient, dict[str, int]]) -> None:
    client, ids = opac
    for query, title in [("それから", "それから"), ("そうせき ねこ", "吾輩は猫である"), ("図書館", "圖書館の歴史"),
                         ("4-00-310105-7", "それから"), ("978-4-00-310105-6", "それから")]:
        page = client.get("/search", params={"q": query})
        assert page.status_code == 200, query
        first = page.text.split('<ol class="hits"', 1)[1].split("</li>", 1)[0]
        assert f'href="/records/{ids[title]}"' in first, query


def test_api_search_shape_and_fields(opac: tuple[TestClient, dict[str, int]]) -> None:
    client, ids = opac
    body = client.get("/api/v1/search", params={"author": "漱石", "sort": "oldest"}).json()
    assert body["total"] == 2 and body["page"] == 1 and body["size"] == 20
    assert [h["id"] for h in body["hits"]] == [ids["それから"], ids["吾輩は猫である"]]
    hit = body["hits"][0]
    assert set(hit) == {"id", "title", "title_reading", "authors", "publisher", "year", "isbn", "ndc", "available"}
    assert hit["available"] is True and hit["isbn"] == "9784003101056" and hit["authors"] == ["夏目, 漱石"]
    assert {"value": "main", "count": 1} in body["facets"]["branch"]
    only = client.get("/api/v1/search", params={"author": "漱石", "available": "true"}).json()
    assert [h["id"] for h in only["hits"]] == [ids["それから"]]
    assert client.get("/api/v1/search", params={"ndc": "913", "year_from": 2000}).json()["total"] == 1


def test_no_hits_retry_with_or_and_say_so(opac: tuple[TestClient, dict[str, int]]) -> None:
    client, _ = opac
    body = client.get("/api/v1/search", params={"q": "それから 量子力学"}).json()
    assert body["retried"] == "or" and body["total"] == 1
    page = client.get("/search", params={"q": "それから 量子力学"})
    assert "いずれかの語を含む資料を表示しています" in page.text


@pytest.mark.parametrize("params,field", [({"size": "100000"}, "size"), ({"page": "0"}, "page"),
                                          ({"year_from": "abc"}, "year_from"), ({"isbn": "12345"}, "isbn"),
                                          ({"sort": "random"}, "sort"), ({"page": "9999", "q": "x"}, "page")])
def test_bad_parameters_get_a_clear_answer(opac: tuple[TestClient, dict[str, int]], params: dict, field: str) -> None:
    client, _ = opac
    r = client.get("/api/v1/search", params=params)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    page = client.get("/search", params={"q": "本", **params})
    assert page.status_code == 422 and field in page.text


@pytest.mark.parametrize("query", ["", "   ", '"それから', "!!!", "()", "*", "ab" * 5_000, "本" * 3_000, "-", "OR"])
def test_odd_queries_never_fail(opac: tuple[TestClient, dict[str, int]], query: str) -> None:
    client, _ = opac
    assert client.get("/search", params={"q": query}).status_code == 200
    assert client.get("/api/v1/search", params={"q": query}).status_code == 200


def test_record_page_and_api_show_live_holdings(opac: tuple[TestClient, dict[str, int]],
                                                seeded: psycopg.Connection) -> None:
    client, ids = opac
    page = client.get(f"/records/{ids['それから']}")
    assert page.status_code == 200 and "中央図書館" in page.text and "913.6/ナ" in page.text and "貸出可" in page.text
    seeded.execute("UPDATE item SET status = 'on_loan' WHERE barcode = '4000001'")
    record = client.get(f"/api/v1/records/{ids['それから']}").json()
    assert record["holdings"] == [{"branch": "main", "branch_name": "中央図書館", "location": None,
                                   "call_number": "913.6/ナ", "status": "on_loan", "due_date": None}]
    assert client.get("/api/v1/records/999999").status_code == 404
    assert client.get("/records/999999").status_code == 404


def test_new_arrivals_lists_the_newest_records_first(opac: tuple[TestClient, dict[str, int]],
                                                     seeded: psycopg.Connection, tmp_path: Path) -> None:
    client, ids = opac
    newest = ids["圖書館の歴史"]
    seeded.execute("UPDATE bib_record SET created_at = now() + interval '1 day' WHERE id = %s", (newest,))
    seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (newest,))
    apply_outbox(seeded, TantivyEngine(tmp_path / "index"))
    page = client.get("/new")
    assert page.status_code == 200 and "新着資料" in page.text
    first = page.text.split('<ol class="hits"', 1)[1].split("</li>", 1)[0]
    assert f'href="/records/{newest}"' in first
    assert "New arrivals" in client.get("/new?lang=en").text
    assert 'href="/new"' in client.get("/").text


def test_result_list_columns_follow_every_write_of_the_record(seeded: psycopg.Connection) -> None:
    from api.audit import Actor
    from api.catalog.service import update_record
    from opac.search import load_summaries

    data = {"title": "門", "authors": [{"name": "夏目, 漱石"}, {"name": ""}, {"name": "森, 鷗外", "role": "編"}],
            "publisher": "春陽堂", "links": [{"url": "https://www.aozora.gr.jp/cards/000148/card785.html"}]}
    with seeded.transaction():
        rid = seeded.execute("INSERT INTO bib_record (source, control_number, title, data) "
                             "VALUES ('JTNDL', 'L1', '門', %s) RETURNING id", (Jsonb(data),)).fetchone()["id"]
        odd = seeded.execute("INSERT INTO bib_record (source, control_number, title, data) "
                             "VALUES ('JTNDL', 'L2', '無名', %s) RETURNING id",
                             (Jsonb({"title": "無名", "authors": {"name": "x"}, "links": []}),)).fetchone()["id"]
    first, second = load_summaries(seeded, [rid, odd])
    assert (first["authors"], first["publisher"], first["links"]) == (
        ["夏目, 漱石", "森, 鷗外"], "春陽堂", data["links"])
    assert (second["authors"], second["publisher"], second["links"]) == ([], None, [])
    update_record(seeded, Actor.cli(), rid, {"publisher": "岩波書店"})
    assert load_summaries(seeded, [rid])[0]["publisher"] == "岩波書店"


def test_a_search_request_holds_an_engine_slot_through_its_page_query(seeded: psycopg.Connection,
                                                                      tmp_path: Path) -> None:
    """One slot per request, the PostgreSQL page query included (opac/search.py); the engine's own search
    takes it again inside without waiting for itself."""
    from indexer.query import SearchRequest, Text
    from opac.search import search

    with seeded.transaction():
        rid = seeded.execute("INSERT INTO bib_record (source, control_number, title, data) VALUES "
                             "('JTNDL', 'S1', '門', '{\"title\": \"門\"}') RETURNING id").fetchone()["id"]
        seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (rid,))
    engine = TantivyEngine(tmp_path / "index", slots=1)
    apply_outbox(seeded, engine)
    free_during_page: list[int] = []

    class Watched:
        def execute(self, *args: object, **kwargs: object) -> object:
            free_during_page.append(engine.slots._free)
            return seeded.execute(*args, **kwargs)  # type: ignore[arg-type]

    outcome = search(Watched(), engine, SearchRequest(query=Text("title", "門")))  # type: ignore[arg-type]
    assert [r["id"] for r in outcome.records] == [rid]
    assert free_during_page == [0]
    assert engine.slots._free == 1


def test_result_list_availability_from_the_engine_or_else_from_the_items(seeded: psycopg.Connection) -> None:
    """The engine's word when it gave one for every hit (the index: within 2 s of a loan); the items
    otherwise."""
    from opac.search import load_summaries

    with seeded.transaction():
        rid = seeded.execute("INSERT INTO bib_record (source, control_number, title, data) VALUES "
                             "('JTNDL', 'A1', '門', '{\"title\": \"門\"}') RETURNING id").fetchone()["id"]
        other = seeded.execute("INSERT INTO bib_record (source, control_number, title, data) VALUES "
                               "('JTNDL', 'A2', '心', '{\"title\": \"心\"}') RETURNING id").fetchone()["id"]
        seeded.execute("INSERT INTO item (record_id, barcode, branch_id, current_branch_id, item_type, call_number, "
                       "status) SELECT %s, '4000091', id, id, 'book', '913.6/ナ', 'available' FROM branch "
                       "WHERE code = 'main'", (rid,))
    live = [r["available"] for r in load_summaries(seeded, [rid, other])]
    assert live == [True, False]
    assert [r["available"] for r in load_summaries(seeded, [rid, other], {rid: False, other: True})] == [False, True]
    assert [r["available"] for r in load_summaries(seeded, [rid, other], {rid: False, other: None})] == live


def test_a_loan_reaches_the_result_list_through_the_index(opac: tuple[TestClient, dict[str, int]],
                                                          seeded: psycopg.Connection, settings: Settings,
                                                          tmp_path: Path) -> None:
    client, ids = opac

    def shown() -> bool:
        hits = client.get("/api/v1/search", params={"q": "それから"}).json()["hits"]
        return next(h["available"] for h in hits if h["id"] == ids["それから"])

    assert shown() is True
    with seeded.transaction():
        seeded.execute("UPDATE item SET status = 'on_loan' WHERE record_id = %s", (ids["それから"],))
        seeded.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (ids["それから"],))
    apply_outbox(seeded, TantivyEngine(replace(settings, data_dir=tmp_path).index_dir))
    deadline = __import__("time").monotonic() + 10
    while shown() and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.1)  # the OPAC's engine looks for a new commit every 0.5 s
    assert shown() is False


def test_result_page_words_in_each_language(opac: tuple[TestClient, dict[str, int]]) -> None:
    """Availability and facet headings are translated once a page (search.html) and still follow the language."""
    client, _ = opac
    ja = client.get("/search?q=図書館").text
    en = client.get("/search?q=図書館&lang=en").text
    hits = en.split('<ol class="hits"', 1)[1].split("</ol>", 1)[0]
    assert hits.count("<li>") >= 1 and hits.count("<li>") == hits.count("Available") + hits.count("On loan or not held")
    assert "<h2>Availability</h2>" in en and "<h2>貸出状況</h2>" in ja
    assert "貸出可" not in hits
