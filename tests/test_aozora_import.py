"""api.catalog.aozora: Aozora Bunko index CSVs (extended and older list format) as e-text records,
on the real files in shared/data and on variants of them written here."""

from __future__ import annotations

import csv
import io
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from api.catalog.aozora import AozoraFormatError, read_aozora, to_katakana
from api.catalog.bib import BibRecord, Classification, Imported, ImportItem, Name, Rejected

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
EXTENDED = DATA / "aozora_list_person_all_extended_sample.csv"
OLD = DATA / "aozora_list_person_all_utf8.csv"


def imported(items: list[ImportItem]) -> list[BibRecord]:
    return [i.record for i in items if isinstance(i, Imported)]


def rejected(items: list[ImportItem]) -> list[Rejected]:
    return [i for i in items if isinstance(i, Rejected)]


def comparable(r: BibRecord) -> dict[str, Any]:
    return r.to_json()   # leaves out raw, which differs when the quoting differs


@cache
def extended() -> list[ImportItem]:
    return list(read_aozora(EXTENDED))


@cache
def old() -> list[ImportItem]:
    return list(read_aozora(OLD))


def extended_rows() -> tuple[list[str], list[list[str]]]:
    with open(EXTENDED, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, quote_header: bool = True,
              quote_dates: bool = True, bom: bool = False) -> Path:
    """Write rows the way the official file does (unquoted header and dates) or quoting everything."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    plain = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    (writer if quote_header else plain).writerow(header)
    dates = {i for i, h in enumerate(header) if h.endswith("日") or h.endswith("年月日")}
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            if i in dates and not quote_dates:
                cells.append(cell)
            else:
                cells.append('"' + cell.replace('"', '""') + '"')
        out.write(",".join(cells) + "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8"))
    return path


# ------------------------------------------------------------------------------------------------ extended


def test_extended_sample_imports() -> None:
    items = extended()
    assert len(items) == 8 and not rejected(items)
    records = imported(items)
    assert [r.control_number for r in records] == ["059898", "056078", "046658", "060357", "054333", "046340",
                                                   "046513", "057977"]
    assert [i.position for i in items] == list(range(2, 10))   # line numbers (line 1 is the header)
    for r in records:
        assert (r.source, r.material_type, r.raw_format, r.language) == ("aozora", "etext", "aozora-csv", "jpn")
        assert r.links == [f"https://www.aozora.gr.jp/cards/{r.authors[0].authority_id}/card"
                           f"{int(r.control_number)}.html"]
        assert r.title_reading and not any("\u3041" <= c <= "\u3096" for c in r.title_reading)
        assert r.raw is not None and r.raw.startswith(b'"\xe4\xbd\x9c\xe5\x93\x81ID"')   # header + the row
        assert r.publisher == "青空文庫" and r.publisher_reading == "アオゾラブンコ"


def test_extended_known_work() -> None:
    r = {r.control_number: r for r in imported(extended())}["046658"]
    assert (r.title, r.title_reading) == ("スリーピー・ホローの伝説", "スリーピー・ホローノデンセツ")
    assert (r.subtitle, r.subtitle_reading) == ("故ディードリッヒ・ニッカボッカーの遺稿より",
                                                "コディードリッヒ・ニッカボッカーノイコウヨリ")
    assert r.parallel_titles == ["THE LEGEND OF SLEEPY HOLLOW"]
    assert r.authors == [Name(name="アーヴィング ワシントン", reading="アーヴィング ワシントン", role="著者",
                              dates="1783-1859", transcription="Irving Washington", authority_id="001257")]
    assert (r.ndc, r.audience, r.year) == ("933", None, 2011)
    assert r.links == ["https://www.aozora.gr.jp/cards/001257/card46658.html"]
    assert "青空文庫公開日: 2011-12-31" in r.notes
    assert "底本: スケッチ・ブック（新潮文庫、新潮社、1957（昭和32）年5月20日）" in r.notes


def test_children_ndc_keeps_the_class() -> None:
    records = {r.control_number: r for r in imported(extended())}
    urashima = records["060357"]   # 分類番号 'NDC K933'
    assert (urashima.ndc, urashima.audience) == ("933", "juvenile")
    assert urashima.classifications == [Classification(scheme="ndc", number="933")]
    meiki = records["046513"]      # 'NDC 756 914': two classes
    assert meiki.ndc == "756" and [c.number for c in meiki.classifications] == ["756", "914"]
    assert meiki.audience is None
    assert records["057977"].authors[0].reading == "アイヅ ヤイチ"   # 姓読み/名読み in hiragana → katakana


def test_official_layout_unquoted_header_and_dates_with_bom(tmp_path: Path) -> None:
    header, rows = extended_rows()
    path = write_csv(tmp_path / "list_person_all_extended_utf8.csv", header, rows, quote_header=False,
                     quote_dates=False, bom=True)
    text = path.read_text(encoding="utf-8-sig")
    assert text.startswith("作品ID,作品名,") and ",2020-04-03," in text   # really unquoted
    items = list(read_aozora(path))
    assert not rejected(items)
    assert [comparable(r) for r in imported(items)] == [comparable(r) for r in imported(extended())]


def test_rows_of_one_work_merge_into_one_record(tmp_path: Path) -> None:
    header, rows = extended_rows()
    h = {name: i for i, name in enumerate(header)}
    translator = list(rows[1])   # 駅伝馬車 by Irving, with its translator in a second row
    for column, value in (("人物ID", "000621"), ("姓", "高垣"), ("名", "松雄"), ("姓読み", "たかがき"),
                          ("名読み", "まつお"), ("役割フラグ", "翻訳者"), ("生年月日", "1898-01-01"), ("没年月日", ""),
                          ("姓ローマ字", ""), ("名ローマ字", "")):
        translator[h[column]] = value
    path = write_csv(tmp_path / "merge.csv", header, [rows[0], rows[1], translator, rows[2]])
    records = imported(list(read_aozora(path)))
    assert [r.control_number for r in records] == ["059898", "056078", "046658"]
    assert records[1].authors[1] == Name(name="高垣 松雄", reading="タカガキ マツオ", role="翻訳者", dates="1898-",
                                         authority_id="000621")
    assert records[1].links == ["https://www.aozora.gr.jp/cards/001257/card56078.html"]
    assert records[1].raw is not None and records[1].raw.count(b"\r\n") == 3   # header and both rows


def test_bad_row_is_rejected_with_its_line_and_the_rest_imports(tmp_path: Path) -> None:
    header, rows = extended_rows()
    h = {name: i for i, name in enumerate(header)}
    rows = [list(r) for r in rows]
    rows[0][h["初出"]] = "「少年園」\n第二巻"       # a quoted field over two lines: later line numbers shift
    rows[2][h["作品ID"]] = "04665X"                  # line 5
    rows[4][h["公開日"]] = "2011/11/21"              # line 7
    path = write_csv(tmp_path / "bad.csv", header, rows)
    items = list(read_aozora(path))
    bad = rejected(items)
    assert [(b.position, b.offset) for b in bad] == [(5, None), (7, None)]
    assert "作品ID '04665X' is not a number" in bad[0].reason
    assert "公開日 '2011/11/21' is not a date" in bad[1].reason and bad[1].identifier == "054333"
    assert str(bad[1]).startswith("line 7 [054333]: ")
    assert [r.control_number for r in imported(items)] == ["059898", "056078", "060357", "046340", "046513",
                                                           "057977"]
    assert imported(items)[0].notes[1:3] == ["底本: スケッチ・ブック（新潮文庫、新潮社、1957（昭和32）年5月20日）",
                                             "初出: 「少年園」\n第二巻"]


def test_invalid_utf8_row_is_rejected(tmp_path: Path) -> None:
    lines = EXTENDED.read_bytes().split(b"\n")
    lines[3] = lines[3].replace("スリーピー".encode(), b"\xff\xfe\xfd", 1)
    path = tmp_path / "broken.csv"
    path.write_bytes(b"\n".join(lines))
    items = list(read_aozora(path))
    (bad,) = rejected(items)
    assert bad.position == 4 and bad.reason == "invalid UTF-8 on line 4"
    assert len(imported(items)) == 7


def test_wrong_number_of_fields_is_rejected(tmp_path: Path) -> None:
    header, rows = extended_rows()
    rows = [list(r) for r in rows]
    del rows[1][-3:]
    items = list(read_aozora(write_csv(tmp_path / "short.csv", header, rows)))
    (bad,) = rejected(items)
    assert bad.position == 3 and "the row has 52 fields, the header has 55" in bad.reason


def test_missing_columns_are_named(tmp_path: Path) -> None:
    header, rows = extended_rows()
    keep = [i for i, name in enumerate(header) if name not in ("作品名読み", "役割フラグ")]
    path = write_csv(tmp_path / "cut.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    with pytest.raises(AozoraFormatError) as e:
        read_aozora(path)
    assert "missing column(s) 作品名読み, 役割フラグ" in str(e.value) and "cut.csv" in str(e.value)
    old_like = tmp_path / "old.csv"
    old_like.write_text("人物ID,著者名,作品名\n001257,アーヴィング ワシントン,駅伝馬車\n", encoding="utf-8")
    with pytest.raises(AozoraFormatError, match=r"list \(list_person_all\) CSV: missing column\(s\) 作品ID, 翻訳者"):
        read_aozora(old_like)
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(AozoraFormatError, match="missing column"):
        read_aozora(nothing)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(AozoraFormatError, match="empty"):
        read_aozora(empty)


# ------------------------------------------------------------------------------------------------ older list


def test_old_list_imports_every_work() -> None:
    with open(OLD, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15226
    items = old()
    assert not rejected(items)
    records = imported(items)
    assert len(records) == len({row["作品ID"] for row in rows}) == 14283
    assert len({r.control_number for r in records}) == len(records)
    persons: dict[str, set[str]] = {}
    for row in rows:
        persons.setdefault(row["作品ID"], set()).add(row["人物ID"])
    assert all({a.authority_id for a in r.authors} == persons[r.control_number] for r in records)
    # one Name per row, except two rows that repeat a (person, work) already listed twice as translator
    # (知里幸恵 アイヌ神謡集, 知里真志保 えぞおばけ列伝: 翻訳者名等 '知里 幸恵、知里 幸恵')
    assert sum(len(r.authors) for r in records) == 15226 - 2
    for r in records:
        assert r.material_type == "etext" and r.title and r.links[0].startswith("https://www.aozora.gr.jp/cards/")
        assert r.title_reading is None   # the old list has no readings: the indexer generates them


def test_old_list_card_url_and_roles() -> None:
    records = {r.control_number: r for r in imported(old())}
    r = records["056078"]   # 001257,"アーヴィング ワシントン",056078,"駅伝馬車",旧字旧仮名,"高垣 松雄",...
    assert r.title == "駅伝馬車"
    assert r.links == ["https://www.aozora.gr.jp/cards/001257/card56078.html"]
    assert [(a.name, a.role, a.authority_id) for a in r.authors] == [
        ("アーヴィング ワシントン", "著者", "001257"), ("高垣 松雄", "翻訳者", "000621")]
    assert (r.year, r.notes[0]) == (2013, "青空文庫公開日: 2013-09-20")
    beethoven = records["054933"]   # five persons on five rows, not adjacent in the file
    assert len(beethoven.authors) == 5 and [a.role for a in beethoven.authors].count("翻訳者") == 1
    assert beethoven.links == ["https://www.aozora.gr.jp/cards/001093/card54933.html"]   # lowest author 人物ID
    kaichoon = records["051172"]    # the same person on two identical rows: translator and author
    assert [(a.name, a.role) for a in kaichoon.authors] == [("上田 敏", "翻訳者"), ("上田 敏", "著者")]
    assert records["056572"].authors[0].name == "青空文庫"   # '青空文庫 ' in the file: trimmed


def test_old_list_non_adjacent_rows_merge(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "\ufeff人物ID,著者名,作品ID,作品名,仮名遣い種別,翻訳者名等,入力者名,校正者名,状態,状態の開始日,底本名,出版社名,"
        "入力に使用した版,校正に使用した版\n"
        '000010,"甲 太郎",000100,"作品",新字新仮名,"乙 花子","","",公開,2001-01-01,"","","",""\n'
        '000010,"甲 太郎",000200,"別作品",新字新仮名,"","","",公開,2002-02-02,"","","",""\n'
        '000009,"乙 花子",000100,"作品",新字新仮名,"乙 花子","","",公開,2001-01-01,"","","",""\n'
        '000011,"丙",abc,"壊れた行",新字新仮名,"","","",公開,2001-01-01,"","","",""\n', encoding="utf-8")
    items = list(read_aozora(path))
    # a work is emitted when its last row has been read: 000200 (line 3), then 000100 (lines 2 and 4)
    assert [type(i).__name__ for i in items] == ["Imported", "Imported", "Rejected"]
    work = items[1]
    assert isinstance(work, Imported) and work.position == 2   # where its first row is
    assert work.record.control_number == "000100"
    assert [(a.name, a.role) for a in work.record.authors] == [("甲 太郎", "著者"), ("乙 花子", "翻訳者")]
    assert work.record.links == ["https://www.aozora.gr.jp/cards/000010/card100.html"]
    assert items[2].position == 5 and "作品ID 'abc'" in items[2].reason   # type: ignore[union-attr]


def test_to_katakana() -> None:
    assert to_katakana("えきでんばしゃ") == "エキデンバシャ"
    assert to_katakana("ゔぁいおりん・ゝゞ ABC 漢字") == "ヴァイオリン・ヽヾ ABC 漢字"
    assert to_katakana("アーヴィング") == "アーヴィング"
