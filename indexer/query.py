"""Shoka's own query model, compiled to each engine. User input never reaches an engine's query
parser: the web layer builds these objects from form fields, and `parse_keywords` turns a simple
search box into them (AND by default, OR, NOT/-, "quoted phrases"), tolerating any input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TEXT_FIELDS = ("any", "title", "author", "publisher", "subject", "series")
KEYWORD_FIELDS = ("isbn", "ndc", "branch", "material_type", "language", "available", "id")
RANGE_FIELDS = ("year",)
FACETS = ("branch", "available", "material_type", "ndc_class", "year", "language")
SORTS = ("relevance", "newest", "oldest", "title")
Mode = Literal["partial", "exact", "prefix", "phrase"]
MAX_QUERY_CHARS = 500  # longer input is cut, not refused: a pasted paragraph still finds something
MAX_TERMS = 32
MAX_PAGE_SIZE = 100
MAX_RESULT_WINDOW = 10_000  # deepest hit one can page to


@dataclass(frozen=True)
class Text:
    """Words matched in a group of text fields (title, author, ... or any)."""

    field: str
    text: str
    mode: Mode = "partial"


@dataclass(frozen=True)
class Keyword:
    """An exact value (ISBN, branch code, ...); with prefix=True, values starting with it (NDC 91 → 913.6)."""

    field: str
    value: str
    prefix: bool = False


@dataclass(frozen=True)
class Range:
    field: str
    gte: int | None = None
    lte: int | None = None


@dataclass(frozen=True)
class Bool:
    must: tuple[Node, ...] = ()
    should: tuple[Node, ...] = ()
    must_not: tuple[Node, ...] = ()


Node = Text | Keyword | Range | Bool


@dataclass(frozen=True)
class SearchRequest:
    query: Node | None = None  # None: everything (e.g. new arrivals)
    filters: tuple[Node, ...] = ()
    facets: tuple[str, ...] = ()
    sort: str = "relevance"
    page: int = 1
    size: int = 20

    def __post_init__(self) -> None:
        for f in self.facets:
            if f not in FACETS:
                raise QueryError("facets", f, f"expected one of {', '.join(FACETS)}")
        if self.sort not in SORTS:
            raise QueryError("sort", self.sort, f"expected one of {', '.join(SORTS)}")
        if not 1 <= self.size <= MAX_PAGE_SIZE:
            raise QueryError("size", self.size, f"expected 1 to {MAX_PAGE_SIZE}")
        if self.page < 1:
            raise QueryError("page", self.page, "expected 1 or more")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


@dataclass
class Hit:
    id: int
    score: float
    available: bool | None = None
    """Whether the record has an item on the shelf, as the index has it (changes reach it within 2 s, as they
    reach the `available` filter and facet); None when the engine does not say, and the page asks PostgreSQL."""


@dataclass
class SearchResult:
    total: int
    hits: list[Hit]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


class QueryError(ValueError):
    """A request value the search cannot use; names the parameter and the value."""

    def __init__(self, param: str, value: object, reason: str) -> None:
        super().__init__(f"{param}: {value!r} — {reason}")
        self.param = param
        self.value = value
        self.reason = reason


def _tokens(text: str) -> list[tuple[str, bool]]:
    """Split on whitespace (ASCII and ideographic) keeping "quoted phrases"; (token, quoted).
    An unbalanced quote runs to the end of the input."""
    out: list[tuple[str, bool]] = []
    buf: list[str] = []
    quoted = False
    for ch in text.replace("\u3000", " ").replace("“", '"').replace("”", '"'):
        if ch == '"':
            if quoted or buf:
                out.append(("".join(buf), quoted))
            buf, quoted = [], not quoted
        elif ch.isspace() and not quoted:
            if buf:
                out.append(("".join(buf), False))
            buf = []
        else:
            buf.append(ch)
    if buf:
        out.append(("".join(buf), quoted))
    return [(t.strip(), q) for t, q in out if t.strip()]


def parse_keywords(text: str, field: str = "any") -> Node | None:
    """A search box: words are ANDed; `OR` between words makes alternatives; `NOT word` or `-word`
    excludes; "…" is a phrase. Returns None when nothing searchable is left."""
    if field not in TEXT_FIELDS:
        raise QueryError("field", field, f"expected one of {', '.join(TEXT_FIELDS)}")
    tokens = _tokens(text[:MAX_QUERY_CHARS])[:MAX_TERMS]
    groups: list[list[Node]] = [[]]  # OR-separated groups of ANDed clauses
    must_not: list[Node] = []
    negate = False
    for token, quoted in tokens:
        if not quoted and token in ("OR", "|", "または"):
            if groups[-1]:
                groups.append([])
            continue
        if not quoted and token in ("AND", "かつ"):
            continue
        if not quoted and token in ("NOT", "-"):
            negate = True
            continue
        if not quoted and token.startswith("-") and len(token) > 1:
            negate, token = True, token[1:]
        node = Text(field, token, "phrase" if quoted else "partial")
        if negate:
            must_not.append(node)
            negate = False
        else:
            groups[-1].append(node)
    alternatives = [Bool(must=tuple(g)) if len(g) > 1 else g[0] for g in groups if g]
    if not alternatives:
        return None  # only exclusions or nothing: nothing to search for
    positive: Node = alternatives[0] if len(alternatives) == 1 else Bool(should=tuple(alternatives))
    return Bool(must=(positive,), must_not=tuple(must_not)) if must_not else positive


def relax_to_or(node: Node | None) -> Node | None:
    """The no-hit retry: every AND of words becomes an OR (exclusions stay)."""
    if isinstance(node, Bool):
        if node.must and not node.should and all(isinstance(n, Text) for n in node.must) and len(node.must) > 1:
            return Bool(should=node.must, must_not=node.must_not)
        return Bool(must=tuple(relax_to_or(n) or n for n in node.must),
                    should=tuple(relax_to_or(n) or n for n in node.should), must_not=node.must_not)
    return node
