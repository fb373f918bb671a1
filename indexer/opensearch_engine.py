"""The cluster engine: OpenSearch (opensearch-py), over the same pre-analysed tokens as tantivy.

Token fields use a whitespace analyzer, so OpenSearch sees exactly the tokens Shoka's analyzer
produced; no Japanese analysis runs inside the cluster. Generations are indices behind the alias
`<prefix>-records`: a rebuild fills a new index while the alias still points at the old one, then
moves the alias in one atomic call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from indexer import analysis
from indexer.document import GROUPS, SUFFIXES
from indexer.engine import SearchUnavailable
from indexer.plan import AllOf, Clause, Phrase, Prefix, Term, text_clause
from indexer.query import (
    MAX_RESULT_WINDOW,
    Bool,
    Hit,
    Keyword,
    Node,
    QueryError,
    Range,
    SearchRequest,
    SearchResult,
)

SCHEMA_VERSION = 1
RAW_KEYWORDS = ("isbn", "ndc", "ndc_class", "branch", "available", "material_type", "language", "title_exact",
                "title_sort")


def mappings() -> dict[str, Any]:
    props: dict[str, Any] = {"id": {"type": "long"}, "year": {"type": "integer"}, "created": {"type": "long"}}
    for group in GROUPS:
        for suffix in SUFFIXES:
            props[f"{group}_{suffix}"] = {"type": "text", "analyzer": "whitespace", "norms": True}
    for name in RAW_KEYWORDS:
        props[name] = {"type": "keyword"}
    return {
        "settings": {"index": {"max_result_window": MAX_RESULT_WINDOW}},
        "mappings": {"dynamic": "strict", "_source": {"enabled": True},
                     "_meta": {"analyzer": analysis.ANALYZER_VERSION, "schema": SCHEMA_VERSION},
                     "properties": props},
    }


def render(clause: Clause) -> dict[str, Any]:
    """A plan clause (indexer/plan.py) as OpenSearch query DSL; pre-analysed tokens, no query parser."""
    if isinstance(clause, Term):
        return {"term": {clause.field: {"value": clause.value, "boost": clause.boost}}}
    if isinstance(clause, Phrase):
        if len(clause.tokens) == 1:
            return render(Term(clause.field, clause.tokens[0], clause.boost))
        # joined by spaces: the whitespace analyzer splits them back into the same tokens
        return {"match_phrase": {clause.field: {"query": " ".join(clause.tokens), "boost": clause.boost}}}
    if isinstance(clause, Prefix):
        return {"prefix": {clause.field: clause.value}}
    if isinstance(clause, AllOf):
        return {"bool": {"must": [render(c) for c in clause.clauses]}}
    return _any([render(c) for c in clause.clauses])


def _any(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    if not clauses:
        return {"match_none": {}}
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


def compile_node(node: Node) -> dict[str, Any]:
    if isinstance(node, Bool):
        body: dict[str, Any] = {}
        if node.must:
            body["must"] = [compile_node(n) for n in node.must]
        if node.should:
            body["should"] = [compile_node(n) for n in node.should]
            body["minimum_should_match"] = 1
        if node.must_not:
            body["must_not"] = [compile_node(n) for n in node.must_not]
        if not node.must and not node.should:
            body["must"] = [{"match_all": {}}]
        return {"bool": body}
    if isinstance(node, Keyword):
        if node.field == "id":
            return {"term": {"id": int(node.value)}}
        if node.prefix:
            return {"prefix": {node.field: node.value}}
        return {"term": {node.field: node.value}}
    if isinstance(node, Range):
        bounds = {k: v for k, v in (("gte", node.gte), ("lte", node.lte)) if v is not None}
        return {"range": {node.field: bounds}}
    groups = GROUPS if node.field == "any" else (node.field,)
    return _any([render(text_clause(g, node)) for g in groups])


SORTS = {"newest": [{"year": {"order": "desc", "missing": "_last"}}],
         "oldest": [{"year": {"order": "asc", "missing": "_last"}}],
         "title": [{"title_sort": {"order": "asc", "missing": "_last"}}]}


def compile_request(request: SearchRequest) -> dict[str, Any]:
    must = [compile_node(request.query)] if request.query is not None else []
    filters = [compile_node(f) for f in request.filters]
    body: dict[str, Any] = {
        "query": {"bool": {"must": must or [{"match_all": {}}], "filter": filters}},
        "from": request.offset, "size": request.size, "_source": False, "track_total_hits": True,
        "docvalue_fields": ["id"],
    }
    if request.sort in SORTS:
        body["sort"] = SORTS[request.sort]
    elif request.query is None:
        body["sort"] = [{"created": {"order": "desc"}}]  # new arrivals first
    if request.facets:
        body["aggs"] = {f: {"terms": {"field": f, "size": 100 if f == "year" else 50}} for f in request.facets}
    return body


class OpenSearchEngine:
    name = "opensearch"

    def __init__(self, url: str, prefix: str = "shoka") -> None:
        from opensearchpy import OpenSearch

        self.url = url
        self.alias = f"{prefix}-records"
        self.prefix = prefix
        self.client = OpenSearch(url, timeout=30, max_retries=2, retry_on_timeout=True)
        self.slots = nullcontext()  # the cluster queues searches itself (its search thread pool)

    def ping(self) -> str:
        from opensearchpy.exceptions import OpenSearchException

        try:
            info = self.client.info()
        except (OpenSearchException, OSError) as exc:
            raise SearchUnavailable(f"OpenSearch does not answer: {exc}") from None
        return f"OpenSearch {info.get('version', {}).get('number', '?')}"

    # -- generations ------------------------------------------------------------------------------
    def _current(self) -> str | None:
        if not self.client.indices.exists_alias(name=self.alias):
            return None
        return next(iter(self.client.indices.get_alias(name=self.alias)))

    def new_generation(self) -> str:
        name = f"{self.prefix}-records-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.client.indices.create(index=name, body=mappings())
        return name

    def switch_to(self, generation: str) -> None:
        actions: list[dict[str, Any]] = [{"add": {"index": generation, "alias": self.alias}}]
        current = self._current()
        if current and current != generation:
            actions.insert(0, {"remove": {"index": current, "alias": self.alias}})
        self.client.indices.update_aliases(body={"actions": actions})
        if current and current != generation:
            # The alias moves atomically, so no search is routed to the old index after this.
            self.client.indices.delete(index=current, ignore_unavailable=True)

    def discard(self, generation: str) -> None:
        if generation != self._current():
            self.client.indices.delete(index=generation, ignore_unavailable=True)

    def prune_generations(self) -> list[str]:
        return []  # switch_to deletes the replaced index at once

    def needs_rebuild(self) -> bool:
        current = self._current()
        if current is None:
            return True
        meta = self.client.indices.get_mapping(index=current)[current]["mappings"].get("_meta", {})
        return bool(meta.get("analyzer") != analysis.ANALYZER_VERSION or meta.get("schema") != SCHEMA_VERSION)

    def _target(self, generation: str | None) -> str:
        if generation:
            return generation
        current = self._current()
        if current is None:
            current = self.new_generation()
            self.switch_to(current)
        return current

    # -- writing and searching ------------------------------------------------------------------
    def write(self, docs: list[dict[str, Any]], deleted: Sequence[int] = (), generation: str | None = None) -> None:
        from opensearchpy.helpers import bulk

        index = self._target(generation)
        actions: list[dict[str, Any]] = [{"_op_type": "delete", "_index": index, "_id": str(i)} for i in deleted]
        actions += [{"_op_type": "index", "_index": index, "_id": str(d["id"]), "_source": _source(d)} for d in docs]
        if actions:
            bulk(self.client, actions, refresh="wait_for", raise_on_error=False)

    def search(self, request: SearchRequest) -> SearchResult:
        if request.offset + request.size > MAX_RESULT_WINDOW:
            raise QueryError("page", request.page, f"results go only {MAX_RESULT_WINDOW} deep; narrow the search")
        response = self.client.search(index=self._target(None), body=compile_request(request))
        hits = [Hit(int(h["fields"]["id"][0]), float(h.get("_score") or 0.0)) for h in response["hits"]["hits"]]
        facets = {name: [(str(b.get("key_as_string", b["key"])), int(b["doc_count"])) for b in agg["buckets"]]
                  for name, agg in response.get("aggregations", {}).items()}
        return SearchResult(total=int(response["hits"]["total"]["value"]), hits=hits, facets=facets)


def _source(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None and v != "" and v != []}

