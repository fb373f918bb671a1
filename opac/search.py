"""Catalogue search for the OPAC pages and the public JSON API: the engine finds ids, PostgreSQL
(through the OPAC's read-only role) supplies what is shown. No patron data is read or returned."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from indexer import analysis
from indexer.query import Bool, Node, SearchRequest, SearchResult, Text, relax_to_or


@dataclass
class Outcome:
    request: SearchRequest
    result: SearchResult
    records: list[dict[str, Any]] = field(default_factory=list)
    retried: str = ""  # "" | "or" | "reading": how the no-hit retry widened the search


def _as_reading(node: Node | None) -> Node | None:
    """The no-hit retry by reading: each word searched by its reading (夏目漱石 typed with a wrong kanji)."""
    if isinstance(node, Text):
        reading = analysis.fold_reading(analysis.reading_of(node.text))
        return Text(node.field, reading, "partial") if reading else node
    if isinstance(node, Bool):
        return Bool(tuple(_as_reading(n) or n for n in node.must), tuple(_as_reading(n) or n for n in node.should),
                    node.must_not)
    return node


def search(conn: Connection[DictRow], engine: Any, request: SearchRequest) -> Outcome:
    """The hits and what the page shows of them. The whole request holds one of the engine's slots, the
    page's query included: with only the engine's part gated, requests parsing queries and reading pages
    outside it competed for the interpreter's lock with those inside, and a core sat idle a fifth of the
    time with 16 clients (docs/benchmarks.md)."""
    with engine.slots:
        return _search(conn, engine, request)


def _search(conn: Connection[DictRow], engine: Any, request: SearchRequest) -> Outcome:
    result = engine.search(request)
    outcome = Outcome(request, result)
    if result.total == 0 and request.query is not None:
        for label, widened in (("or", relax_to_or(request.query)), ("reading", _as_reading(request.query))):
            if widened is None or widened == request.query:
                continue
            retry = replace(request, query=widened)
            widened_result = engine.search(retry)
            if widened_result.total:
                outcome = Outcome(retry, widened_result, retried=label)
                break
    hits = outcome.result.hits
    outcome.records = load_summaries(conn, [h.id for h in hits], {h.id: h.available for h in hits})
    return outcome


_SUMMARY = """SELECT r.id, r.title, r.title_reading, r.pub_year, r.isbns[1] AS isbn, r.ndc, r.material_type,
                     r.list_publisher AS publisher, r.list_authors AS authors, r.list_links AS links{}
              FROM bib_record r
              WHERE r.id = ANY(%s)"""
_SUMMARY_KNOWN = _SUMMARY.format("")  # availability from the engine
_SUMMARY_LIVE = _SUMMARY.format(""",
                     EXISTS (SELECT FROM opac_holding h WHERE h.record_id = r.id AND h.status = 'available')
                         AS available""")


def load_summaries(conn: Connection[DictRow], ids: list[int],
                   available: dict[int, bool | None] | None = None) -> list[dict[str, Any]]:
    """What a result list shows, in hit order; one query for the page. The author names, publisher and links
    come from bib_record's list columns, which PostgreSQL keeps from `data` (migration 0008): reading them
    out of `data` decompressed each TOASTed record (0.41 → 0.24 ms of PostgreSQL's CPU a page at 3.65M
    records). Whether a record is on the shelf comes from `available` when the engine said so for every hit
    (the index, within 2 s of a loan or a return, as the availability filter and facet): asking the items
    cost a third of the page query's CPU (0.3-0.4 ms a search with 16 clients at 3.65M records); otherwise
    PostgreSQL answers from the items (the record page always does, live)."""
    if not ids:
        return []
    known = available is not None and all(available.get(i) is not None for i in ids)
    rows = conn.execute(_SUMMARY_KNOWN if known else _SUMMARY_LIVE, (ids,)).fetchall()
    by_id = {r["id"]: r for r in rows}
    out = []
    for i in ids:
        r = by_id.get(i)
        if r is None:
            continue  # deleted since it was indexed; the outbox will catch up
        out.append({
            "id": r["id"], "title": r["title"], "title_reading": r["title_reading"], "authors": r["authors"],
            "publisher": r["publisher"], "year": r["pub_year"], "isbn": r["isbn"], "ndc": r["ndc"],
            "material_type": r["material_type"], "links": r["links"] or [],
            "available": bool(available[i]) if known and available is not None else r["available"],
        })
    return out


def record_page(conn: Connection[DictRow], record_id: int) -> dict[str, Any] | None:
    """A record with its live holdings per branch (location, call number, status, due date)."""
    row = conn.execute("SELECT id, title, title_reading, data, pub_year, isbns, ndc, material_type "
                       "FROM bib_record WHERE id = %s", (record_id,)).fetchone()
    if row is None:
        return None
    holdings = conn.execute(
        "SELECT branch, branch_name, branch_name_en, location, location_en, call_number, status, due_date "
        "FROM opac_holding WHERE record_id = %s ORDER BY branch, call_number", (record_id,)).fetchall()
    data = row["data"] or {}
    return {
        "id": row["id"], "title": row["title"], "title_reading": row["title_reading"],
        "subtitle": data.get("subtitle"), "responsibility": data.get("responsibility"),
        "authors": [{"name": a.get("name"), "reading": a.get("reading"), "role": a.get("role")}
                    for a in data.get("authors") or [] if isinstance(a, dict)],
        "publisher": data.get("publisher"), "place": data.get("place"), "year": row["pub_year"],
        "edition": data.get("edition"), "extent": data.get("extent"),
        "series": [s.get("title") for s in data.get("series") or [] if isinstance(s, dict)],
        "subjects": [s.get("term") for s in data.get("subjects") or [] if isinstance(s, dict)],
        "isbn": row["isbns"], "ndc": row["ndc"], "material_type": row["material_type"],
        "language": data.get("language"), "links": data.get("links") or [], "notes": data.get("notes") or [],
        "holdings": [{"branch": h["branch"], "branch_name": h["branch_name"], "location": h["location"],
                      "call_number": h["call_number"], "status": h["status"],
                      "due_date": h["due_date"].isoformat() if h["due_date"] else None} for h in holdings],
    }
