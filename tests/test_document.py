"""indexer.document.build: the title fields of a search document (its tokens, title_exact, title_sort)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from indexer import analysis
from indexer.document import _tokens, build
from indexer.plan import AnyOf, Term, unit_clause

NOW = datetime(2026, 11, 21)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def test_a_title_with_its_reading() -> None:
    doc = build(1, {"title": "圖書館 戦争", "title_reading": "トショカン センソウ"}, [], NOW)
    assert doc["title_exact"] == "図書館戦争"
    assert doc["title_sort"] == "トシヨカンセンソウ"  # folded: small kana as large
    assert doc["title_r"] == "トシヨカン センソウ"
    assert doc["title_c"].split()[:2] == ["図書館", "戦争"]


def test_a_title_without_a_reading_sorts_by_the_generated_one() -> None:
    doc = build(1, {"title": "吾輩は猫である"}, [], NOW)
    assert doc["title_sort"] == analysis.fold_reading(analysis.reading_of("吾輩は猫である")).replace(" ", "")
    assert doc["title_sort"].startswith("ワガハイ")
    assert doc["title_exact"] == "吾輩は猫である"


def test_subtitle_and_parallel_titles_come_after_the_title() -> None:
    doc = build(1, {"title": "銀河鉄道の夜", "title_reading": "ギンガ テツドウ ノ ヨル", "subtitle": "童話集",
                    "parallel_titles": ["Night on the Galactic Railroad"]}, [], NOW)
    units = doc["title_c"].split()
    assert units.index("銀河鉄道") < units.index("galactic") < units.index("童話")
    assert doc["title_r"].split() == ["ギンガ", "テツドウ", "ノ", "ヨル", "night", "on", "the", "galactic", "railroad",
                                      "ドウワ", "シユウ"]
    assert doc["title_exact"] == "銀河鉄道の夜"  # the title alone


def test_no_title() -> None:
    doc = build(1, {"title": "", "title_reading": "ヨミ ダケ", "subtitle": "副題"}, [], NOW)
    assert doc["title_exact"] == "" and doc["title_sort"] == "ヨミダケ"
    assert "ヨミ" not in doc["title_r"] and doc["title_c"] == "副題"
    empty = build(2, {}, [], NOW)
    assert empty["title_exact"] == empty["title_sort"] == empty["title_c"] == ""


def test_the_a_fields_hold_every_unit_at_either_length() -> None:
    """A C unit that splits (図書館 → 図書 館) is an A token too, so one A term finds it (indexer/plan.py)."""
    doc = build(1, {"title": "図書館の猫", "authors": [{"name": "図書館協会"}]}, [], NOW)
    assert doc["title_c"].split() == ["図書館", "の", "猫"]
    assert sorted(doc["title_a"].split()) == sorted(["図書", "館", "の", "猫", "図書館"])
    assert "図書館" in doc["author_a"].split() and "図書" in doc["author_a"].split()


def _shared_texts() -> list[str]:
    """Titles, names, source books and publishers from the shared Aozora Bunko list (real text, not made up
    here)."""
    with (DATA / "aozora_list_person_all_utf8.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    texts = {row[k] for row in rows for k in ("作品名", "著者名", "底本名", "出版社名") if row.get(k)}
    return sorted(texts)


def test_a_query_unit_finds_every_text_that_has_it() -> None:
    """The plan looks for a query's unit with one A term when the unit does not split: sound only if every
    text with that C unit has it among its A tokens, whatever its context in the text (秋色 splits inside
    日本の秋色 but not alone: found here before the A fields held the C units that split). Every unit of the
    real titles, names, source books and publishers in the shared Aozora Bunko list."""
    checked = 0
    for text in _shared_texts():
        tokens = _tokens(text, None)
        for unit in set(tokens["c"]):
            query = analysis.analyze_query(unit)
            if query.units_c != [unit]:
                continue  # the unit alone analyses differently: a query for it is planned from other units
            clause = unit_clause("title", unit, query.whole_units[0])
            terms = clause.clauses if isinstance(clause, AnyOf) else (clause,)
            assert any(isinstance(t, Term) and t.value in tokens[t.field.removeprefix("title_")] for t in terms), \
                (text, unit, clause)
            checked += 1
    assert checked > 20_000


def test_a_whole_unit_is_one_term_a_unit_that_splits_keeps_both() -> None:
    from indexer.plan import AllOf, text_clause
    from indexer.query import Text

    units = next(c for c in text_clause("title", Text("title", "猫の図書館", "partial")).clauses
                 if isinstance(c, AllOf))
    assert units.clauses == (Term("title_a", "猫", 2.0), Term("title_a", "の", 2.0),
                             AnyOf((Term("title_c", "図書館", 3.0), Term("title_a", "図書館", 2.0))))
