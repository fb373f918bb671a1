"""The normalized bibliographic record (書誌) that Shoka stores, indexes and shows.

Every importer (MARC through a mapping profile, Aozora Bunko CSV) produces `BibRecord`s; the rest
of Shoka never looks at MARC tags. Text fields keep the form the source gives; readings (ヨミ) are in
katakana as the source gives them (NDL readings are spaced by word, e.g. 'コレカラ ノ ホン ノ ハナシ'),
or None when the source has none. The indexer fills missing readings with Sudachi and lists the
fields it filled in `readings_generated`.

Stored as `to_json()` in the `bib_record.data` jsonb column; the original record goes, verbatim,
to the `raw` bytea column beside it (not into the JSON unless asked).

Importers yield `ImportItem`s: `Imported(record, position, offset)` for a good record,
`Rejected(position, offset, reason)` for input that could not be read, so an import can report
every rejected record and go on.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, fields
from typing import Any

import orjson


@dataclass
class Name:
    """A person or body responsible for the work (著者標目)."""

    name: str
    reading: str | None = None
    role: str | None = None            # as the source says it: '著者', '翻訳者', 'editor', 'edt' ...
    dates: str | None = None           # '1867-1916', '1955-'
    transcription: str | None = None   # romanization, e.g. 'Hagino, Masaki'
    authority_id: str | None = None    # the source's authority record id (NDL: 700 $0)


@dataclass
class Series:
    """A series statement (シリーズ)."""

    title: str
    reading: str | None = None
    volume: str | None = None
    transcription: str | None = None


@dataclass
class Subject:
    """A subject heading or keyword (件名)."""

    term: str
    reading: str | None = None
    scheme: str | None = None          # 'ndlsh', 'lcsh', 'bsh', 'keyword' ...
    transcription: str | None = None
    authority_id: str | None = None


@dataclass
class Classification:
    """A class number: NDC, NDLC, DDC ..."""

    scheme: str                        # 'ndc', 'ndlc', 'ddc', 'lcc' or the source's code
    number: str
    edition: str | None = None         # '9', '10' for NDC


@dataclass
class Title:
    """A title other than the title proper: variant, contents, original, ..."""

    title: str
    reading: str | None = None
    kind: str | None = None            # 'variant', 'contents', 'original', 'translated', ...
    transcription: str | None = None


_NESTED: dict[str, type] = {"authors": Name, "series": Series, "subjects": Subject,
                            "classifications": Classification, "other_titles": Title}


@dataclass
class BibRecord:
    """One bibliographic record, normalized. `source` + `control_number` identify it."""

    source: str                        # 'JTNDL', 'aozora', or the MARC 003
    control_number: str                # MARC 001, or the Aozora 作品ID
    title: str                         # title proper (245 $a, 251 $A, 作品名)
    title_reading: str | None = None   # katakana
    title_transcription: str | None = None
    subtitle: str | None = None        # other title information (245 $b, 副題)
    subtitle_reading: str | None = None
    part: str | None = None            # number/name of part (245 $n $p, 巻次)
    parallel_titles: list[str] = field(default_factory=list)
    other_titles: list[Title] = field(default_factory=list)
    responsibility: str | None = None  # statement of responsibility as transcribed (245 $c)
    authors: list[Name] = field(default_factory=list)
    edition: str | None = None
    publisher: str | None = None
    publisher_reading: str | None = None
    publisher_transcription: str | None = None
    place: str | None = None
    year: int | None = None
    extent: str | None = None
    series: list[Series] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    classifications: list[Classification] = field(default_factory=list)
    ndc: str | None = None             # '913.6'; the NDC of the highest edition when there are several
    ndc_edition: str | None = None     # '9', '10'
    isbns: list[str] = field(default_factory=list)   # ISBN-13, digits only
    price: str | None = None           # as given: '1800円'
    language: str | None = None        # MARC language code: 'jpn'
    audience: str | None = None        # 'juvenile' for children's material, else None
    material_type: str = "book"        # 'book', 'etext', 'serial', 'score', 'sound', 'video', ...
    links: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    readings_generated: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    raw: bytes | None = None           # the original record, verbatim
    raw_format: str | None = None      # 'marc21', 'unimarc', 'marcxml', 'aozora-csv'

    def to_json(self, *, include_raw: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (for a jsonb column). `raw` is left out unless asked for (base64).

        What `dataclasses.asdict` gives, built directly: asdict deep-copies every value and was most of
        a bulk import's Python time (tests/test_marc_import.py holds the two equal)."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        for key, value in data.items():
            if isinstance(value, list):
                data[key] = [_plain(v) for v in value]
        data["readings_generated"] = sorted(self.readings_generated)
        raw = data.pop("raw")
        if include_raw and raw is not None:
            data["raw_base64"] = base64.b64encode(raw).decode("ascii")
        return data

    def json_bytes(self) -> bytes:
        """`to_json()` encoded as UTF-8 JSON, for saving: orjson encodes the nested records (dataclasses)
        itself, which takes a third of the time of making them dicts first."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["readings_generated"] = sorted(self.readings_generated)
        del data["raw"]
        return orjson.dumps(data)

    def dumps(self, *, include_raw: bool = False) -> str:
        """`to_json()` as text."""
        return orjson.dumps(self.to_json(include_raw=include_raw)).decode()

    @classmethod
    def from_json(cls, data: dict[str, Any] | str | bytes) -> BibRecord:
        """The record back from `to_json()` (a dict, or JSON text). Unknown keys are ignored, so
        rows written by a newer Shoka still load."""
        if isinstance(data, str | bytes):
            data = orjson.loads(data)
        assert isinstance(data, dict)
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in _NESTED:
                nested = _NESTED[key]
                names = {f.name for f in fields(nested)}
                kwargs[key] = [nested(**{k: v for k, v in item.items() if k in names}) for item in value or []]
            elif key == "readings_generated":
                kwargs[key] = set(value or [])
            elif key == "raw_base64":
                kwargs["raw"] = base64.b64decode(value) if value is not None else None
            elif key in known and key != "raw":
                kwargs[key] = value
        return cls(**kwargs)


_FIELD_NAMES = tuple(f.name for f in fields(BibRecord))
_NESTED_FIELDS = {t: tuple(f.name for f in fields(t)) for t in _NESTED.values()}


def _plain(value: Any) -> Any:
    """A list element of a BibRecord as JSON: a nested record (Name, Subject …) as a dict, else itself."""
    names = _NESTED_FIELDS.get(type(value))
    return value if names is None else {name: getattr(value, name) for name in names}


@dataclass
class Imported:
    """A record read successfully. `position` is its 1-based number in the file (for CSV: the line
    where the work's first row starts); `offset` its byte offset in the file, when known."""

    record: BibRecord
    position: int
    offset: int | None = None


@dataclass
class Rejected:
    """Input that could not be turned into a record, with the reason in plain words.

    For MARC, `position` is the 1-based record number and `offset` the byte offset where it starts;
    for CSV, `position` is the line number and `offset` is None. `identifier` is the record's
    control number (001, 作品ID) when it could still be read."""

    position: int
    offset: int | None
    reason: str
    identifier: str | None = None

    def __str__(self) -> str:
        where = f"record {self.position} (byte {self.offset})" if self.offset is not None else f"line {self.position}"
        ident = f" [{self.identifier}]" if self.identifier else ""
        return f"{where}{ident}: {self.reason}"


@dataclass(slots=True)
class Staged:
    """A record read and made ready to save where it was read (in a reading process): its missing
    readings filled and its columns encoded for COPY (`api.catalog.service.encode_record`). It carries
    what `run_import` needs and not the BibRecord: rebuilding that from its pickle in the importing
    process cost more than encoding it there."""

    source: str
    control_number: str
    isbns: list[str]
    row: bytes
    readings_generated: int
    position: int
    offset: int | None = None


ImportItem = Imported | Rejected
