"""Record → search document: the pre-analysed tokens every engine indexes with a whitespace tokenizer.

Each text group (title, author, publisher, subject, series) becomes five token fields:
  <g>_c   Sudachi mode C units (normalised: ヴァイオリン → バイオリン, 圖 → 図)
  <g>_a   mode A units (shorter: 図書館情報学 → 図書 館 情報 学), and each C unit that splits (図書館情報学
          too): every unit at either length, so one term finds a query's unit (indexer/plan.py)
  <g>_r   reading tokens in folded katakana
  <g>_rb  character bigrams of the reading (kana searches match anywhere in the reading)
  <g>_bg  character bigrams of the normalised text (partial matches inside words)
plus keyword fields for filters and facets. Display data is not stored in the index: hits are ids,
and the page reads the records from PostgreSQL, the single source of truth.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from indexer import analysis

GROUPS = ("title", "author", "publisher", "subject", "series")
SUFFIXES = ("c", "a", "r", "rb", "bg")
KEYWORDS = ("isbn", "ndc", "ndc_class", "branch", "available", "material_type", "language", "title_exact")


_PARTICLE_KANA = str.maketrans({"ハ": "ワ", "ヘ": "エ", " ": None})  # spaces out, as analysis.reading_bigrams


def reading_bigrams(folded_reading: str) -> list[str]:
    """Bigrams for the <g>_rb field. ハ/ワ and ヘ/エ are merged here only: catalogue readings write the
    particles as pronounced (ワガハイ ワ ネコ), people type them as written (わがはいはねこ)."""
    return analysis.char_bigrams(folded_reading.translate(_PARTICLE_KANA))


def bigrams(text: str) -> list[str]:
    return analysis.char_bigrams("".join(text.split()))  # every whitespace character out


def _tokens(text: str, reading: str | None) -> dict[str, list[str]]:
    return _analysed(text, reading)[0]


def _analysed(text: str, reading: str | None) -> tuple[dict[str, list[str]], analysis.Analysis, str | None]:
    """A text's tokens by suffix, its analysis, and its given reading folded (None without one)."""
    a = analysis.analyze(text)
    units_a = a.units_a
    if not all(a.whole_units):
        units_a = units_a + [u for u, whole in zip(a.units_c, a.whole_units, strict=True) if not whole]
    if reading:
        given = analysis.fold_reading(reading)
        return {"c": a.units_c, "a": units_a, "r": given.split(), "rb": reading_bigrams(given),
                "bg": bigrams(a.normalized)}, a, given
    return {"c": a.units_c, "a": units_a, "r": a.reading_tokens, "rb": reading_bigrams(a.reading),
            "bg": bigrams(a.normalized)}, a, None


# A text's tokens for each suffix joined with spaces, or None for a suffix with no tokens: a field is then
# the texts' strings joined, which is the same text as all their tokens joined (texts without tokens left out).
Joined = tuple[str | None, ...]


def _joined(tokens: dict[str, list[str]]) -> Joined:
    return tuple(" ".join(t) if (t := tokens[s]) else None for s in SUFFIXES)


@lru_cache(maxsize=50_000)  # at most some tens of MB
def _heading_joined(text: str, reading: str | None) -> Joined:
    """Tokens of a name, publisher, subject or series, remembered: the same headings recur across many
    records (one author, many books), and their analysis is most of a rebuild's work. Titles are not
    remembered; they rarely repeat."""
    return _joined(_tokens(text, reading))


def text_tokens(texts: Iterable[tuple[str, str | None]], headings: bool = False) -> dict[str, list[str]]:
    """Token lists for one group from (text, reading-or-None) pairs; `headings` for the groups whose
    values recur (authors, publishers, subjects, series)."""
    out: dict[str, list[str]] = {s: [] for s in SUFFIXES}
    for text, reading in texts:
        if not text:
            continue
        if headings:
            for suffix, joined in zip(SUFFIXES, _heading_joined(text, reading), strict=True):
                if joined is not None:
                    out[suffix] += joined.split(" ")
        else:
            for suffix, tokens in _tokens(text, reading).items():
                out[suffix] += tokens
    return out


def _names(items: Any, key: str = "name", reading: str = "reading") -> list[tuple[str, str | None]]:
    return [(i.get(key) or "", i.get(reading)) for i in items or [] if isinstance(i, dict)]


_FIELD_NAMES = {group: tuple((suffix, f"{group}_{suffix}") for suffix in SUFFIXES) for group in GROUPS}


def _group_fields(group: str, texts: list[Joined], doc: dict[str, Any]) -> None:
    """The group's five token fields in `doc` from its texts' joined tokens, in text order."""
    for i, (_, name) in enumerate(_FIELD_NAMES[group]):
        doc[name] = " ".join([j for t in texts if (j := t[i]) is not None])


def _headings(pairs: Iterable[tuple[str, str | None]]) -> list[Joined]:
    return [_heading_joined(text, reading) for text, reading in pairs if text]


def build(record_id: int, data: dict[str, Any], holdings: list[tuple[str, str]], created_at: datetime,
          material_type: str = "book") -> dict[str, Any]:
    """The document for one record. `holdings` are (branch code, status) of its items."""
    title, title_reading = data.get("title") or "", data.get("title_reading")
    # the title's own analysis also gives title_exact and title_sort (by its generated reading if it has none)
    titles: list[Joined] = []
    normalized_title, sort_key = "", analysis.fold_reading(title_reading) if title_reading else ""
    if title:
        title_tokens, a, folded = _analysed(title, title_reading)
        titles.append(_joined(title_tokens))
        normalized_title = a.normalized
        sort_key = folded if folded is not None else analysis.fold_reading(a.generated_reading)
    titles += [_joined(_tokens(t, None)) for t in data.get("parallel_titles") or [] if isinstance(t, str) and t]
    if data.get("subtitle"):
        titles.append(_joined(_tokens(data["subtitle"], None)))
    doc: dict[str, Any] = {"id": record_id}
    _group_fields("title", titles, doc)
    _group_fields("author", _headings(_names(data.get("authors"))), doc)
    publisher = data.get("publisher")
    _group_fields("publisher", _headings([(publisher, data.get("publisher_reading"))] if publisher else []), doc)
    _group_fields("subject", _headings(_names(data.get("subjects"), "term")), doc)
    _group_fields("series", _headings(_names(data.get("series"), "title")), doc)
    ndc = (data.get("ndc") or "").strip()
    doc.update({
        "title_exact": normalized_title.replace(" ", ""),
        "title_sort": sort_key.replace(" ", ""),
        "isbn": list(data.get("isbns") or []),
        "ndc": [ndc] if ndc else [],
        "ndc_class": [ndc[0]] if ndc[:1].isdigit() else [],
        "branch": sorted({b for b, _ in holdings}),
        "available": ["true" if any(s == "available" for _, s in holdings) else "false"],
        "material_type": [material_type],
        "language": [data["language"]] if data.get("language") else [],
        "year": int(data["year"]) if isinstance(data.get("year"), int) else None,
        "created": int(created_at.timestamp()),
    })
    return doc
