"""How a text condition matches the pre-analysed fields: one plan, rendered by each engine.

The rules (units C or A, surface bigrams for partial matches inside words, reading bigrams and
reading tokens for kana queries, an exact-title bonus) live here once, so tantivy and OpenSearch
cannot drift apart; each engine only translates these clauses into its own query objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from indexer import analysis
from indexer.document import bigrams, reading_bigrams
from indexer.query import Text

BOOST = {"c": 3.0, "a": 2.0, "r": 2.0, "rb": 1.0, "bg": 1.0, "exact": 5.0}


@dataclass(frozen=True)
class Term:
    field: str
    value: str
    boost: float = 1.0


@dataclass(frozen=True)
class Phrase:
    """Tokens in this order, adjacent (a one-token phrase is a term)."""

    field: str
    tokens: tuple[str, ...]
    boost: float = 1.0


@dataclass(frozen=True)
class Prefix:
    field: str
    value: str


@dataclass(frozen=True)
class AllOf:
    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one clause; an empty AnyOf matches nothing."""

    clauses: tuple[Clause, ...]


Clause = Term | Phrase | Prefix | AllOf | AnyOf


# A search in every field (`any`) plans the same words once per field group: analyse them once. Small on
# purpose: it serves one request's groups, not a cache of popular searches.
_analyze_query = lru_cache(maxsize=64)(analysis.analyze_query)


def is_kana(text: str) -> bool:
    return analysis.is_kana_only(analysis.normalize(text))


def unit_clause(group: str, unit: str, whole: bool) -> Clause:
    """A query's mode C unit, found as a whole word or inside a longer one (図書 in 図書館).

    The A fields hold every unit at either length (indexer/document.py), so one A term finds all the texts
    with the unit, where the pair (C or A) made tantivy merge two postings lists for every candidate: with
    common units (の, 日, 山) the pair cost a whole-title search 10-13 ms at 3.65M records, the one term 1-2
    ms; the judged queries rank the same (tests/test_relevance.py). A unit that splits (図書館 → 図書 館)
    keeps the pair: an index built before the A fields held such units (analyzer rules 1) has it only as a
    C unit, and answers right until the rebuild replaces it."""
    if whole:
        return Term(f"{group}_a", unit, BOOST["a"])
    return AnyOf((Term(f"{group}_c", unit, BOOST["c"]), Term(f"{group}_a", unit, BOOST["a"])))


def text_clause(group: str, node: Text) -> Clause:
    """The clause for `node` within one field group (title, author, publisher, subject, series)."""
    normalized = analysis.normalize(node.text).replace(" ", "")
    if node.mode == "exact" and group == "title":
        return Term("title_exact", normalized)
    if node.mode == "prefix" and group == "title":
        prefixes: list[Clause] = [Prefix("title_exact", normalized)]
        if is_kana(node.text):
            prefixes.append(Prefix("title_sort", analysis.fold_reading(node.text).replace(" ", "")))
        return AnyOf(tuple(prefixes))
    a = _analyze_query(node.text)
    options: list[Clause] = []
    kana = is_kana(node.text)
    # A kana word is found by its reading (and by its surface bigrams) below. Its Sudachi units would only
    # add matches with the words scattered (ある 母 の 話 anywhere in the record) and cost most of the
    # search: kana units such as の and が are in almost every title.
    if a.units_c and not (kana and node.mode == "partial"):
        if node.mode in ("phrase", "exact") and len(a.units_c) > 1:
            options.append(Phrase(f"{group}_c", tuple(a.units_c), BOOST["c"]))
        else:
            options.append(AllOf(tuple(unit_clause(group, u, whole) for u, whole in zip(a.units_c, a.whole_units,
                                                                                        strict=True))))
    bg = bigrams(normalized)
    if len(bg) > 1 or (bg and len(bg[0]) == 2):
        options.append(Phrase(f"{group}_bg", tuple(bg), BOOST["bg"]))
    if kana:
        rb = reading_bigrams(a.reading)
        if len(rb) > 1:
            options.append(Phrase(f"{group}_rb", tuple(rb), BOOST["rb"]))
        elif rb:
            options.append(Term(f"{group}_r", rb[0]))
        options += [Term(f"{group}_r", token, BOOST["r"]) for token in a.reading.split()]
    if options and group == "title" and normalized:
        # A title that is exactly the query ranks above longer titles that contain it.
        options.append(Term("title_exact", normalized, BOOST["exact"]))
    return AnyOf(tuple(options))
