"""The embedded search engine: tantivy, over the pre-analysed tokens of indexer/document.py.

The index lives in SHOKA_DATA_DIR/index/<generation>/ with a `current` file naming the generation
in use, so a rebuild writes a new generation while searches keep using the old one, then switches.
Each generation records the analyzer version it was built with; a change means a rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import tantivy
from tantivy import Occur, Query

from indexer import analysis
from indexer.document import GROUPS, SUFFIXES
from indexer.engine import SearchUnavailable
from indexer.plan import AllOf, AnyOf, Clause, Phrase, Prefix, Term, text_clause
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

SCHEMA_VERSION = 5  # 2: facet_set, facet_key; 3: id_key; 4: branch_one; 5: single_facets, branch_set
RAW_KEYWORDS = ("isbn", "ndc", "ndc_class", "branch", "available", "material_type", "language")
COUNTING_FACET = "available"  # exactly one value per document ("true"/"false"): its buckets add up to the hits
RELOAD_EVERY = 0.5  # seconds between checks for a newer commit (freshness target: 2 s)
# A search with at most this many hits is evaluated once: the scored search collects them all and the facets
# are counted from their `facet_key` values, instead of a second, aggregating evaluation of the query.
FEW_HITS = 1000
# Every facet value of a document but its year, in one keyword (facets in FACET_SET order, \x1f between
# them, \x1e between the values of one); `facet_key` is its 64-bit hash, a fast field read for each hit.
# The indexed `facet_set` term starts with the key in hex, so a key's values are found by prefix.
FACET_SET = ("branch", "available", "material_type", "ndc_class", "language")
FACET_FIELD, FACET_KEY = "facet_set", "facet_key"
FACET_SIZE = {"branch": 50, "available": 50, "material_type": 50, "ndc_class": 50, "language": 50, "year": 100}
# The branch facet of a broad search in a schema 4 generation (and in schema 5 when `branch_set` cannot answer),
# counted without reading the multi-valued `branch` column for every hit
# (tantivy reads a multi-valued column at ~15 ns a hit whether the document has values or not, a single-valued
# one at ~1.5): `branch_one` holds a document's branch when it has one, ONE_NONE when it has none and
# ONE_SEVERAL when it has more; only the hits with ONE_SEVERAL, picked out by a filter aggregation, have
# their `branch` values read. Branch codes start with a letter or digit, so the two markers are no branch.
BRANCH_ONE, ONE_NONE, ONE_SEVERAL = "branch_one", "_none", "_several"
BRANCH_BUCKETS = 1000  # every branch of a library: the two counts are added up before the top FACET_SIZE
# Facet values a broad search counts as combinations, one single-valued keyword column each, whose buckets are
# added up by value (tantivy counts a single-valued column at ~2 ns a hit whatever its number of values):
# `single_facets`, the facets with one value a document (values in SINGLE_FACETS order, \x1f between them;
# some hundreds of combinations in a catalogue), instead of one aggregation each (a quarter less aggregation
# time at 0.5–1.4M hits); `branch_set`, a document's branches (\x1e between them; a few thousand sets), instead
# of branch_one and a filter aggregation (whose query tantivy parses anew each time, ~1 ms). COMBINED_UNKNOWN
# marks a document whose values do not fit (a separator in a value, several values of a single facet); the
# search then counts those facets one by one, as it does when the combinations outnumber COMBINED_BUCKETS.
SINGLE_FACETS, SINGLE_FIELD, BRANCH_SET, COMBINED_UNKNOWN = ("available", "material_type", "ndc_class",
                                                             "language"), "single_facets", "branch_set", "_"
COMBINED = {SINGLE_FIELD: SINGLE_FACETS, BRANCH_SET: ("branch",)}
COMBINED_BUCKETS = 20_000
_UNSEEN: Any = object()  # a combination not read yet
CACHE_MIN_HITS = 2000  # results this broad are cached until the next commit (see ResultCache)
CACHE_SIZE = 512
# A rebuild's writer: a segment is written each time this much memory fills (about 0.9 KB a record), and every
# search pays per segment for each term (at 3.65M records, 7 segments → 4 with 1 GB: 15 % less engine time;
# → 2 with 2 GB: 6 % less again). Memory grows to it only for catalogues of two million records or more.
BULK_HEAP = 2_000_000_000
BULK_THREADS = 1  # tantivy indexing threads; the analysis workers already use the other cores
RETIRED_GRACE = 60.0  # seconds a replaced generation stays on disk: other processes look at `current` every 0.5 s


# A hit's record id is read from `id_key`, the id multiplied by an odd constant (a bijection of 64-bit numbers):
# tantivy stores ascending ids with its blockwise-linear codec, whose reader unpacks every block's header
# each time the column is opened (0.28 ms a search at 3.65M records); mixed, the ids are stored bit-packed
# and open at once.
ID_KEY = "id_key"
_ID_MIX = 0x9E3779B97F4A7C15
_ID_UNMIX = pow(_ID_MIX, -1, 2**64)
_U64 = 2**64 - 1


def id_key(record_id: int) -> int:
    return (record_id * _ID_MIX) & _U64


def id_of_key(key: int) -> int:
    return (key * _ID_UNMIX) & _U64


def _values(d: dict[str, Any], name: str) -> list[str]:
    value = d.get(name)
    return [str(v) for v in value] if isinstance(value, list) else [] if value in (None, "") else [str(value)]


def facet_set(d: dict[str, Any]) -> str | None:
    """The FACET_SET values of a document as one keyword; None if a value holds a separator (that document's
    facets are then counted by aggregation only)."""
    parts: list[str] = []
    for name in FACET_SET:
        values = _values(d, name)
        if any("\x1e" in v or "\x1f" in v for v in values):
            return None
        parts.append("\x1e".join(values))
    return "\x1f".join(parts)


def facet_key(text: str | None) -> int:
    """The 64-bit hash of a facet set, the same in every process; 0 for None."""
    if text is None:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") or 1


def facet_fields(d: dict[str, Any]) -> tuple[int, str | None]:
    """A document's facet_key and facet_set term (the key in hex, then the set); no term if it has no set."""
    text = facet_set(d)
    key = facet_key(text)
    return key, None if text is None else f"{key:016x}{text}"


def branch_one(d: dict[str, Any]) -> str:
    """The `branch_one` value of a document: its one branch, ONE_NONE or ONE_SEVERAL."""
    branches = d.get("branch") or []
    return ONE_NONE if not branches else str(branches[0]) if len(branches) == 1 else ONE_SEVERAL


def _buckets(raw: dict[str, Any], name: str) -> list[tuple[str, int]]:
    """A terms aggregation's buckets in an aggregation answer, as (value, count) pairs."""
    return [(str(b["key"]), int(b["doc_count"])) for b in raw.get(name, {}).get("buckets", [])]


def single_facets(d: dict[str, Any]) -> str:
    """The SINGLE_FIELD value of a document: its SINGLE_FACETS values, or COMBINED_UNKNOWN if one has several
    values or holds the separator."""
    parts: list[str] = []
    for name in SINGLE_FACETS:
        values = _values(d, name)
        if len(values) > 1 or any("\x1f" in v or "\x1e" in v for v in values):
            return COMBINED_UNKNOWN
        parts.append(values[0] if values else "")
    return "\x1f".join(parts)


def branch_set(d: dict[str, Any]) -> str:
    """The BRANCH_SET value of a document: its branch codes ("" for none), or COMBINED_UNKNOWN if one holds a
    separator."""
    values = sorted(set(_values(d, "branch")))
    if any("\x1f" in v or "\x1e" in v or v == COMBINED_UNKNOWN for v in values):
        return COMBINED_UNKNOWN
    return "\x1e".join(values)


@lru_cache(maxsize=65536)
def _facet_columns(values: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
    """The facet columns of a document whose FACET_SET values are `values` (lists as tuples), remembered: a
    catalogue has some thousands of combinations, and a rebuild makes these columns for every record."""
    d = {name: list(v) if isinstance(v, tuple) else v for name, v in zip(FACET_SET, values, strict=True)}
    hashed, term = facet_fields(d)
    out: tuple[tuple[str, Any], ...] = ((FACET_KEY, hashed), (BRANCH_ONE, branch_one(d)),
                                        (SINGLE_FIELD, single_facets(d)), (BRANCH_SET, branch_set(d)))
    return out if term is None else (*out, (FACET_FIELD, term))


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """A document as tantivy's JSON document: empty values left out, as `_document` does."""
    values = tuple(tuple(v) if isinstance(v := d.get(name), list) else v for name in FACET_SET)
    out: dict[str, Any] = {ID_KEY: id_key(int(d["id"]))}
    out.update(_facet_columns(values))
    for key, value in d.items():
        if value is None or value == "" or value == []:
            continue
        if key in ("id", "year", "created"):
            out[key] = int(value)
        elif type(value) is str:
            out[key] = value
        elif isinstance(value, list):
            out[key] = value if all(type(v) is str for v in value) else [str(v) for v in value]
        else:
            out[key] = str(value)
    return out


def bulk_encode(docs: list[dict[str, Any]]) -> list[str]:
    """Documents as JSON text for `BulkWriter.add` (runs in the rebuild's analysis workers)."""
    return [orjson.dumps(_plain(d)).decode() for d in docs]


class BulkWriter:
    """One writer for a whole new generation: documents go in as they come, one commit at the end."""

    def __init__(self, path: Path) -> None:
        self._writer = tantivy.Index.open(str(path)).writer(heap_size=BULK_HEAP, num_threads=BULK_THREADS)

    def add(self, encoded: list[str]) -> None:
        for text in encoded:
            self._writer.add_json(text)

    def commit(self) -> None:
        self._writer.commit()

    def close(self) -> None:
        self._writer.wait_merging_threads()


class FifoSlots:
    """At most `n` holders at once; the others wait and are let in first come, first served.

    Searches are CPU-bound: with more of them running than there are cores, the cores are shared among all
    of them and each is stretched by every other one running with it, the long ones most. Queued in order
    instead, a search waits for those ahead of it and then runs at full speed: the same throughput, a
    shorter tail (p95 down 15-20 % with 16 clients at 3.65M records; Elasticsearch and OpenSearch size their
    search thread pools to the cores for the same reason).

    Re-entrant: a thread that holds a slot (the OPAC holds one for a whole request, opac/search.py) passes
    straight through when the engine's search takes it again."""

    def __init__(self, n: int) -> None:
        self._free = n
        self._lock = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()
        self._held = threading.local()  # .depth: how many times this thread has entered

    def __enter__(self) -> None:
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            return
        self._acquire()
        self._held.depth = 1

    def _acquire(self) -> None:
        with self._lock:
            if self._free:  # never while some wait: a freed slot goes to the first of them
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        try:
            turn.acquire()  # released by the holder that hands its slot over
        except BaseException:  # interrupted while waiting: leave the line, or pass on a slot just handed over
            with self._lock:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                    raise
            self._release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._held.depth -= 1
        if not self._held.depth:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()  # the slot passes straight to the first in line
            else:
                self._free += 1


class ResultCache:
    """Results of broad searches (CACHE_MIN_HITS or more hits: facet counting over them is the costly
    part), kept until the index has a new commit, so a cached answer is the answer the index gives.
    The engine clears it when it sees a commit; at most CACHE_SIZE requests, least recently used out."""

    def __init__(self) -> None:
        self._entries: OrderedDict[SearchRequest, SearchResult] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, request: SearchRequest) -> SearchResult | None:
        with self._lock:
            result = self._entries.get(request)
            if result is None:
                self.misses += 1
                return None
            self._entries.move_to_end(request)
            self.hits += 1
        return SearchResult(result.total, list(result.hits), {k: list(v) for k, v in result.facets.items()})

    def put(self, request: SearchRequest, result: SearchResult) -> None:
        with self._lock:
            self._entries[request] = SearchResult(result.total, list(result.hits),
                                                  {k: list(v) for k, v in result.facets.items()})
            while len(self._entries) > CACHE_SIZE:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def build_schema(version: int = SCHEMA_VERSION) -> tantivy.Schema:
    """The schema of `version`. New fields go last: queries name fields by their number in the schema, and
    a generation of an earlier version keeps answering these queries until the rebuild switches."""
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("id", stored=True, indexed=True, fast=True)
    for group in GROUPS:
        for suffix in SUFFIXES:
            sb.add_text_field(f"{group}_{suffix}", tokenizer_name="whitespace", index_option="position")
    for name in RAW_KEYWORDS:
        sb.add_text_field(name, tokenizer_name="raw", fast=True, index_option="basic")
    sb.add_text_field("title_exact", tokenizer_name="raw", index_option="basic")
    sb.add_text_field("title_sort", tokenizer_name="raw", fast=True, index_option="basic")
    sb.add_integer_field("year", indexed=True, fast=True)
    sb.add_integer_field("created", indexed=True, fast=True)
    if version >= 2:
        sb.add_text_field(FACET_FIELD, tokenizer_name="raw", index_option="basic")
        sb.add_unsigned_field(FACET_KEY, fast=True)
    if version >= 3:
        sb.add_unsigned_field(ID_KEY, fast=True)
    if version >= 4:
        sb.add_text_field(BRANCH_ONE, tokenizer_name="raw", fast=True, index_option="basic")
    if version >= 5:
        sb.add_text_field(SINGLE_FIELD, tokenizer_name="raw", fast=True, index_option="basic")
        sb.add_text_field(BRANCH_SET, tokenizer_name="raw", fast=True, index_option="basic")
    return sb.build()


def _phrase(schema: tantivy.Schema, field: str, words: list[str]) -> Query:
    return Query.phrase_query(schema, field, list[Any](words))


class TantivyEngine:
    name = "tantivy"

    def __init__(self, index_dir: Path, slots: int | None = None) -> None:
        """`slots`: searches this engine serves at once, the rest waiting in arrival order. The OPAC holds a
        slot for a whole request (the engine's part and the page's PostgreSQL query: opac/search.py), so the
        default is one per core and one more, for the core a request leaves to PostgreSQL while it waits for
        its page; also in each of several OPAC processes (each has its own engine): fewer left a core idle at
        a human pace (docs/benchmarks.md)."""
        self.index_dir = index_dir
        self.slots = FifoSlots(slots or (os.cpu_count() or 1) + 1)
        self.schema = build_schema()
        self._index: tantivy.Index | None = None
        self._generation: str | None = None
        self._writer: Any = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._commit: tuple[str, int, int, int] | None = None
        self._cache = ResultCache()
        self._facet_keys = True  # the generation searches use has facet_key (built with schema 2 or later)
        self._id_keys = True  # ... and id_key (schema 3 or later)
        self._branch_one = True  # ... and branch_one (schema 4 or later)
        self._combined = True  # ... and single_facets and branch_set (schema 5 or later)
        # a COMBINED field's value → its (facet, value) pairs (None: COMBINED_UNKNOWN or a value that does not parse)
        self._combinations: dict[str, dict[str, tuple[tuple[str, str], ...] | None]] = {f: {} for f in COMBINED}
        # facet_key → its (facet, value) pairs, looked up once per key (None: no single term holds it)
        self._facet_sets: dict[int, tuple[tuple[str, str], ...] | None] = {}

    # -- generations -------------------------------------------------------------------------
    def _current_name(self) -> str | None:
        try:
            return (self.index_dir / "current").read_text().strip() or None
        except OSError:
            return None

    def _meta(self, generation: str) -> dict[str, Any]:
        try:
            return dict(json.loads((self.index_dir / generation / "shoka.json").read_text()))
        except (OSError, ValueError):
            return {}

    def needs_rebuild(self) -> bool:
        current = self._current_name()
        meta = self._meta(current) if current else {}
        return meta.get("analyzer") != analysis.ANALYZER_VERSION or meta.get("schema") != SCHEMA_VERSION

    def new_generation(self) -> str:
        name = f"gen-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        path = self.index_dir / name
        path.mkdir(parents=True)
        tantivy.Index(self.schema, path=str(path), reuse=False)
        (path / "shoka.json").write_text(json.dumps({"analyzer": analysis.ANALYZER_VERSION,
                                                     "schema": SCHEMA_VERSION}))
        return name

    def switch_to(self, generation: str) -> None:
        """Make `generation` the one searches use (atomic rename of the pointer file). The generation it
        replaces is marked retired; `prune_generations` deletes it once no process can still be reading it."""
        previous = self._current_name()
        tmp = self.index_dir / "current.tmp"
        tmp.write_text(generation)
        os.replace(tmp, self.index_dir / "current")
        self._index = None
        if previous and previous != generation:
            self._retire(previous)

    def _retire(self, generation: str) -> None:
        with contextlib.suppress(OSError):  # already gone
            (self.index_dir / generation / "retired").write_text(f"{time.time():.3f}")

    def discard(self, generation: str) -> None:
        """Drop a generation a failed rebuild leaves behind (never the one searches use)."""
        if generation != self._current_name():
            shutil.rmtree(self.index_dir / generation, ignore_errors=True)

    def prune_generations(self, grace: float | None = None) -> list[str]:
        """Delete generations retired more than `grace` (default RETIRED_GRACE) seconds ago; returns their
        names. A generation being built carries no retirement mark, so a rebuild in progress is never touched."""
        grace = RETIRED_GRACE if grace is None else grace
        current = self._current_name()
        removed: list[str] = []
        try:
            entries = list(self.index_dir.iterdir())
        except OSError:
            return removed
        for path in entries:
            if path.name == current or not path.is_dir():
                continue
            try:
                retired = float((path / "retired").read_text())
            except (OSError, ValueError):
                continue
            if time.time() - retired >= grace:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    def _open(self) -> tantivy.Index:
        """The index searches use. The pointer file and the index's commits are looked at every
        RELOAD_EVERY seconds, not on each search."""
        with self._lock:
            if self._index is not None and time.monotonic() - self._checked <= RELOAD_EVERY:
                return self._index
            current = self._current_name()
            if current is None:
                self.index_dir.mkdir(parents=True, exist_ok=True)
                current = self.new_generation()
                self.switch_to(current)
            # Looked at before reloading, so a commit racing this check clears the cache at the next one.
            commit = self._commit_stamp(current)
            if self._index is None or self._generation != current:
                try:
                    self._index = tantivy.Index.open(str(self.index_dir / current))
                except (ValueError, OSError) as exc:
                    raise SearchUnavailable(f"index {self.index_dir / current} cannot be opened: {exc}") from None
                self._generation = current
                schema = self._schema_of(current)
                self._facet_keys, self._id_keys, self._branch_one = schema >= 2, schema >= 3, schema >= 4
                self._combined = schema >= 5
                self._facet_sets, self._combinations = {}, {f: {} for f in COMBINED}
            else:
                self._index.reload()
            if commit != self._commit:
                self._commit = commit
                self._cache.clear()
            self._checked = time.monotonic()
            return self._index

    def _schema_of(self, generation: str) -> int:
        return int(self._meta(generation).get("schema") or 1)

    def _commit_stamp(self, generation: str) -> tuple[str, int, int, int]:
        """Changes whenever tantivy commits to `generation` (meta.json is replaced atomically)."""
        try:
            st = (self.index_dir / generation / "meta.json").stat()
        except OSError:
            return (generation, 0, 0, 0)
        return (generation, st.st_ino, st.st_mtime_ns, st.st_size)

    def ping(self) -> str:
        index = self._open()
        return f"tantivy index {self._generation}: {index.searcher().num_docs} documents"

    # -- writing -------------------------------------------------------------------------------
    bulk_encode = staticmethod(bulk_encode)

    def bulk_writer(self, generation: str) -> BulkWriter:
        """The writer a rebuild fills `generation` with (not for the generation searches use)."""
        return BulkWriter(self.index_dir / generation)

    def write(self, docs: list[dict[str, Any]], deleted: Sequence[int] = (), generation: str | None = None) -> None:
        """Add or replace documents (by id) and remove deleted ids, then commit."""
        target = generation or self._current_name()
        if target is None:
            self._open()
            target = self._current_name()
        index = tantivy.Index.open(str(self.index_dir / str(target)))
        writer = index.writer(heap_size=64_000_000, num_threads=1)
        try:
            replaced = [int(i) for i in deleted] + [int(d["id"]) for d in docs]
            if replaced:
                # by query: delete_documents_by_term does not match unsigned fields in tantivy-py
                writer.delete_documents_by_query(Query.term_set_query(self.schema, "id", replaced))
            for d in docs:
                writer.add_document(self._document(d))
            writer.commit()
        finally:
            writer.wait_merging_threads()
        self._checked = 0.0  # see the new commit on the next search

    @staticmethod
    def _document(d: dict[str, Any]) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_unsigned("id", int(d["id"]))
        # (A generation from before the facet keys or the id keys, which changes go on into until a rebuild
        # switches, ignores the fields it lacks.)
        hashed, term = facet_fields(d)
        doc.add_unsigned(FACET_KEY, hashed)
        doc.add_unsigned(ID_KEY, id_key(int(d["id"])))
        doc.add_text(BRANCH_ONE, branch_one(d))
        doc.add_text(SINGLE_FIELD, single_facets(d))
        doc.add_text(BRANCH_SET, branch_set(d))
        if term is not None:
            doc.add_text(FACET_FIELD, term)
        for key, value in d.items():
            if key == "id" or value is None:
                continue
            if key in ("year", "created"):
                doc.add_integer(key, int(value))
            elif isinstance(value, list):
                for v in value:
                    doc.add_text(key, str(v))
            elif value != "":
                doc.add_text(key, str(value))
        return doc

    # -- searching -----------------------------------------------------------------------------
    def search(self, request: SearchRequest) -> SearchResult:
        if request.offset + request.size > MAX_RESULT_WINDOW:
            raise QueryError("page", request.page, f"results go only {MAX_RESULT_WINDOW} deep; narrow the search")
        index = self._open()
        cached = self._cache.get(request)
        if cached is not None:
            return cached
        with self.slots:
            return self._evaluate(index, request)

    def _evaluate(self, index: tantivy.Index, request: SearchRequest) -> SearchResult:
        searcher = index.searcher()
        clauses: list[tuple[Any, Any]] = []
        if request.query is not None:
            clauses.append((tantivy.Occur.Must, self._compile(request.query)))
        for condition in request.filters:
            clauses.append((tantivy.Occur.Must, self._compile(condition)))
        if len(clauses) == 1:
            query = clauses[0][1]  # not wrapped: a bare flat OR of terms is what tantivy can prune (block-max WAND)
        else:
            query = tantivy.Query.boolean_query(clauses) if clauses else tantivy.Query.all_query()
        order: dict[str, Any] = {}
        if request.sort == "newest":
            order = {"order_by_field": "year", "order": tantivy.Order.Desc}
        elif request.sort == "oldest":
            order = {"order_by_field": "year", "order": tantivy.Order.Asc}
        elif request.sort == "title":
            order = {"order_by_field": "title_sort", "order": tantivy.Order.Asc}
        elif request.query is None:
            order = {"order_by_field": "created", "order": tantivy.Order.Desc}  # new arrivals first
        end = request.offset + request.size
        few: list[tuple[Any, Any]] | None = None
        if request.facets and self._facet_keys and not order:
            # One evaluation when the hits are few: all of them scored and collected, facets from their keys.
            # One more than FEW_HITS tells whether they are; no count, so a broad search may still skip blocks.
            # (Not for browsing in a set order, new arrivals or NDC: those lists are mostly long.)
            few = searcher.search(query, max(FEW_HITS + 1, end), count=False).hits  # a new list at each read
            count = len(few)
            if count <= FEW_HITS:
                counted = self._facets_of(searcher, [addr for _, addr in few], request.facets)
                if counted is not None:
                    return self._result(searcher, request, count, few[request.offset:end], counted, order)
        facets: dict[str, list[tuple[str, int]]] = {}
        total: int | None = None
        if request.facets:
            # The aggregation visits every hit anyway, so it also gives the total: every document has exactly
            # one `available` value. The top hits then need no count, and tantivy may skip blocks that cannot
            # reach them.
            names = {*request.facets, COUNTING_FACET}
            counted = self._aggregate(searcher, query, names)
            facets = {f: _top(counted[f], f) for f in request.facets}
            total = sum(n for _, n in counted[COUNTING_FACET])
        if few is not None and end <= len(few):
            return self._result(searcher, request, total or 0, few[request.offset:end], facets, order)
        found = searcher.search(query, request.size, count=total is None, offset=request.offset, **order)
        if total is None:
            total = int(getattr(found, "count", None) or 0)  # missing from tantivy's type stub
        return self._result(searcher, request, total, found.hits, facets, order)

    def _aggregate(self, searcher: Any, query: Any, names: set[str]) -> dict[str, list[tuple[str, int]]]:
        """Every hit's facet values counted: (value, count) pairs per facet, in no order. One aggregation; a second
        for the facets whose combinations could not all be read."""
        if not self._combined:
            return self._aggregate_each(searcher, query, names)
        combined = {field: names & set(facets) for field, facets in COMBINED.items()}
        each = names.difference(*combined.values())
        aggs: dict[str, Any] = {f: {"terms": {"field": f, "size": FACET_SIZE[f]}} for f in each}
        aggs.update({field: {"terms": {"field": field, "size": COMBINED_BUCKETS}}
                     for field, wanted in combined.items() if wanted})
        raw = searcher.aggregate(query, aggs)
        counted = {f: _buckets(raw, f) for f in each}
        late: set[str] = set()
        for field, wanted in combined.items():
            if not wanted:
                continue
            by_value = self._combined_counts(field, raw.get(field, {}))
            if by_value is None:  # a document's values did not fit: those facets counted one by one
                late |= wanted
            else:
                counted.update({f: by_value.get(f, []) for f in wanted})
        if late:
            counted.update(self._aggregate_each(searcher, query, late))
        return counted

    def _aggregate_each(self, searcher: Any, query: Any, names: set[str]) -> dict[str, list[tuple[str, int]]]:
        """`names` counted by one terms aggregation each (generations before schema 5), the branches through
        branch_one where the generation has it."""
        aggs: dict[str, Any] = {f: {"terms": {"field": f, "size": FACET_SIZE[f]}} for f in names}
        split = "branch" in names and self._branch_one
        if split:
            del aggs["branch"]
            aggs[BRANCH_ONE] = {"terms": {"field": BRANCH_ONE, "size": BRANCH_BUCKETS}}
            # A constant filter written here, never user input: tantivy parses it with its own query parser.
            aggs[ONE_SEVERAL] = {"filter": f"{BRANCH_ONE}:{ONE_SEVERAL}",
                                 "aggs": {"branch": {"terms": {"field": "branch", "size": BRANCH_BUCKETS}}}}
        raw = searcher.aggregate(query, aggs)
        counted = {f: _buckets(raw, f) for f in names if f != "branch" or not split}
        if split:
            branches: Counter[str] = Counter()
            for b in raw.get(BRANCH_ONE, {}).get("buckets", []):
                if str(b["key"]) not in (ONE_NONE, ONE_SEVERAL):
                    branches[str(b["key"])] += int(b["doc_count"])
            for b in raw.get(ONE_SEVERAL, {}).get("branch", {}).get("buckets", []):
                branches[str(b["key"])] += int(b["doc_count"])
            counted["branch"] = list(branches.items())
        return counted

    def _combined_counts(self, field: str, raw: dict[str, Any]) -> dict[str, list[tuple[str, int]]] | None:
        """A COMBINED field's buckets added up by facet and value; None when a bucket cannot be read (a document
        marked COMBINED_UNKNOWN) or the buckets did not all fit in the answer."""
        if raw.get("sum_other_doc_count"):
            return None
        facets, known = COMBINED[field], self._combinations[field]
        tally: dict[tuple[str, str], int] = {}
        get = tally.get
        # Thousands of buckets in a broad search: one dictionary lookup each, the key and count used as tantivy
        # gives them (a str and an int for a keyword column).
        for b in raw.get("buckets", []):
            text = b["key"]
            pairs = known.get(text, _UNSEEN)
            if pairs is _UNSEEN:
                parts = str(text).split("\x1f")
                pairs = known[text] = None if text == COMBINED_UNKNOWN or len(parts) != len(facets) else tuple(
                    (f, v) for f, part in zip(facets, parts, strict=True) for v in part.split("\x1e") if v)
            if pairs is None:
                return None
            n = b["doc_count"]
            for pair in pairs:
                tally[pair] = get(pair, 0) + n
        out: dict[str, list[tuple[str, int]]] = {}
        for (f, v), n in tally.items():
            out.setdefault(f, []).append((v, n))
        return out

    def _result(self, searcher: Any, request: SearchRequest, total: int, found: list[tuple[Any, Any]],
                facets: dict[str, list[tuple[str, int]]], order: dict[str, Any]) -> SearchResult:
        # Ids from a fast field: no stored document is read for a hit.
        addresses = [addr for _, addr in found]
        if not found:
            ids = []
        elif self._id_keys:
            ids = [id_of_key(k or 0) for k in searcher.fast_field_values(ID_KEY, addresses)]
        else:
            ids = [int(i or 0) for i in searcher.fast_field_values("id", addresses)]
        available: list[bool | None] = [None] * len(ids)
        if found and self._facet_keys:  # from the facet sets: the page needs no query of the items for it
            available = [self._available(searcher, k) for k in searcher.fast_field_values(FACET_KEY, addresses)]
        hits = [Hit(i, float(key) if not order else 0.0, a)
                for (key, _), i, a in zip(found, ids, available, strict=True)]
        result = SearchResult(total=total, hits=hits, facets=facets)
        if total >= CACHE_MIN_HITS:
            self._cache.put(request, result)
        return result

    def _facets_of(self, searcher: Any, addresses: list[Any],
                   wanted: Sequence[str]) -> dict[str, list[tuple[str, int]]] | None:
        """Facet buckets counted from the hits' facet keys (and years); None when a hit's key stands for no
        known set of values (a document whose values could not be keyed), so the aggregation counts instead."""
        counts: dict[str, dict[str, int]] = {f: {} for f in wanted}
        if not addresses:
            return {f: [] for f in wanted}
        keys = Counter(searcher.fast_field_values(FACET_KEY, addresses))
        if 0 in keys or None in keys:  # a value that could not be keyed; a document from before the keys
            return None
        tally: dict[tuple[str, str], int] = {}  # (facet, value) → hits; flat, the cheapest loop per hit key
        get = tally.get
        for k, n in keys.items():
            pairs = self._pairs_of(searcher, k)
            if pairs is None:
                return None
            for pair in pairs:
                tally[pair] = get(pair, 0) + n
        for (f, v), n in tally.items():
            if f in counts:
                counts[f][v] = n
        if "year" in counts:
            years = Counter(searcher.fast_field_values("year", addresses))
            counts["year"] = {str(y): n for y, n in years.items() if y is not None}
        return {f: _top(list(c.items()), f) for f, c in counts.items()}

    def _pairs_of(self, searcher: Any, key: int) -> tuple[tuple[str, str], ...] | None:
        """The (facet, value) pairs `key` stands for, remembered; None when no single term holds them."""
        sets = self._facet_sets
        if key not in sets:
            values = self._facet_values(searcher, key)
            sets[key] = None if values is None else tuple(
                (f, v) for f, vs in zip(FACET_SET, values, strict=True) for v in vs)
        return sets[key]

    def _available(self, searcher: Any, key: int | None) -> bool | None:
        pairs = self._pairs_of(searcher, key) if key else None
        return None if pairs is None else ("available", "true") in pairs

    @staticmethod
    def _facet_values(searcher: Any, key: int) -> tuple[tuple[str, ...], ...] | None:
        """The facet values `key` stands for, from the index's facet_set term that starts with it; None if
        there is no such term or more than one (two sets with one hash)."""
        terms = searcher.terms_with_prefix(FACET_FIELD, f"{key:016x}", limit=2)
        if len(terms) != 1:
            return None
        text = terms[0][0][16:]
        parts = tuple(tuple(v for v in part.split("\x1e") if v) for part in text.split("\x1f"))
        return parts if facet_key(text) == key and len(parts) == len(FACET_SET) else None

    @property
    def cache_stats(self) -> tuple[int, int]:
        """(hits, misses) of the result cache since this engine was made."""
        return self._cache.hits, self._cache.misses

    def _compile(self, node: Node) -> Any:
        if isinstance(node, Bool):
            parts = [(Occur.Must, self._compile(n)) for n in node.must]
            parts += [(Occur.Should, self._compile(n)) for n in node.should]
            parts += [(Occur.MustNot, self._compile(n)) for n in node.must_not]
            if node.must_not and not node.must and not node.should:
                parts.append((Occur.Must, Query.all_query()))
            return Query.boolean_query(parts)
        if isinstance(node, Keyword):
            if node.field == "id":
                return Query.term_query(self.schema, "id", int(node.value))
            if node.prefix:
                return Query.regex_query(self.schema, node.field, re.escape(node.value) + ".*")
            return Query.term_query(self.schema, node.field, node.value)
        if isinstance(node, Range):
            return Query.range_query(self.schema, node.field, tantivy.FieldType.Integer, node.gte, node.lte)
        groups = GROUPS if node.field == "any" else (node.field,)
        return self._render(AnyOf(tuple(text_clause(g, node) for g in groups)))

    def _render(self, clause: Clause) -> Any:
        """One tantivy query for a plan clause, with nested alternatives flattened: a flat OR of term
        queries is the shape tantivy scores fastest (its specialised union of term scorers), and the sum
        of the scores is the same as with the nesting (tests/test_tantivy_render.py)."""
        s = self.schema
        clause = _unwrapped(clause)
        if isinstance(clause, Term):
            query = Query.term_query(s, clause.field, clause.value)
            return Query.boost_query(query, clause.boost) if clause.boost != 1.0 else query
        if isinstance(clause, Phrase):
            if len(clause.tokens) == 1:
                return self._render(Term(clause.field, clause.tokens[0], clause.boost))
            query = _phrase(s, clause.field, list(clause.tokens))
            return Query.boost_query(query, clause.boost) if clause.boost != 1.0 else query
        if isinstance(clause, Prefix):
            return Query.regex_query(s, clause.field, re.escape(clause.value) + ".*")
        if isinstance(clause, AllOf):
            return Query.boolean_query([(Occur.Must, self._render(c)) for c in clause.clauses])
        alternatives = _alternatives(clause)
        if not alternatives:
            return Query.empty_query()  # an empty AnyOf matches nothing
        return Query.boolean_query([(Occur.Should, self._render(c)) for c in alternatives])


def _top(buckets: list[tuple[str, int]], facet: str) -> list[tuple[str, int]]:
    """The most frequent values first (ties by value), at most FACET_SIZE: the same whichever way they were
    counted."""
    return sorted(buckets, key=lambda b: (-b[1], b[0]))[:FACET_SIZE[facet]]


def _unwrapped(clause: Clause) -> Clause:
    """The clause inside any one-clause AllOf or AnyOf around it (the same matches and score)."""
    while isinstance(clause, AllOf | AnyOf) and len(clause.clauses) == 1:
        clause = clause.clauses[0]
    return clause


def _alternatives(clause: AnyOf) -> list[Clause]:
    """The alternatives of `clause` with those of nested AnyOfs (and one-clause AllOfs) lifted up."""
    out: list[Clause] = []
    for c in map(_unwrapped, clause.clauses):
        if isinstance(c, AnyOf):
            out += _alternatives(c)
        else:
            out.append(c)
    return out
