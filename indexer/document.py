"""Record → search document: the pre-analysed tokens every engine indexes with a whitespace tokenizer.

Each text group (title, author, publisher, subject, series) becomes five token fields:
  <g>_c   Sudachi mode C units (normalised: ヴァイオリン → バイオリン, 圖 → 図)
  <g>_a   mode A units (shorter: 図書館情報学 → 図書 館 情報 学)
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


def reading_bigrams(folded_reading: str) -> list[str]:
    """Bigrams for the <g>_rb field. ハ/ワ and ヘ/エ are merged here only: catalogue readings write the
    particles as pronounced (ワガハイ ワ ネコ), people type them as written (わがはいはねこ)."""
    return analysis.reading_bigrams(folded_reading.replace("ハ", "ワ").replace("ヘ", "エ"))


def bigrams(text: str) -> list[str]:
    chars = [c for c in text if not c.isspace()]
    if len(chars) < 2:
        return chars
    return [chars[i] + chars[i + 1] for i in range(len(chars) - 1)]


def _tokens(text: str, reading: str | None) -> dict[str, list[str]]:
    a = analysis.analyze(text)
    out = {"c": a.units_c, "a": a.units_a, "bg": bigrams(a.normalized)}
    if reading:
        folded = analysis.fold_reading(reading)
        out.update(r=folded.split(), rb=reading_bigrams(folded))
    else:
        out.update(r=a.reading_tokens, rb=reading_bigrams(a.reading))
    return out


@lru_cache(maxsize=50_000)  # at most some tens of MB
def _heading_tokens(text: str, reading: str | None) -> tuple[tuple[str, ...], ...]:
    """Tokens of a name, publisher, subject or series, remembered: the same headings recur across many
    records (one author, many books), and their analysis is most of a rebuild's work. Titles are not
    remembered; they rarely repeat."""
    out = _tokens(text, reading)
    return tuple(tuple(out[s]) for s in SUFFIXES)


def text_tokens(texts: Iterable[tuple[str, str | None]], headings: bool = False) -> dict[str, list[str]]:
    """Token lists for one group from (text, reading-or-None) pairs; `headings` for the groups whose
    values recur (authors, publishers, subjects, series)."""
    out: dict[str, list[str]] = {s: [] for s in SUFFIXES}
    for text, reading in texts:
        if not text:
            continue
        if headings:
            for suffix, remembered in zip(SUFFIXES, _heading_tokens(text, reading), strict=True):
                out[suffix] += remembered
        else:
            for suffix, tokens in _tokens(text, reading).items():
                out[suffix] += tokens
    return out


def _names(items: Any, key: str = "name", reading: str = "reading") -> list[tuple[str, str | None]]:
    return [(i.get(key) or "", i.get(reading)) for i in items or [] if isinstance(i, dict)]


def build(record_id: int, data: dict[str, Any], holdings: list[tuple[str, str]], created_at: datetime,
          material_type: str = "book") -> dict[str, Any]:
    """The document for one record. `holdings` are (branch code, status) of its items."""
    groups = {
        "title": [(data.get("title") or "", data.get("title_reading")),
                  *[(t, None) for t in data.get("parallel_titles") or [] if isinstance(t, str)],
                  *([(data["subtitle"], None)] if data.get("subtitle") else [])],
        "author": _names(data.get("authors")),
        "publisher": [(data.get("publisher") or "", data.get("publisher_reading"))],
        "subject": _names(data.get("subjects"), "term"),
        "series": _names(data.get("series"), "title"),
    }
    doc: dict[str, Any] = {"id": record_id}
    for group, texts in groups.items():
        for suffix, tokens in text_tokens(texts, headings=group != "title").items():
            doc[f"{group}_{suffix}"] = " ".join(tokens)
    ndc = (data.get("ndc") or "").strip()
    reading = data.get("title_reading") or analysis.reading_of(data.get("title") or "")
    doc.update({
        "title_exact": analysis.normalize(data.get("title") or "").replace(" ", ""),
        "title_sort": analysis.fold_reading(reading).replace(" ", "") if reading else "",
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
