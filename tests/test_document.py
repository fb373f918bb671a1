"""indexer.document.build: the title fields of a search document (its tokens, title_exact, title_sort)."""

from __future__ import annotations

from datetime import datetime

from indexer import analysis
from indexer.document import build

NOW = datetime(2026, 11, 21)


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
