"""api.catalog.marc_import: profile-driven MARC import, on the 233 real NDL JAPAN/MARC (MARC 21) records.

Known values below were read from the file with pymarc (see the record dumps in the comments);
malformed inputs are built from the real records by breaking one thing at a time, and every test
checks that the good records around a broken one still come through.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pymarc
import pytest
from pymarc import Field, Indicators, Record, Subfield
from pymarc.marcxml import record_to_xml

from api.catalog.bib import BibRecord, Imported, ImportItem, Name, Rejected, Series, Staged, Subject
from api.catalog.marc_import import (
    ProfileError,
    UnknownProfileError,
    available_profiles,
    detect_format,
    isbd_trim,
    load_profile,
    normalize_isbn,
    read_marc,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
MARC = DATA / "ndl_japan_marc21_sample.mrc"
PROFILES = Path(__file__).resolve().parents[1] / "api" / "catalog" / "profiles"

KATAKANA = re.compile(r"[\u30A1-\u30FA]")
NOT_READING = re.compile(r"[\u3041-\u309F\u4E00-\u9FFF]")  # hiragana or kanji
HANGUL = re.compile(r"[\uAC00-\uD7A3]")
NO_TITLE_READING = {"028064297", "000009300231", "000007029824"}  # 245 $6 880-01, but no 880 in the record


@cache
def sample() -> bytes:
    return MARC.read_bytes()


@cache
def raw_records() -> list[bytes]:
    return [chunk + b"\x1d" for chunk in sample().split(b"\x1d")[:-1]]


@cache
def ndl() -> list[ImportItem]:
    return list(read_marc(MARC, "ndl-marc21"))


def imported(items: list[ImportItem]) -> list[BibRecord]:
    return [i.record for i in items if isinstance(i, Imported)]


def rejected(items: list[ImportItem]) -> list[Rejected]:
    return [i for i in items if isinstance(i, Rejected)]


def by_number(items: list[ImportItem]) -> dict[str, BibRecord]:
    return {r.control_number: r for r in imported(items)}


def without_raw(r: BibRecord) -> dict[str, Any]:
    data = r.to_json()
    data.pop("raw_format")
    return data


# ------------------------------------------------------------------------------------------------ the sample


def test_sample_is_233_records() -> None:
    assert len(raw_records()) == 233
    assert sample().endswith(b"\x1d")


def test_every_record_maps_with_title_and_reading() -> None:
    items = ndl()
    assert len(items) == 233
    assert not rejected(items), rejected(items)[:3]
    records = imported(items)
    assert [i.position for i in items if isinstance(i, Imported)] == list(range(1, 234))
    assert len({r.control_number for r in records}) == 233
    for r in records:
        assert r.source == "JTNDL"
        assert r.title and not r.title.endswith((" /", " :", "."))
        assert r.raw_format == "marc21"
        if r.control_number in NO_TITLE_READING:
            assert r.title_reading is None
            assert any("245: $6 880-01" in w for w in r.warnings), r.warnings
        elif r.language == "kor":
            assert HANGUL.search(r.title_reading or ""), r.title_reading   # NDL gives a Hangul reading
        else:
            assert r.title_reading and KATAKANA.search(r.title_reading), (r.control_number, r.title_reading)
            assert not NOT_READING.search(r.title_reading), (r.control_number, r.title_reading)
    assert sum(1 for r in records if r.title_reading and KATAKANA.search(r.title_reading)) == 229


def test_offsets_point_at_the_records() -> None:
    data = sample()
    for item, raw in zip(ndl(), raw_records(), strict=True):
        assert isinstance(item, Imported)
        assert item.offset is not None
        assert data[item.offset:item.offset + len(raw)] == raw
        assert item.record.raw == raw   # kept verbatim


def test_known_record_with_everything() -> None:
    # =001 029455884 / =020 $a978-4-7949-7075-6 :$c1700円 / =084 $a023$2njb/10 / =245 00$6880-01$aこれからの本の話を
    # しよう /$c萩野正昭 著. / =260 $6880-02$a東京 :$b晶文社,$c2019.2. / =650 \7$6880-03$a電子書籍$001194148$2ndlsh ...
    r = by_number(ndl())["029455884"]
    assert r.title == "これからの本の話をしよう"
    assert r.title_reading == "コレカラ ノ ホン ノ ハナシ オ シヨウ"
    assert r.title_transcription == "Korekara no hon no hanashi o shiyo"
    assert r.responsibility == "萩野正昭 著"
    assert r.authors == [Name(name="萩野, 正昭", reading="ハギノ, マサアキ", transcription="Hagino, Masaki",
                              authority_id="01215194")]
    assert (r.publisher, r.publisher_reading, r.place, r.year) == ("晶文社", "ショウブンシャ", "東京", 2019)
    assert (r.ndc, r.ndc_edition) == ("023", "10")
    assert [(c.scheme, c.number) for c in r.classifications] == [("ndc", "023"), ("ndlc", "UE13")]
    assert r.subjects == [
        Subject(term="電子書籍", reading="デンシ ショセキ", scheme="ndlsh", transcription="Denshi shoseki",
                authority_id="01194148"),
        Subject(term="電子出版", reading="デンシシュッパン", scheme="ndlsh", transcription="Denshishuppan",
                authority_id="00575535"),
    ]
    assert r.isbns == ["9784794970756"]
    assert r.price == "1700円"
    assert r.extent == "301p ; 19cm"
    assert (r.language, r.material_type, r.warnings) == ("jpn", "book", [])


def test_known_record_with_subtitle_part_and_contents() -> None:
    # =245 00$6880-01$aCNNニュース・リスニング :$b音声&電子書籍版付き : 1本30秒だから、聞きやすい!$n2019春夏 /$c...
    # =653 \\$a英語$a和訳   =740 0\$6880-03$aアリアナ・グランデ、痛恨の漢字タトゥー.
    r = by_number(ndl())["029611852"]
    assert r.title == "CNNニュース・リスニング"
    assert r.title_reading == "シーエヌエヌ ニュース リスニング"
    assert r.subtitle == "音声&電子書籍版付き : 1本30秒だから、聞きやすい!"
    assert r.subtitle_reading == "オンセイ アンド デンシ ショセキバンツキ : イッポン サンジュウビョウ ダカラ キキヤスイ"
    assert r.part == "2019春夏"
    assert r.authors == []   # only a 245 $c: the editors have no heading
    assert (r.ndc, r.ndc_edition, r.isbns, r.price) == ("837.5", "10", ["9784255011103"], "1000円")
    assert [(s.term, s.scheme) for s in r.subjects] == [("英語", "keyword"), ("和訳", "keyword")]
    assert r.other_titles[0].title == "アリアナ・グランデ、痛恨の漢字タトゥー"
    assert r.other_titles[0].reading == "アリアナ グランデ ツウコン ノ カンジ タトゥー"
    assert r.other_titles[0].kind == "contents"


def test_known_record_with_ndc9_dates_and_name_subject() -> None:
    # =084 $a507.2$2njb/09 / =600 17$6880-05$a野村, 豊弘,$d1943-$000384138$2ndlsh / =700 1\$a中山, 信弘,$d1945-
    r = by_number(ndl())["027189970"]
    assert (r.title, r.title_reading) == ("知的財産・コンピュータと法", "チテキ ザイサン コンピュータ ト ホウ")
    assert (r.ndc, r.ndc_edition) == ("507.2", "9")
    assert r.authors == [Name(name="中山, 信弘", reading="ナカヤマ, ノブヒロ", dates="1945-",
                              transcription="Nakayama, Nobuhiro", authority_id="00104701")]
    assert r.subjects[0] == Subject(term="野村, 豊弘, 1943-", reading="ノムラ, トヨヒロ, 1943-", scheme="ndlsh",
                                    transcription="Nomura, Toyohiro, 1943-", authority_id="00384138")
    assert r.subjects[1].term == "知的財産権--法令--論文集"
    assert r.subjects[1].reading == "チテキザイサンケン--ホウレイ--ロンブンシュウ"
    assert (r.publisher, r.publisher_reading, r.year) == ("商事法務", "ショウジホウム", 2016)
    assert (r.isbns, r.price) == (["9784785724030"], "16000円")


def test_known_record_with_two_series_in_one_490() -> None:
    # =490 0\$6880-03$a総会資料 ;$vno. 60-3.$a国立大学図書館協会...平成24年度調査報告 ;$vその1
    r = by_number(ndl())["024660511"]
    assert r.series[0] == Series(title="総会資料", reading="ソウカイ シリョウ", volume="no. 60-3",
                                 transcription="Sokai shiryo")
    assert r.series[1].title == "国立大学図書館協会学術情報委員会学術情報流通検討小委員会平成24年度調査報告"
    assert r.series[1].reading is not None and r.series[1].reading.endswith("ヘイセイ 24ネンド チョウサ ホウコク")
    assert r.series[1].volume == "その1"
    assert r.isbns == [] and r.ndc is None


def test_known_record_korean() -> None:
    # =008 ...kor / =020 $a9788976781673 :$c50000원 / =242 10$a韓国目録規則 : 電子書籍･電子ジャーナル記述規則.$yjpn
    # =260 $6880-02 ... but the record has no 880-02
    r = by_number(ndl())["024929826"]
    assert (r.title, r.title_reading) == ("韓國目録規則", "한국 목록 규칙")
    assert r.language == "kor"
    assert (r.isbns, r.price) == (["9788976781673"], "50000원")
    assert r.parallel_titles == ["KCR", "韓国目録規則 : 電子書籍･電子ジャーナル記述規則"]
    assert r.publisher == "한국도서관협회" and r.publisher_reading is None
    assert r.warnings == ["260: $6 880-02 points to a linked field (reading) that is not in the record"]


def test_known_old_record_keywords_split_and_paired() -> None:
    # =653 0\$6880-02$a電子ペーパー / ペーパーライクディスプレイ / ... / 液体マイクロレンズ.
    # =880 0\$6653-02/$1$aデンシ ペーパー / ペーパーライクディスプレイ / ... / エキタイ マイクロレンズ.
    r = by_number(ndl())["000009300231"]
    assert r.title == "紙の読みやすさを電子ディスプレイ上で実現するための研究"
    assert r.title_reading is None   # no 880 for 245 in this record
    terms = [(s.term, s.reading) for s in r.subjects]
    assert len(terms) == 8
    assert terms[0] == ("電子ペーパー", "デンシ ペーパー")
    assert terms[-1] == ("液体マイクロレンズ", "エキタイ マイクロレンズ")
    assert r.authors[0] == Name(name="面谷, 信", reading="オモダニ, マコト", transcription="Omodani, Makoto")
    assert r.authors[1].name == "東海大学" and r.authors[1].reading == "トウカイ ダイガク"


def test_old_reading_convention_is_kept_as_given() -> None:
    # 1987 record: NDL then wrote small kana full size (シヨ for ショ); the importer does not correct readings
    r = by_number(ndl())["000007029824"]
    assert ("電子書籍", "デンシシヨセキ") in [(s.term, s.reading) for s in r.subjects]
    assert r.year == 1987 and r.language is None   # 008/35-37 blank, no 041


def test_json_round_trip() -> None:
    for r in imported(ndl())[:40]:
        back = BibRecord.from_json(r.to_json())
        assert back.raw is None and back.to_json() == r.to_json()
        full = BibRecord.from_json(r.dumps(include_raw=True))
        assert full == r


# ------------------------------------------------------------------------------------------------ other readers


def test_generic_marc21_maps_the_same_without_readings() -> None:
    generic = list(read_marc(MARC, "marc21"))
    assert len(generic) == 233 and not rejected(generic)
    for g, n in zip(imported(generic), imported(ndl()), strict=True):
        assert (g.source, g.control_number, g.title, g.subtitle, g.part, g.publisher, g.year) == \
               (n.source, n.control_number, n.title, n.subtitle, n.part, n.publisher, n.year)
        assert (g.isbns, g.price, g.ndc, g.ndc_edition, g.extent, g.language) == \
               (n.isbns, n.price, n.ndc, n.ndc_edition, n.extent, n.language)
        assert [a.name for a in g.authors] == [a.name for a in n.authors]
        assert [s.term for s in g.subjects if s.scheme == "ndlsh"] == \
               [s.term for s in n.subjects if s.scheme == "ndlsh"]
        assert g.title_reading is None and g.publisher_reading is None
        assert all(a.reading is None for a in g.authors) and all(s.reading is None for s in g.subjects)
        assert g.warnings == []   # the generic profile does not follow 880 links


def _marcxml(records: list[bytes]) -> bytes:
    body = b"".join(record_to_xml(next(pymarc.MARCReader(raw, to_unicode=True))) for raw in records)
    return (b'<?xml version="1.0" encoding="UTF-8"?>\n<collection xmlns="http://www.loc.gov/MARC21/slim">\n'
            + body + b"\n</collection>\n")


def test_marcxml_maps_identically(tmp_path: Path) -> None:
    path = tmp_path / "sample.xml"
    path.write_bytes(_marcxml(raw_records()))
    assert detect_format(path) == "marcxml"
    items = list(read_marc(path, "ndl-marc21", marcxml=True))
    assert len(items) == 233 and not rejected(items)
    for x, n in zip(imported(items), imported(ndl()), strict=True):
        assert without_raw(x) == without_raw(n)
        assert x.raw_format == "marcxml"
        assert x.raw is not None and f"<controlfield tag=\"001\">{x.control_number}<".encode() in x.raw
    offsets = [i.offset for i in items if isinstance(i, Imported)]
    assert offsets == sorted(offsets) and path.read_bytes()[offsets[0]:offsets[0] + 7] == b"<record"
    staged = list(read_marc(path, "ndl-marc21", marcxml=True, staged=True))  # what `shoka import` reads
    assert [(s.control_number, s.offset) for s in staged if isinstance(s, Staged)] == \
           [(i.record.control_number, i.offset) for i in items if isinstance(i, Imported)]


def test_marcxml_with_prefix_and_a_bad_record(tmp_path: Path) -> None:
    good = [record_to_xml(next(pymarc.MARCReader(raw)), namespace=True).replace(b"<record", b"<marc:record")
            .replace(b"</record>", b"</marc:record>") for raw in raw_records()[:2]]
    good = [re.sub(rb"<(/?)(leader|controlfield|datafield|subfield)", rb"<\1marc:\2", g) for g in good]
    good = [g.replace(b' xmlns="http://www.loc.gov/MARC21/slim"', b"") for g in good]
    bad = (b"<marc:record><marc:leader>short</marc:leader>"
           b"<marc:controlfield tag='001'>x</marc:controlfield></marc:record>")
    doc = (b'<marc:collection xmlns:marc="http://www.loc.gov/MARC21/slim">' + good[0] + bad + good[1]
           + b"</marc:collection>")
    items = list(read_marc(io.BytesIO(doc), "ndl-marc21", marcxml=True))
    assert [type(i).__name__ for i in items] == ["Imported", "Rejected", "Imported"]
    assert items[1].position == 2 and "bad leader: 5 characters" in items[1].reason  # type: ignore[union-attr]
    assert [r.control_number for r in imported(items)] == ["029455884", "029611852"]


def test_marcxml_not_well_formed_reports_and_stops() -> None:
    doc = _marcxml(raw_records()[:3])
    broken = doc[:doc.rindex(b"<record")] + b"<record><leader>oops</record>"
    items = list(read_marc(io.BytesIO(broken), "ndl-marc21", marcxml=True))
    assert len(imported(items)) == 2
    last = items[-1]
    assert isinstance(last, Rejected) and last.position == 3
    assert "not well-formed" in last.reason and "reading stops here" in last.reason


# ------------------------------------------------------------------------------------------------ bad input


def _patch(raw: bytes, at: int, new: bytes) -> bytes:
    return raw[:at] + new + raw[at + len(new):]


def _directory_entry(raw: bytes, tag: bytes) -> int:
    base = int(raw[12:17])
    for i in range(24, base - 1, 12):
        if raw[i:i + 3] == tag:
            return i
    raise AssertionError(tag)


def _field_data_start(raw: bytes, tag: bytes) -> int:
    entry = _directory_entry(raw, tag)
    return int(raw[12:17]) + int(raw[entry + 7:entry + 12])


def broken_file() -> tuple[bytes, list[tuple[str, str | None]]]:
    """Good and broken records interleaved; the expected (control number | 'rejected', reason pattern)."""
    recs = raw_records()
    corrupt_leader = b"0x9z1" + recs[1][5:]
    entry = _directory_entry(recs[3], b"245")
    length = int(recs[3][entry + 3:entry + 7])
    wrong_directory = _patch(recs[3], entry + 3, f"{length + 1:04d}".encode())
    start = _field_data_start(recs[5], b"245") + 2 + 2 + len(b"880-01") + 2  # inds, $6880-01, $a
    bad_utf8 = _patch(recs[5], start, b"\xff\xfe")
    marc8 = _patch(recs[7], 9, b" ")
    wrong_length = _patch(recs[9], 0, f"{len(recs[9]) - 3:05d}".encode())
    no_fields = b"00026nam a2200025 i 4500\x1e\x1d"
    truncated = recs[12][:300]
    parts = [recs[0], corrupt_leader, recs[2], wrong_directory, recs[4], bad_utf8, recs[6], marc8, recs[8],
             wrong_length, recs[10], no_fields, recs[11], truncated]
    expected: list[tuple[str, str | None]] = [
        ("029455884", None), ("rejected", r"^bad leader: the record length \(leader bytes 0-4\) is '0x9z1'"),
        ("029501619", None),
        ("rejected", r"^bad directory: field 245 does not end where the directory says"),
        (_number(recs[4]), None), ("rejected", r"^invalid UTF-8 in field 245: bytes ff fe"),
        (_number(recs[6]), None), ("rejected", r"^MARC-8 encoded \(leader/09 is blank\)"),
        (_number(recs[8]), None), ("rejected", r"^bad leader: the leader says the record is \d+ bytes long, but"),
        (_number(recs[10]), None), ("rejected", r"Unable to locate fields in record data \(NoFieldsFound\)"),
        (_number(recs[11]), None), ("rejected", r"^truncated record: the file ends 300 bytes into a record"),
    ]
    return b"".join(parts), expected


def _number(raw: bytes) -> str:
    return next(pymarc.MARCReader(raw)).get("001").data


def test_malformed_records_are_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    data, expected = broken_file()
    path = tmp_path / "broken.mrc"
    path.write_bytes(data)
    items = list(read_marc(path, "ndl-marc21"))
    assert len(items) == len(expected)
    offset = 0
    for position, (item, (number, pattern)) in enumerate(zip(items, expected, strict=True), start=1):
        assert item.position == position
        assert item.offset == offset, (position, item)
        if number == "rejected":
            assert isinstance(item, Rejected), (position, item)
            assert pattern and re.search(pattern, item.reason), (position, item.reason)
        else:
            assert isinstance(item, Imported), (position, item)
            assert item.record.control_number == number
        end = data.find(b"\x1d", offset)
        offset = end + 1 if end >= 0 else len(data)
    utf8 = items[5]
    assert isinstance(utf8, Rejected) and utf8.identifier == _number(raw_records()[5])
    assert "record 6 (byte" in str(utf8)


def test_marc8_is_accepted_by_nothing_but_reported_plainly() -> None:
    marc8 = _patch(raw_records()[0], 9, b" ")
    (item,) = list(read_marc(io.BytesIO(marc8), "marc21"))
    assert isinstance(item, Rejected)
    assert "convert the file first" in item.reason and item.identifier == "029455884"


def test_line_breaks_between_records_are_tolerated() -> None:
    data = b"\n".join(raw_records()[:3]) + b"\r\n"
    items = list(read_marc(io.BytesIO(data), "ndl-marc21"))
    assert [i.record.control_number for i in items if isinstance(i, Imported)] == \
           ["029455884", "029611852", "029501619"]
    assert items[1].offset == len(raw_records()[0]) + 1


def test_xml_given_as_iso2709_says_so() -> None:
    (item,) = list(read_marc(io.BytesIO(_marcxml(raw_records()[:1])), "ndl-marc21"))
    assert isinstance(item, Rejected) and "this is XML" in item.reason and "marcxml=True" in item.reason


def test_unknown_profile_lists_the_available_ones() -> None:
    with pytest.raises(UnknownProfileError) as e:
        read_marc(MARC, "jpmarc")
    message = str(e.value)
    assert "unknown profile 'jpmarc'" in message
    for name in ("jpmarc-unimarc", "marc21", "ndl-marc21", "trc-t"):
        assert name in message
    assert available_profiles() == ["jpmarc-unimarc", "marc21", "ndl-marc21", "trc-t"]


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    assert list(read_marc(empty, "ndl-marc21")) == []
    assert list(read_marc(empty, "ndl-marc21", marcxml=True)) == []
    assert list(read_marc(io.BytesIO(b"\n\n"), "marc21")) == []
    assert detect_format(empty) == "empty"


def test_detect_format() -> None:
    assert detect_format(MARC) == "iso2709"
    assert detect_format(b"\xef\xbb\xbf<?xml version='1.0'?><collection>") == "marcxml"
    assert detect_format(b"hello, world") == "unknown"
    assert detect_format(b"<html><body>") == "unknown"


# ------------------------------------------------------------------------------------------------ profiles


def test_every_shipped_profile_loads() -> None:
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.name == name and "title" in profile.fields


def test_trc_skeleton_loads_but_does_not_import() -> None:
    trc = load_profile("trc-t")
    assert trc.status == "skeleton"
    assert "fields.title[0]" in trc.placeholders and "fields.authors[0]" in trc.placeholders
    with pytest.raises(ProfileError, match="skeleton: fill in the placeholder tags"):
        read_marc(MARC, "trc-t")


def _write_profile(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"profile: {name}\nformat: marc21\n{body}", encoding="utf-8")
    return path


@pytest.mark.parametrize(("body", "message"), [
    ("fields:\n  title: {tag: 245, subfields: a}\n", "must be quoted"),
    ("fields:\n  title: {tag: '245', subfeilds: a}\n", "unknown key(s) ['subfeilds']"),
    ("fields:\n  titel: {tag: '245', subfields: a}\n", "fields.titel: not a BibRecord field"),
    ("fields:\n  title: {tag: '245', extract: '(['}\n", "bad regular expression"),
    ("fields:\n  title: {tag: '245'}\n  authors: {tag: '700', item: {reading: a}}\n",
     "'item' must map at least 'name'"),
    ("fields:\n  title: {tag: '24'}\n", "is not a tag"),
    ("fields:\n  publisher: {tag: '260', subfields: b}\n", "must map 'title'"),
    ("encoding: latin-1\nfields:\n  title: {tag: '245'}\n", "'encoding' must be one of"),
])
def test_profile_mistakes_are_reported(tmp_path: Path, body: str, message: str) -> None:
    path = _write_profile(tmp_path, "local", body)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert message in str(e.value) and "local.yaml" in str(e.value)


def test_profile_by_path_and_extends(tmp_path: Path) -> None:
    (tmp_path / "marc21.yaml").write_text((PROFILES / "marc21.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    path = _write_profile(tmp_path, "local", "extends: marc21\nfields:\n"
                          "  title: {tag: '245', subfields: ab, join: ' : '}\n  price: null\n"
                          "  notes: {tag: '090', subfields: a}\n")
    (item,) = list(read_marc(io.BytesIO(raw_records()[1]), path))
    assert isinstance(item, Imported)
    r = item.record
    assert r.title == "CNNニュース・リスニング : 音声&電子書籍版付き : 1本30秒だから、聞きやすい!"
    assert r.price is None and r.notes == ["YU51-M199"]   # overridden / removed / replaced
    assert r.isbns == ["9784255011103"]                   # inherited


def test_isbd_trim() -> None:
    assert isbd_trim("これからの本の話をしよう /") == "これからの本の話をしよう"
    assert isbd_trim("東京 :") == "東京"
    assert isbd_trim("晶文社,") == "晶文社"
    assert isbd_trim("2019.2.") == "2019.2"
    assert isbd_trim("MF文庫J ;") == "MF文庫J"
    assert isbd_trim("Smith, J.") == "Smith, J."
    assert isbd_trim("待って...") == "待って..."
    assert isbd_trim("  a = ") == "a"


def test_isbn_normalization_and_invalid_isbn_warning() -> None:
    assert normalize_isbn("4-00-310101-4") == "9784003101018"
    assert normalize_isbn("978-4-7949-7075-6 :") == "9784794970756"
    assert normalize_isbn("0-19-852663-6 (pbk.)") == "9780198526636"
    assert normalize_isbn("978-4-7949-7075-0") is None
    record = next(pymarc.MARCReader(raw_records()[0]))
    record.get("020")["a"] = "978-4-7949-7075-0 :"
    record.add_ordered_field(Field("020", Indicators(" ", " "), [Subfield("a", "4003101014")]))
    (item,) = list(read_marc(io.BytesIO(record.as_marc()), "ndl-marc21"))
    assert isinstance(item, Imported)
    assert item.record.isbns == ["9784003101018"]
    assert item.record.warnings == ["invalid ISBN '978-4-7949-7075-0' ignored"]


# ------------------------------------------------------------------------------------------------ JAPAN/MARC UNIMARC

# Built to the assumptions written in api/catalog/profiles/jpmarc-unimarc.yaml (we have no real file):
# upper-case data subfields, readings in the 551 / 751 / 650 headings ($A kana, $X as written).


def _jpmarc(number: str, fields: list[tuple[str, list[tuple[str, str]]]], *, audience: str = "k  ") -> Record:
    record = Record(leader="00000nam  2200000   4500", force_utf8=True)
    record.add_field(Field("001", data=number))
    processing = f"19930415d1993    {audience}y0jpny0103    ba"
    record.add_field(Field("100", Indicators(" ", " "), [Subfield("A", processing)]))
    for tag, subfields in fields:
        record.add_field(Field(tag, Indicators(" ", " "), [Subfield(c, v) for c, v in subfields]))
    return record


def jpmarc_records() -> list[Record]:
    neko = _jpmarc("93012345", [
        ("010", [("A", "4-00-310101-4"), ("D", "570円")]),
        ("020", [("A", "JP"), ("B", "93012345")]),
        ("101", [("A", "jpn")]),
        ("251", [("A", "吾輩は猫である /"), ("F", "夏目漱石 著.")]),
        ("270", [("A", "東京 :"), ("B", "岩波書店,"), ("D", "1990.4.")]),
        ("275", [("A", "445p ;"), ("B", "15cm.")]),
        ("280", [("A", "岩波文庫 ;"), ("B", "31-010-1")]),
        ("551", [("A", "ワガハイ ワ ネコ デ アル")]),
        ("677", [("A", "913.6"), ("V", "9")]),
        ("685", [("A", "KH334")]),
        ("751", [("A", "ナツメ, ソウセキ"), ("X", "夏目, 漱石"), ("F", "1867-1916")]),
    ])
    ehon = _jpmarc("94000001", [
        ("010", [("A", "4-00-000000-1"), ("D", "1200円")]),   # check digit wrong: warned, dropped
        ("251", [("A", "ぐりとぐら :"), ("B", "えほん"), ("D", "1"), ("F", "なかがわりえこ さく.")]),
        ("270", [("A", "東京 :"), ("B", "福音館書店,"), ("D", "1994.")]),
        ("551", [("A", "グリ ト グラ")]),
        ("650", [("A", "ネズミ"), ("X", "鼠")]),
        ("677", [("A", "E"), ("V", "9")]),
        ("751", [("A", "ナカガワ, リエコ")]),                 # written in kana only: no $X
        ("752", [("A", "フクインカン ショテン"), ("X", "福音館書店")]),
    ], audience="a  ")
    return [neko, ehon]


def _jpmarc_bytes(record: Record) -> bytes:
    return _patch(record.as_marc(), 9, b" ")   # UNIMARC leader/09 is not a coding flag: pymarc wrote 'a'


def test_jpmarc_unimarc_fixture_maps() -> None:
    data = b"".join(_jpmarc_bytes(r) for r in jpmarc_records())
    items = list(read_marc(io.BytesIO(data), "jpmarc-unimarc"))
    assert not rejected(items)
    neko, ehon = imported(items)
    assert (neko.source, neko.control_number, neko.raw_format) == ("JTNDL", "93012345", "unimarc")
    assert (neko.title, neko.title_reading, neko.responsibility) == ("吾輩は猫である", "ワガハイ ワ ネコ デ アル",
                                                                     "夏目漱石 著")
    assert neko.authors == [Name(name="夏目, 漱石", reading="ナツメ, ソウセキ", dates="1867-1916")]
    assert (neko.publisher, neko.place, neko.year, neko.extent) == ("岩波書店", "東京", 1990, "445p ; 15cm")
    assert neko.series == [Series(title="岩波文庫", volume="31-010-1")]
    assert (neko.ndc, neko.ndc_edition, neko.isbns, neko.price) == ("913.6", "9", ["9784003101018"], "570円")
    assert (neko.language, neko.audience, neko.material_type) == ("jpn", None, "book")
    assert neko.raw == _jpmarc_bytes(jpmarc_records()[0])
    assert (ehon.title, ehon.subtitle, ehon.part, ehon.title_reading) == ("ぐりとぐら", "えほん", "1", "グリ ト グラ")
    assert ehon.authors == [Name(name="ナカガワ, リエコ", reading="ナカガワ, リエコ"),
                            Name(name="福音館書店", reading="フクインカン ショテン")]
    assert ehon.subjects == [Subject(term="鼠", reading="ネズミ", scheme="ndlsh")]
    assert (ehon.ndc, ehon.audience, ehon.year, ehon.language) == ("E", "juvenile", 1994, "jpn")
    assert ehon.isbns == [] and ehon.warnings == ["invalid ISBN '4-00-000000-1' ignored"]


def test_jpmarc_is_not_mistaken_for_marc8_but_marc21_profile_would() -> None:
    data = _jpmarc_bytes(jpmarc_records()[0])
    (as_marc21,) = list(read_marc(io.BytesIO(data), "marc21"))
    assert isinstance(as_marc21, Rejected) and "MARC-8" in as_marc21.reason


def _iso2709(leader: str, fields: list[tuple[str, str | list[tuple[str, str]]]], indicators: str) -> bytes:
    directory, data = b"", b""
    for tag, content in fields:
        if isinstance(content, str):
            body = content.encode() + b"\x1e"
        else:
            body = indicators.encode() + b"".join(b"\x1f" + c.encode() + v.encode() for c, v in content) + b"\x1e"
        directory += f"{tag}{len(body):04d}{len(data):05d}".encode()
        data += body
    base = 24 + len(directory) + 1
    head = f"{base + len(data) + 1:05d}{leader[5:12]}{base:05d}{leader[17:]}"
    return head.encode() + directory + b"\x1e" + data + b"\x1d"


def test_jpmarc_without_indicators() -> None:
    # JAPAN/MARC documentation gives indicator length 0 (leader/10): fields start directly with $
    raw = _iso2709("00000nam  0200000   4500", [
        ("001", "95000007"),
        ("251", [("A", "こころ /"), ("F", "夏目漱石 著.")]),
        ("551", [("A", "ココロ")]),
        ("751", [("A", "ナツメ, ソウセキ"), ("X", "夏目, 漱石")]),
        ("677", [("A", "913.6"), ("V", "9")]),
    ], indicators="")
    (item,) = list(read_marc(io.BytesIO(raw), "jpmarc-unimarc"))
    assert isinstance(item, Imported), item
    r = item.record
    assert (r.title, r.title_reading, r.ndc) == ("こころ", "ココロ", "913.6")
    assert r.authors == [Name(name="夏目, 漱石", reading="ナツメ, ソウセキ")]
    assert r.raw == raw


# ------------------------------------------------------------------------------------------------ throughput


def repeated(n: int) -> Iterator[bytes]:
    while True:
        yield from raw_records()
        n -= len(raw_records())
        if n <= 0:
            return


def test_mapping_a_larger_stream_keeps_order_and_positions() -> None:
    data = b"".join(repeated(2000))
    items = list(read_marc(io.BytesIO(data), "ndl-marc21"))
    assert len(items) == 233 * 9 and not rejected(items)
    assert items[-1].position == len(items) and items[233].offset == len(sample())


@pytest.mark.parametrize("size", [285_000, 2_500_000])   # within one read block, and across several
def test_garbage_without_terminators_costs_one_rejection(size: int) -> None:
    garbage = (bytes(range(33, 127)) * (size // 94 + 1))[:size]   # no 0x1D
    data = raw_records()[0] + garbage + b"\x1d" + raw_records()[1]
    items = list(read_marc(io.BytesIO(data), "ndl-marc21"))
    assert [type(i).__name__ for i in items] == ["Imported", "Rejected", "Imported"]
    bad = items[1]
    assert isinstance(bad, Rejected) and bad.offset == len(raw_records()[0])
    assert bad.reason.startswith("no record terminator within 99,999 bytes")
    assert items[2].offset == len(raw_records()[0]) + len(garbage) + 1


def test_reading_processes_give_the_same_items_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shared records twice, then the broken ones, in batches of 50: several batches per process, and
    # rejections that must keep their positions and offsets.
    broken, expected = broken_file()
    path = tmp_path / "mixed.mrc"
    path.write_bytes(sample() + sample() + broken)
    monkeypatch.setattr("api.catalog.marc_import.FRAMES_PER_TASK", 50)
    here = list(read_marc(path, "ndl-marc21", workers=1))
    parallel = list(read_marc(path, "ndl-marc21", workers=2))
    assert len(here) == 2 * 233 + len(expected) and sum(isinstance(i, Rejected) for i in here) >= 6
    assert parallel == here
    # A reader stopped early shuts its processes down instead of leaving them behind.
    reader = read_marc(path, "ndl-marc21", workers=2)
    first = [next(reader) for _ in range(3)]
    reader.close()  # type: ignore[attr-defined]
    assert first == here[:3]
    import multiprocessing
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_large_files_are_read_in_processes_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import api.catalog.marc_import as marc_import

    seen: list[int] = []
    real = marc_import._read_iso
    monkeypatch.setattr(marc_import, "_read_iso", lambda stream, profile, workers, staged: seen.append(workers) or
                        real(stream, profile, 1, staged))
    monkeypatch.setenv("SHOKA_IMPORT_WORKERS", "3")
    small = tmp_path / "small.mrc"
    small.write_bytes(sample())
    list(read_marc(small, "ndl-marc21"))
    monkeypatch.setattr(marc_import, "PARALLEL_MIN_BYTES", len(sample()))
    list(read_marc(small, "ndl-marc21"))
    list(read_marc(io.BytesIO(sample()), "ndl-marc21"))  # a stream: no size to go by
    assert seen == [1, 3, 1]


def test_record_json_is_what_asdict_gives() -> None:
    # BibRecord.to_json builds asdict's dict directly (for speed); the JSON stored must not change.
    import dataclasses

    records = [i.record for i in ndl() if isinstance(i, Imported)]
    assert len(records) == 233 and any(r.authors and r.subjects and r.classifications for r in records)
    for r in records:
        r.readings_generated = {"title", "authors"}
        expected = dataclasses.asdict(r)
        expected["readings_generated"] = ["authors", "title"]
        del expected["raw"]
        got = r.to_json()
        assert got == expected and list(got) == list(expected)
        assert got["authors"] is not r.authors and all(type(a) is dict for a in got["authors"])
        assert json.loads(r.json_bytes()) == expected  # what is saved
