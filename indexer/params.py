"""Search parameters from a URL (OPAC pages, the public API, the prefectural cross-search) → SearchRequest.

One function for every caller, so a bookmarked `/search?title=…&author=…` and
`/api/v1/search?title=…&author=…` mean the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stdnum import isbn as stdnum_isbn

from indexer.query import (
    FACETS,
    MAX_PAGE_SIZE,
    Bool,
    Keyword,
    Node,
    QueryError,
    Range,
    SearchRequest,
    Text,
    parse_keywords,
)

FIELD_PARAMS = ("title", "author", "publisher", "subject", "series")
_ISBN_CHARS = re.compile(r"^[0-9Xx\-‐－ ]{10,17}$")


def normalize_isbn(text: str) -> str | None:
    """ISBN-10 or -13, with or without hyphens → ISBN-13 digits; None if it is not a valid ISBN.
    The second book-JAN barcode (192…) is not an ISBN and gives None."""
    compact = re.sub(r"[\-‐－ ]", "", text.strip())
    if compact.startswith("192") or not stdnum_isbn.is_valid(compact):
        return None
    return str(stdnum_isbn.to_isbn13(compact))


@dataclass(frozen=True)
class Params:
    request: SearchRequest
    mode: str  # how text fields match: partial, exact, prefix


def _int(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(name, raw, "expected a whole number") from None
    if not low <= value <= high:
        raise QueryError(name, raw, f"expected {low} to {high}")
    return value


def from_params(params: Mapping[str, str], *, default_facets: tuple[str, ...] = FACETS) -> SearchRequest:
    """Build the search a URL asks for. Unknown parameters are ignored; bad values raise QueryError."""
    mode = params.get("match") or "partial"
    if mode not in ("partial", "exact", "prefix"):
        raise QueryError("match", mode, "expected partial, exact or prefix")
    must: list[Node] = []
    q = (params.get("q") or "").strip()
    if q:
        isbn = normalize_isbn(q) if _ISBN_CHARS.match(q) else None
        node = Keyword("isbn", isbn) if isbn else parse_keywords(q)
        if node is not None:
            must.append(node)
    for name in FIELD_PARAMS:
        value = (params.get(name) or "").strip()
        if value:
            node = Text(name, value[:500], mode) if mode != "partial" else parse_keywords(value, name)  # type: ignore[arg-type]
            if node is not None:
                must.append(node)
    isbn_param = (params.get("isbn") or "").strip()
    if isbn_param:
        isbn = normalize_isbn(isbn_param)
        if isbn is None:
            raise QueryError("isbn", isbn_param, "not a valid ISBN-10 or ISBN-13")
        must.append(Keyword("isbn", isbn))
    ndc = (params.get("ndc") or "").strip()
    if ndc:
        if not re.fullmatch(r"[0-9][0-9.]{0,15}", ndc):
            raise QueryError("ndc", ndc, "expected an NDC number such as 913 or 913.6")
        must.append(Keyword("ndc", ndc, prefix=True))
    filters: list[Node] = []
    year_from = _int(params, "year_from", None, 0, 9999)
    year_to = _int(params, "year_to", None, 0, 9999)
    if year_from is not None or year_to is not None:
        filters.append(Range("year", year_from, year_to))
    for name in ("branch", "material_type", "language", "ndc_class"):
        value = (params.get(name) or "").strip()
        if value:
            filters.append(Keyword(name, value))
    available = (params.get("available") or "").strip().lower()
    if available in ("1", "true", "yes", "on"):
        filters.append(Keyword("available", "true"))
    elif available not in ("", "0", "false", "no", "off"):
        raise QueryError("available", available, "expected true or false")
    query: Node | None = None
    if len(must) == 1:
        query = must[0]
    elif must:
        query = Bool(must=tuple(must))
    return SearchRequest(
        query=query,
        filters=tuple(filters),
        facets=default_facets,
        sort=(params.get("sort") or "relevance").strip(),
        page=_int(params, "page", 1, 1, 10_000) or 1,
        size=_int(params, "size", 20, 1, MAX_PAGE_SIZE) or 20,
    )


def has_criteria(params: Mapping[str, str]) -> bool:
    keys = ("q", *FIELD_PARAMS, "isbn", "ndc", "year_from", "year_to", "branch", "available", "material_type")
    return any((params.get(k) or "").strip() for k in keys)
