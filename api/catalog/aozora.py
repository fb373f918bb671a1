"""Read Aozora Bunko (青空文庫) index CSVs as e-text records linking to the work's card page.

Two formats, told apart by their header:

- the extended index, list_person_all_extended_utf8.csv (55 columns: 作品ID, 作品名, 作品名読み, ...,
  分類番号, 公開日, 図書カードURL, 人物ID, 姓, 名, 姓読み, 名読み, 役割フラグ, ...). The official file
  has an unquoted header and unquoted dates; other copies quote every field. Both read the same.
- the older list, list_person_all_utf8.csv (人物ID, 著者名, 作品ID, 作品名, 仮名遣い種別, 翻訳者名等, ...):
  no readings, no roles, no card URL. The card URL is built as
  https://www.aozora.gr.jp/cards/{人物ID}/card{int(作品ID)}.html. Roles are inferred: a person is
  the translator (翻訳者) when their name is listed in 翻訳者名等, the author (著者) otherwise; a
  person on two rows of one work but listed once there (上田敏, 海潮音) is both. 翻訳者名等 also
  names editors and the like ("等"), which this format cannot tell apart. The card's 人物ID is the
  lowest 人物ID among the work's authors (heuristic: a work by several authors lists each one).

UTF-8, with or without a byte-order mark. One row per (work, person, role): the rows of a work are
merged into one record with a `Name` per person and role. The reader makes two passes over the
file: the first counts the rows of each 作品ID, the second emits a work as soon as its last row
has been read, so memory holds only works still incomplete (rows of one work are adjacent in the
extended file; in the older file 930 of 15,226 rows are not, and at most 448 works are pending at
once: about 2 MB at peak for the whole file) plus one integer per work.

A missing required column raises `AozoraFormatError` naming the columns. A row with a bad value
(non-numeric ID, empty title, malformed date or URL, undecodable bytes, wrong number of fields)
is `Rejected` with its line number and the import goes on; the other rows of its work still make
the record, which then carries a warning naming the rejected line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from api.catalog.bib import BibRecord, Classification, Imported, ImportItem, Name, Rejected

CARD_URL = "https://www.aozora.gr.jp/cards/{person}/card{work}.html"
PUBLISHER = "青空文庫"
PUBLISHER_READING = "アオゾラブンコ"

EXTENDED_REQUIRED: tuple[str, ...] = ("作品ID", "作品名", "作品名読み", "分類番号", "公開日", "図書カードURL",
                                      "人物ID", "姓", "名", "姓読み", "名読み", "役割フラグ")
LIST_REQUIRED: tuple[str, ...] = ("人物ID", "著者名", "作品ID", "作品名", "翻訳者名等")

_ID = re.compile(r"^\d{1,6}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NDC = re.compile(r"^(K?)(\d{3}(?:\.\d+)?)$")
_URL = re.compile(r"^https?://\S+$")


class AozoraFormatError(ValueError):
    """The file is not an Aozora Bunko index CSV Shoka can read (e.g. required columns missing)."""


def to_katakana(text: str) -> str:
    """Hiragana to katakana (ぁ-ゖ → ァ-ヶ, ゝゞ → ヽヾ); everything else unchanged."""
    return text.translate(_HIRA_TO_KATA)


_HIRA_TO_KATA = {c: c + 0x60 for c in range(0x3041, 0x3097)} | {0x309D: 0x30FD, 0x309E: 0x30FE}


@dataclass
class _Row:
    line: int
    values: dict[str, str]
    raw: bytes


@dataclass
class _Work:
    rows: list[_Row] = field(default_factory=list)
    rejected_lines: list[int] = field(default_factory=list)


class _Lines:
    """Feeds csv.reader one decoded line at a time and remembers the raw bytes and line numbers of
    the lines that made the current row; undecodable lines are noted, not fatal."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.number = 0
        self.raw: list[bytes] = []
        self.bad_line: int | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.stream.readline()
        if not line:
            raise StopIteration
        self.number += 1
        if self.number == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        self.raw.append(line)
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            if self.bad_line is None:
                self.bad_line = self.number
            return line.decode("utf-8", "replace")

    def take(self) -> tuple[bytes, int | None]:
        raw, bad = b"".join(self.raw), self.bad_line
        self.raw, self.bad_line = [], None
        return raw, bad


def _rows(path: Path) -> Iterator[tuple[int, list[str] | None, bytes, str | None]]:
    """(first line number, fields or None, raw bytes, problem) for the header and every row."""
    with open(path, "rb") as stream:
        lines = _Lines(stream)
        reader = csv.reader(lines, strict=True)
        while True:
            start = lines.number + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raw, _ = lines.take()
                yield start, None, raw, f"not valid CSV: {e}"
                continue
            raw, bad = lines.take()
            if bad is not None:
                yield start, fields, raw, f"invalid UTF-8 on line {bad}"
            elif fields or raw.strip():
                yield start, fields, raw, None


def _header(path: Path) -> tuple[list[str], bytes, str]:
    for _line, fields, raw, problem in _rows(path):
        if fields is None or problem:
            raise AozoraFormatError(f"{path.name}: the header line cannot be read ({problem})")
        header = [h.strip() for h in fields]
        if "役割フラグ" in header or "図書カードURL" in header or "作品名読み" in header:
            kind, required = "extended", EXTENDED_REQUIRED
        elif "著者名" in header or "翻訳者名等" in header:
            kind, required = "list", LIST_REQUIRED
        else:
            # neither: name what is missing for the format it is closest to
            ext_missing = [c for c in EXTENDED_REQUIRED if c not in header]
            list_missing = [c for c in LIST_REQUIRED if c not in header]
            kind, required = ("extended", EXTENDED_REQUIRED) if len(ext_missing) / len(EXTENDED_REQUIRED) <= \
                len(list_missing) / len(LIST_REQUIRED) else ("list", LIST_REQUIRED)
        missing = [c for c in required if c not in header]
        if missing:
            name = "extended index (list_person_all_extended)" if kind == "extended" else \
                "list (list_person_all)"
            raise AozoraFormatError(f"{path.name}: not an Aozora Bunko {name} CSV: missing column(s) "
                                    f"{', '.join(missing)}")
        return header, raw, kind
    raise AozoraFormatError(f"{path.name}: the file is empty (no header line)")


def read_aozora(path: str | Path) -> Iterator[ImportItem]:
    """Stream the works of an Aozora Bunko index CSV (either format) as `Imported` / `Rejected`.
    Raises `AozoraFormatError` before yielding anything if the header lacks required columns."""
    path = Path(path)
    header, header_raw, kind = _header(path)
    return _read(path, header, header_raw, kind)


def _read(path: Path, header: list[str], header_raw: bytes, kind: str) -> Iterator[ImportItem]:
    id_column = header.index("作品ID")
    # pass 1: how many rows each work has, so pass 2 can emit a work at its last row
    remaining: dict[str, int] = {}
    for i, (_line, fields, _raw, _problem) in enumerate(_rows(path)):
        if i and fields is not None and len(fields) > id_column:
            work_id = fields[id_column].strip()
            remaining[work_id] = remaining.get(work_id, 0) + 1
    pending: dict[str, _Work] = {}
    for i, (line, fields, raw, problem) in enumerate(_rows(path)):
        if i == 0:
            continue
        key: str | None = fields[id_column].strip() if fields is not None and len(fields) > id_column else None
        if problem is None and fields is not None and len(fields) != len(header):
            problem = f"the row has {len(fields)} fields, the header has {len(header)}"
        values = dict(zip(header, (f.strip() for f in fields or []), strict=False))
        if problem is None:
            problem = _row_problem(values, kind)
        if key is None or key not in remaining:
            yield Rejected(line, None, problem or "the row has no 作品ID")
            continue
        work = pending.setdefault(key, _Work())
        if problem:
            yield Rejected(line, None, problem, key)
            work.rejected_lines.append(line)
        else:
            work.rows.append(_Row(line, values, raw))
        remaining[key] -= 1
        if remaining[key] == 0:
            del remaining[key]
            done = pending.pop(key)
            if done.rows:
                yield _work_item(done, kind, header_raw)
    for done in pending.values():  # only if the file changed between the two passes
        if done.rows:
            yield _work_item(done, kind, header_raw)


def _row_problem(v: dict[str, str], kind: str) -> str | None:
    for column in ("作品ID", "人物ID"):
        if not _ID.match(v.get(column, "")):
            return f"{column} {v.get(column, '')!r} is not a number of up to six digits"
    if not v.get("作品名"):
        return "作品名 (title) is empty"
    if kind == "extended":
        for column in ("公開日", "最終更新日"):
            value = v.get(column, "")
            if value and not _DATE.match(value):
                return f"{column} {value!r} is not a date (YYYY-MM-DD)"
        url = v.get("図書カードURL", "")
        if url and not _URL.match(url):
            return f"図書カードURL {url!r} is not a URL"
        if not (v.get("姓") or v.get("名")):
            return "the person has no name (姓 and 名 are empty)"
        if not v.get("役割フラグ"):
            return "役割フラグ (role) is empty"
    else:
        date = v.get("状態の開始日", "")
        if date and not _DATE.match(date):
            return f"状態の開始日 {date!r} is not a date (YYYY-MM-DD)"
        if not v.get("著者名"):
            return "著者名 (person) is empty"
    return None


def _work_item(work: _Work, kind: str, header_raw: bytes) -> ImportItem:
    rows = work.rows
    first = rows[0].values
    warnings = [f"row on line {n} of this work was rejected; its person is missing" for n in work.rejected_lines]
    titles = {r.values["作品名"] for r in rows}
    if len(titles) > 1:
        warnings.append(f"the rows of this work give different titles: {' / '.join(sorted(titles))}")
    record = BibRecord(source="aozora", control_number=first["作品ID"], title=first["作品名"],
                       publisher=PUBLISHER, publisher_reading=PUBLISHER_READING, language="jpn",
                       material_type="etext", raw_format="aozora-csv", warnings=warnings,
                       raw=header_raw + b"".join(r.raw for r in rows))
    if kind == "extended":
        _extended(record, rows)
    else:
        _old_list(record, rows)
    return Imported(record, rows[0].line, None)


def _dates(born: str, died: str) -> str | None:
    b, d = born[:4] if born[:4].isdigit() else "", died[:4] if died[:4].isdigit() else ""
    return f"{b}-{d}" if b or d else None


def _extended(record: BibRecord, rows: list[_Row]) -> None:
    v = rows[0].values
    record.title_reading = to_katakana(v["作品名読み"]) or None
    record.subtitle = v.get("副題") or None
    record.subtitle_reading = to_katakana(v.get("副題読み", "")) or None
    if v.get("原題"):
        record.parallel_titles.append(v["原題"])
    year = v.get("公開日", "")[:4]
    record.year = int(year) if year.isdigit() else None
    _classes(record, v.get("分類番号", ""))
    for row in rows:
        r = row.values
        name = " ".join(p for p in (r["姓"], r["名"]) if p)
        reading = " ".join(to_katakana(p) for p in (r["姓読み"], r["名読み"]) if p) or None
        roman = " ".join(p for p in (r.get("姓ローマ字", ""), r.get("名ローマ字", "")) if p) or None
        person = Name(name=name, reading=reading, role=r["役割フラグ"], transcription=roman,
                      dates=_dates(r.get("生年月日", ""), r.get("没年月日", "")), authority_id=r["人物ID"])
        if person not in record.authors:
            record.authors.append(person)
    url = v["図書カードURL"] or CARD_URL.format(person=v["人物ID"], work=int(v["作品ID"]))
    record.links = [url]
    record.notes = _notes(v, published=v.get("公開日"), source_title=v.get("底本名1"),
                          source_publisher=v.get("底本出版社名1"), source_year=v.get("底本初版発行年1"),
                          orthography=v.get("文字遣い種別"))


def _old_list(record: BibRecord, rows: list[_Row]) -> None:
    v = rows[0].values
    translators = [t.replace(" ", "").replace("\u3000", "") for t in v.get("翻訳者名等", "").split("、") if t.strip()]
    year = v.get("状態の開始日", "")[:4]
    record.year = int(year) if year.isdigit() else None
    seen: dict[str, int] = {}
    authors: list[str] = []
    for row in rows:
        r = row.values
        name = r["著者名"]
        key = name.replace(" ", "").replace("\u3000", "")
        # one row per person and role, but the old list has no role column: the k-th row of a
        # person is a translator row while the person's name is listed that often in 翻訳者名等
        seen[key] = seen.get(key, 0) + 1
        role = "翻訳者" if seen[key] <= translators.count(key) else "著者"
        if role == "著者":
            authors.append(r["人物ID"])
        person = Name(name=name, role=role, authority_id=r["人物ID"])
        if person not in record.authors:
            record.authors.append(person)
    card_person = min(authors) if authors else min(r.values["人物ID"] for r in rows)
    record.links = [CARD_URL.format(person=card_person, work=int(v["作品ID"]))]
    record.notes = _notes(v, published=v.get("状態の開始日"), source_title=v.get("底本名"),
                          source_publisher=v.get("出版社名"), source_year=None,
                          orthography=v.get("仮名遣い種別"))


def _classes(record: BibRecord, text: str) -> None:
    """'NDC 933', 'NDC K933', 'NDC 756 914': every class number is kept; K (children's) is noted in
    `audience`. An unreadable value is kept out, with a warning."""
    if not text:
        return
    tokens = text.split()
    if tokens[0].upper() != "NDC" or len(tokens) < 2:
        record.warnings.append(f"分類番号 {text!r} is not 'NDC nnn'; no class kept")
        return
    for token in tokens[1:]:
        m = _NDC.match(token)
        if not m:
            record.warnings.append(f"分類番号 {text!r}: {token!r} is not an NDC class number; ignored")
            continue
        if m.group(1):
            record.audience = "juvenile"
        record.classifications.append(Classification(scheme="ndc", number=m.group(2)))
    if record.classifications:
        record.ndc = record.classifications[0].number


def _notes(v: dict[str, str], *, published: str | None, source_title: str | None, source_publisher: str | None,
           source_year: str | None, orthography: str | None) -> list[str]:
    notes = []
    if published:
        notes.append(f"青空文庫公開日: {published}")
    if source_title:
        details = "、".join(p for p in (source_publisher, source_year) if p)
        notes.append(f"底本: {source_title}" + (f"（{details}）" if details else ""))
    if v.get("初出"):
        notes.append(f"初出: {v['初出']}")
    if orthography:
        notes.append(f"文字遣い: {orthography}")
    if v.get("作品著作権フラグ") == "あり":
        notes.append("著作権存続")
    return notes
