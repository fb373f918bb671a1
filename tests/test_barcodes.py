"""NW-7 (Codabar) barcodes at the counter: check-digit schemes against published worked examples,
exhaustive round trips and error detection over small ranges, scanner clean-up and the counter's
refusals. Pure: no database."""

from __future__ import annotations

from itertools import product

import pytest
from stdnum import ean as stdnum_ean
from stdnum import isbn as stdnum_isbn
from stdnum import luhn as stdnum_luhn

from api.barcodes import (
    CHECK_SCHEMES,
    BarcodeRule,
    classify,
    compute_check_digit,
    describe_rule,
    has_valid_check_digit,
    is_book_jan,
    match_rule,
    parse_scan,
    rules_for_branch,
    strip_scanner_chars,
)
from api.errors import ShokaError

DIGIT_SCHEMES = [s for s in CHECK_SCHEMES if s not in ("none", "mod16")]
BODIES_4 = [f"{n:04d}" for n in range(10_000)]


# --- published worked examples ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "scheme", "expected"), [
    # AIM Japan, "NW-7 代表的なチェックデジット" (aimjal.co.jp/gijutu/barcode/nw-7.html): 12345678,
    # 分割 sum 38 → 10 − 8 = 2; 一括 sum 56 → 10 − 6 = 4.
    ("12345678", "mod10_w21_digits", "2"),
    ("12345678", "mod10_w21", "4"),
    # Qiita yoshi389111 "各種チェックデジットの計算方法": 20151119 → 3, 20151149 → 0 (remainder 0 gives 0).
    ("20151119", "mod10_w21_digits", "3"),
    ("20151149", "mod10_w21_digits", "0"),
    # Dynix / Ameritech Library Services Codabar library barcode 3 3191 00010586 4 (item "3",
    # institution 3191, serial 00010586, check digit 4; odd positions doubled, digits over 9 less 9).
    ("3319100010586", "mod10_w21_digits", "4"),
    # polylabel.com "About Checkdigit": JAN 4 90123 45678 9 → sum 126 → 10 − 6 = 4 (weights 3・1).
    ("490123456789", "mod10_w31", "4"),
    # activebarcode.com "Modulo 10": EAN 400763000011 → 44 → 6.
    ("400763000011", "mod10_w31", "6"),
    # Hitachi SEWB+ LXRPIZ04 (モジュラス11, weights 2..7 from the right): 12345 → 50 mod 11 = 6 → 5.
    ("12345", "mod11", "5"),
    # mimosa.gr.jp "チェックデジットについて": 7DR of 123456 → 17636 remainder 4.
    ("123456", "7dr", "4"),
    # nanoappli.com, Yamato Transport slip numbers: 12345678901 ÷ 7 → remainder 3.
    ("12345678901", "7dr", "3"),
    # okusu.net "NW-7バーコードと7チェック": 99991234567 mod 7 = 0 → a999912345670a.
    ("99991234567", "7dr", "0"),
    # 7DSR = 7 − remainder (polylabel.com: "(modulus − remainder) is the type 7DSR and 9DSR").
    ("123456", "7dsr", "3"),
    ("12345678901", "7dsr", "4"),
    ("99991234567", "7dsr", "7"),
    # 9DR / 9DSR, hand-computed: 123456 has digit sum 21, so it is 3 mod 9; 9 − 3 = 6.
    ("123456", "9dr", "3"),
    ("123456", "9dsr", "6"),
    ("999", "9dr", "0"),
    ("999", "9dsr", "9"),
    # barcode-net.com "モジュラス16": A37859B → 16+3+7+8+5+9+17 = 65 → 16 − 1 = 15 → "+".
    ("A37859B", "mod16", "+"),
    # Intermec 1800 reference manual, Codabar: A01234B → 43, next multiple of 16 is 48 → "5".
    ("A01234B", "mod16", "5"),
])
def test_published_examples(body: str, scheme: str, expected: str) -> None:
    assert compute_check_digit(body, scheme) == expected
    if scheme == "mod16":
        assert has_valid_check_digit(body[:-1] + expected + body[-1], scheme)
    else:
        assert has_valid_check_digit(body + expected, scheme)


@pytest.mark.parametrize(("body", "expected"), [
    ("6", "0"),   # 6×2 = 12, remainder 1: 11 − 1 = 10 is written as 0
    ("0", "0"),   # remainder 0: 0
    ("5", "1"),   # 10, remainder 10: 11 − 10 = 1
    ("1", "9"),   # 2: 11 − 2 = 9
    ("1111111", "4"),   # weights 2,3,4,5,6,7 then 2 again: 29, remainder 7: 11 − 7 = 4
])
def test_mod11_remainder_rules(body: str, expected: str) -> None:
    assert compute_check_digit(body, "mod11") == expected


def test_mod10_one_digit_bodies_by_hand() -> None:
    # Rightmost body digit carries weight 2 (w21) or 3 (w31).
    assert [compute_check_digit(str(d), "mod10_w21") for d in range(10)] == \
        [str((10 - 2 * d % 10) % 10) for d in range(10)]
    assert [compute_check_digit(str(d), "mod10_w21_digits") for d in range(10)] == \
        ["0", "8", "6", "4", "2", "9", "7", "5", "3", "1"]
    assert [compute_check_digit(str(d), "mod10_w31") for d in range(10)] == \
        ["0", "7", "4", "1", "8", "5", "2", "9", "6", "3"]


def test_none_scheme() -> None:
    assert compute_check_digit("123", "none") == ""
    assert has_valid_check_digit("anything", "none")


@pytest.mark.parametrize("body", ["", "12a4", "１２３", "12 3", "-12"])
@pytest.mark.parametrize("scheme", DIGIT_SCHEMES)
def test_non_digit_bodies_are_refused(body: str, scheme: str) -> None:
    with pytest.raises(ValueError, match="digits"):
        compute_check_digit(body, scheme)
    assert not has_valid_check_digit(body + "0", scheme)


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown check scheme"):
        compute_check_digit("123", "mod97")
    with pytest.raises(ValueError, match="unknown check scheme"):
        has_valid_check_digit("1234", "luhn")
    with pytest.raises(ValueError, match="unknown check scheme"):
        BarcodeRule("item", check_scheme="M10W21")


# --- exhaustive: round trips, uniqueness, error detection ---------------------------------------

def _valid_codes(scheme: str) -> set[str]:
    return {body + compute_check_digit(body, scheme) for body in BODIES_4}


@pytest.mark.parametrize("scheme", DIGIT_SCHEMES)
def test_round_trip_and_uniqueness_over_all_4_digit_bodies(scheme: str) -> None:
    valid = _valid_codes(scheme)
    assert len(valid) == 10_000  # one check digit per body
    # Every 5-digit string is judged valid exactly when it is a body with its computed check digit.
    for n in range(100_000):
        code = f"{n:05d}"
        assert has_valid_check_digit(code, scheme) == (code in valid), code


def test_digit_schemes_agree_with_independent_implementations() -> None:
    for body in [*BODIES_4, "12345678", "3319100010586", "98765432109876543210"]:
        assert compute_check_digit(body, "mod10_w21_digits") == stdnum_luhn.calc_check_digit(body)
        assert compute_check_digit(body, "mod10_w31") == stdnum_ean.calc_check_digit(body)
        n = int(body)
        assert compute_check_digit(body, "7dr") == str(n % 7)
        assert compute_check_digit(body, "7dsr") == str(7 - n % 7)
        assert compute_check_digit(body, "9dr") == str(n % 9)
        assert compute_check_digit(body, "9dsr") == str(9 - n % 9)


def _substitutions(code: str) -> list[tuple[int, str]]:
    return [(i, code[:i] + d + code[i + 1:]) for i in range(len(code)) for d in "0123456789" if d != code[i]]


@pytest.mark.parametrize("scheme", ["mod10_w21_digits", "mod10_w31"])
def test_every_single_digit_substitution_is_detected(scheme: str) -> None:
    valid = _valid_codes(scheme)
    for code in valid:
        for _, wrong in _substitutions(code):
            assert wrong not in valid, (code, wrong)


def test_mod10_w21_whole_products_misses_exactly_the_fives_at_weight_2() -> None:
    # 一括法: a digit under weight 2 changed by 5 changes the sum by 10, which modulus 10 cannot see
    # (0↔5, 1↔6, ...). That is why many systems prefer 分割法. Everything else is caught.
    valid = _valid_codes("mod10_w21")
    missed = {(code, wrong) for code in valid for _, wrong in _substitutions(code) if wrong in valid}
    expected = {(code, wrong) for code in valid for i, wrong in _substitutions(code)
                if i in (1, 3) and abs(int(code[i]) - int(wrong[i])) == 5}
    assert missed == expected
    assert len(expected) == 10_000 * 2 * 1  # each weight-2 digit has exactly one partner ±5


def test_mod11_misses_only_remainders_0_and_1_sharing_check_digit_0() -> None:
    def remainder(body: str) -> int:  # weights 2..7 from the right, as in Hitachi LXRPIZ04
        return sum(int(c) * w for c, w in zip(reversed(body), [2, 3, 4, 5, 6, 7] * 3, strict=False)) % 11

    valid = _valid_codes("mod11")
    missed = [(code, wrong) for code in valid for _, wrong in _substitutions(code) if wrong in valid]
    assert missed  # the price of writing 10 as 0
    for code, wrong in missed:
        assert code[-1] == wrong[-1] == "0"
        assert {remainder(code[:-1]), remainder(wrong[:-1])} == {0, 1}
    # And the converse: every 0↔1 remainder flip by one substitution goes unseen.
    flips = sum(1 for code in valid for i, wrong in _substitutions(code)
                if i < 4 and {remainder(code[:-1]), remainder(wrong[:-1])} == {0, 1})
    assert flips == len(missed)


def test_seven_check_catches_substitutions_except_by_seven() -> None:
    # 7DR: a body digit changed by d changes the number by d × 10^k, a multiple of 7 only when d = ±7
    # (0↔7, 1↔8, 2↔9 go unseen); a changed check digit is always caught.
    valid = _valid_codes("7dr")
    for code in valid:
        for i, wrong in _substitutions(code):
            seen = wrong not in valid
            assert seen == (i == 4 or abs(int(code[i]) - int(wrong[i])) != 7), (code, wrong)


MOD16_PAIRS = ["", *("".join(p) for p in product("ABCD", repeat=2))]


def test_mod16_round_trip_for_every_start_stop_pair() -> None:
    for body in (f"{n:03d}" for n in range(1000)):
        for pair in MOD16_PAIRS:
            start, stop = (pair[0], pair[1]) if pair else ("", "")
            check = compute_check_digit(start + body + stop, "mod16")
            hits = [c for c in "0123456789-$:/.+" if has_valid_check_digit(start + body + c + stop, "mod16")]
            assert hits == [check], (start, body, stop)
            values = sum({"A": 16, "B": 17, "C": 18, "D": 19}.get(c, 0) for c in start + stop)
            assert (values + sum(map(int, body)) + "0123456789-$:/.+".index(check)) % 16 == 0


def test_mod16_without_start_stop_is_taken_as_a_pair_of_a() -> None:
    for body in ("012345", "37859", "0000", "999"):
        assert compute_check_digit(body, "mod16") == compute_check_digit("A" + body + "A", "mod16")
        assert compute_check_digit(body, "mod16") == compute_check_digit("t" + body + "t", "mod16")
    assert has_valid_check_digit("A012345B", "mod16")
    assert not has_valid_check_digit("012345", "mod16")  # the Intermec label's pair is A…B, not A…A
    assert has_valid_check_digit("012346", "mod16")


# --- scanner clean-up ---------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("A12345A", "12345"),
    ("a12345b", "12345"),
    ("C0123456789D\r\n", "0123456789"),
    ("  B0001C\t", "0001"),
    ("T123N", "123"),
    ("*123*", "123"),
    ("e123e", "123"),
    ("A-12-A", "-12-"),
    ("A12345", "A12345"),      # start/stop only at one end: part of the code
    ("12345B", "12345B"),
    ("TEST", "TEST"),          # letters inside: not a Codabar start/stop pair
    ("ABBA", "ABBA"),
    ("A12B3A", "A12B3A"),
    ("AB", "AB"),
    ("AA", "AA"),
    ("１２３４５", "12345"),      # full-width digits from an IME
    ("Ａ１２３４Ａ", "1234"),
    ("ａ００１２ｄ\r\n", "0012"),
    ("\u3000１２３\u3000", "123"),
    ("12ー34", "12-34"),        # IME long-vowel mark where the label has '-'
    ("12－34", "12-34"),        # full-width hyphen-minus
    ("\x02123456\x03", "123456"),  # STX/ETX framing from some scanners
    ("\r\n", ""),
    ("", ""),
])
def test_strip_scanner_chars(raw: str, expected: str) -> None:
    assert strip_scanner_chars(raw) == expected
    assert strip_scanner_chars(strip_scanner_chars(raw)) == expected  # idempotent


# --- rules --------------------------------------------------------------------------------------

def _luhn(body: str) -> str:
    return body + stdnum_luhn.calc_check_digit(body)


PATRON_CARD = _luhn("2319100010586")          # 14 digits, "2" = patron (Dynix layout)
ITEM_LABEL = _luhn("3319100010586")           # 33191000105864, the published example
RULES = (
    BarcodeRule("patron", "利用者カード", prefix="2", length=14, check_scheme="mod10_w21_digits"),
    BarcodeRule("item", "資料ラベル", prefix="3", length=14, check_scheme="mod10_w21_digits"),
    BarcodeRule("item", "旧分館ラベル", prefix="35", length=8, check_scheme="7dr", branch="north"),
)


def test_example_codes() -> None:
    assert ITEM_LABEL == "33191000105864"
    assert PATRON_CARD == "23191000105866"  # first digit 3 → 2 under weight 2: sum 2 less, check 2 more


def test_match_rule_longest_prefix_wins() -> None:
    assert match_rule("35000012", RULES, "item") == RULES[2]
    assert match_rule("33191000105864", RULES, "item") == RULES[1]
    assert match_rule("3", RULES, "item") == RULES[1]
    assert match_rule("4123", RULES, "item") is None
    assert match_rule(PATRON_CARD, RULES, "item") is None
    assert match_rule(PATRON_CARD, RULES, "patron") == RULES[0]
    catch_all = BarcodeRule("item", prefix="")
    assert match_rule("4123", (*RULES, catch_all), "item") == catch_all
    assert match_rule("35000012", (catch_all, *RULES), "item") == RULES[2]


def test_match_rule_same_prefix_prefers_the_rule_the_code_satisfies() -> None:
    main = BarcodeRule("item", prefix="1", length=10, check_scheme="7dr", branch="main")
    north = BarcodeRule("item", prefix="1", length=8, check_scheme="mod11", branch="north")
    code8 = "1234567" + compute_check_digit("1234567", "mod11")
    code10 = "123456789" + compute_check_digit("123456789", "7dr")
    assert match_rule(code8, (main, north), "item") == north
    assert match_rule(code10, (main, north), "item") == main
    assert match_rule("123", (main, north), "item") == main  # neither: the first given


def test_rules_for_branch() -> None:
    assert rules_for_branch(RULES, "north") == RULES
    assert rules_for_branch(RULES, "main") == RULES[:2]
    assert rules_for_branch(RULES, None) == RULES[:2]


def test_classify() -> None:
    assert classify(PATRON_CARD, RULES) == "patron"
    assert classify(ITEM_LABEL, RULES) == "item"
    assert classify("A" + ITEM_LABEL + "A", RULES) == "item"
    assert classify("3500001" + compute_check_digit("3500001", "7dr"), RULES) == "item"
    assert classify(ITEM_LABEL[:-1] + "0", RULES) is None   # wrong check digit: no rule satisfied
    assert classify("4123", RULES) is None
    assert classify("4123", ()) is None
    # A catch-all item range and a patron range: the more specific prefix decides.
    rules = (BarcodeRule("item"), RULES[0])
    assert classify(PATRON_CARD, rules) == "patron"
    assert classify("4123", rules) == "item"
    # The same range shape for both kinds: ambiguous.
    both = (BarcodeRule("item", prefix="9", length=4), BarcodeRule("patron", prefix="9", length=4))
    assert classify("9123", both) is None


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        BarcodeRule("group")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="longer than"):
        BarcodeRule("item", prefix="12345", length=4)
    with pytest.raises(ValueError, match="between"):
        BarcodeRule("item", length=33)
    with pytest.raises(ValueError, match="prefix"):
        BarcodeRule("item", prefix="12 3")
    with pytest.raises(ValueError, match="at least 2"):
        BarcodeRule("item", length=1, check_scheme="7dr")


def test_describe_rule() -> None:
    assert describe_rule(RULES[0]) == \
        "利用者カード「利用者カード」: 先頭「2」・14桁・モジュラス10 ウェイト2・1（分割法・Luhn）・全館"
    assert describe_rule(RULES[2]) == \
        "資料のバーコード「旧分館ラベル」: 先頭「35」・8桁・7DR（7で割った余り）・館「north」"
    assert describe_rule(BarcodeRule("item")) == \
        "資料のバーコード: 先頭の指定なし・桁数自由・チェックデジットなし・全館"


# --- the counter --------------------------------------------------------------------------------

def _refusal(raw: str, rules: tuple[BarcodeRule, ...], expect: str) -> ShokaError:
    with pytest.raises(ShokaError) as caught:
        parse_scan(raw, rules, expect)  # type: ignore[arg-type]
    error = caught.value
    assert error.status == 422
    assert error.field == expect
    return error


def test_accepts_codes_in_range_with_scanner_decorations() -> None:
    assert parse_scan(ITEM_LABEL, RULES, "item") == ITEM_LABEL
    assert parse_scan(f"A{ITEM_LABEL}A\r\n", RULES, "item") == ITEM_LABEL
    assert parse_scan(ITEM_LABEL.translate(str.maketrans("0123456789", "０１２３４５６７８９")), RULES,
                      "item") == ITEM_LABEL
    assert parse_scan(f"c{PATRON_CARD}d", RULES, "patron") == PATRON_CARD


def test_no_rules_accepts_any_allowed_code_as_it_is() -> None:
    for raw, code in [("0123", "0123"), ("  ００１２３４５\r\n", "0012345"), ("ABC-123", "ABC-123"),
                      ("x" * 32, "x" * 32), (ITEM_LABEL[:-1] + "0", ITEM_LABEL[:-1] + "0")]:
        assert parse_scan(raw, (), "item") == code
        assert parse_scan(raw, (), "patron") == code


def test_codes_outside_every_range_are_accepted() -> None:
    assert parse_scan("4123", RULES, "item") == "4123"
    assert parse_scan("1000001", RULES, "patron") == "1000001"


@pytest.mark.parametrize("raw", ["", "   ", "\r\n", "\u3000", "\x02\x03"])
def test_empty(raw: str) -> None:
    error = _refusal(raw, RULES, "item")
    assert error.code == "barcode_empty"
    assert "資料番号" in error.message_ja and "item barcode" in error.message_en


@pytest.mark.parametrize("raw", ["12 34", "12_34", "本123", "12.34", "1" * 33, "37859+", "A37859+B"])
def test_characters(raw: str) -> None:
    error = _refusal(raw, (), "item")
    assert error.code == "barcode_chars"
    assert "英数字とハイフン" in error.message_ja and "32" in error.message_en


# The 書籍JANコード of a book marked C0030 ¥1400 (fukiyo.g1.xrea.com "ISBNとバーコード"):
# ISBN bar 978488399331 + check 4, price/classification bar 19200301400 + check 8.
BOOK_ISBN_BAR = "9784883993314"
BOOK_PRICE_BAR = "1920030014008"


def test_example_book_bars_are_valid_ean13() -> None:
    assert stdnum_isbn.is_valid(BOOK_ISBN_BAR)
    assert stdnum_ean.is_valid(BOOK_PRICE_BAR)
    assert stdnum_isbn.is_valid("9780306406157")


@pytest.mark.parametrize("expect", ["item", "patron"])
@pytest.mark.parametrize("raw", [BOOK_ISBN_BAR, BOOK_PRICE_BAR, "9780306406157", "1920000000000",
                                 " ９７８４８８３９９３３１４\r\n"])
@pytest.mark.parametrize("rules", [(), RULES, (BarcodeRule("item", prefix="1", length=10, check_scheme="7dr"),)])
def test_book_jan_refused(raw: str, expect: str, rules: tuple[BarcodeRule, ...]) -> None:
    error = _refusal(raw, rules, expect)
    assert error.code == "book_jan"
    assert "本の表紙の書籍JANコードです。図書館のバーコードラベルを読み取ってください。" in error.message_ja
    assert strip_scanner_chars(raw) in error.message_ja and strip_scanner_chars(raw) in error.message_en
    assert "cover" in error.message_en


def test_book_jan_lookalikes_are_not_refused() -> None:
    assert not is_book_jan("9784883993310")   # wrong ISBN check digit: an ordinary number
    assert parse_scan("9784883993310", (), "item") == "9784883993310"
    assert not is_book_jan("192003001400")     # 12 digits
    assert not is_book_jan("4912345678904")    # other JAN prefixes are not books
    assert is_book_jan("9790000000001") == stdnum_ean.is_valid("9790000000001")
    # A library range configured inside the JAN prefix itself keeps its numbers.
    own = (BarcodeRule("item", prefix="192", length=13, check_scheme="none"),)
    assert parse_scan(BOOK_PRICE_BAR, own, "item") == BOOK_PRICE_BAR
    with pytest.raises(ShokaError, match="cover"):
        parse_scan(BOOK_PRICE_BAR, own, "patron")


def test_patron_card_in_item_field() -> None:
    error = _refusal(PATRON_CARD, RULES, "item")
    assert error.code == "patron_barcode_in_item_field"
    assert PATRON_CARD in error.message_ja and "利用者カード" in error.message_ja and "資料番号" in error.message_ja
    assert PATRON_CARD in error.message_en and "patron card" in error.message_en


def test_item_label_in_patron_field() -> None:
    error = _refusal(f"A{ITEM_LABEL}B", RULES, "patron")
    assert error.code == "item_barcode_in_patron_field"
    assert ITEM_LABEL in error.message_ja and "利用者番号" in error.message_ja
    assert "item barcode" in error.message_en


def test_wrong_kind_recognised_when_only_the_other_kind_has_rules() -> None:
    patrons_only = (RULES[0],)
    assert _refusal(PATRON_CARD, patrons_only, "item").code == "patron_barcode_in_item_field"
    assert parse_scan(ITEM_LABEL, patrons_only, "item") == ITEM_LABEL
    assert parse_scan("2000", patrons_only, "item") == "2000"  # not a patron card: wrong length
    # A catch-all rule of the other kind recognises nothing.
    assert parse_scan("12345", (BarcodeRule("patron"),), "item") == "12345"


def test_wrong_kind_beats_length_error_of_a_catch_all_range() -> None:
    rules = (BarcodeRule("item", length=10, check_scheme="7dr"), RULES[0])
    assert _refusal(PATRON_CARD, rules, "item").code == "patron_barcode_in_item_field"
    assert _refusal("12345", rules, "item").code == "barcode_length"


def test_own_more_specific_range_beats_a_broader_range_of_the_other_kind() -> None:
    # A mistyped item in the "3" range that happens to pass the patrons' catch-all check is a mistyped item.
    rules = (BarcodeRule("item", prefix="3", length=14, check_scheme="7dr"),
             BarcodeRule("patron", length=14, check_scheme="mod10_w21_digits"))
    assert not has_valid_check_digit(ITEM_LABEL, "7dr")
    assert _refusal(ITEM_LABEL, rules, "item").code == "barcode_check_digit"
    assert parse_scan(ITEM_LABEL, rules, "patron") == ITEM_LABEL  # it is a valid patron number here
    assert classify(ITEM_LABEL, rules) == "patron"


def test_length() -> None:
    error = _refusal(ITEM_LABEL[:-1], RULES, "item")
    assert error.code == "barcode_length"
    assert "14桁" in error.message_ja and "13桁" in error.message_ja and "「3」" in error.message_ja
    assert "14" in error.message_en and "13" in error.message_en
    error = _refusal("350000123", RULES, "item")  # the 8-digit north range
    assert error.code == "barcode_length" and "8桁" in error.message_ja and "9桁" in error.message_ja


def test_check_digit() -> None:
    for i, wrong in _substitutions(ITEM_LABEL):
        if i < 2:  # a changed prefix leaves the range ("4…" is accepted as an outside number, "35…" is short)
            continue
        error = _refusal(wrong, RULES, "item")
        assert error.code == "barcode_check_digit", (i, wrong)
        assert "分割法・Luhn" in error.message_ja and "Luhn" in error.message_en
        assert wrong in error.message_ja and wrong in error.message_en
    # A transposition of neighbours is caught too here (not 0↔9 under Luhn, a known gap).
    assert _refusal("33191000105846", RULES, "item").code == "barcode_check_digit"


def test_mod16_range_uses_the_transmitted_start_stop() -> None:
    rules = (BarcodeRule("item", prefix="0", length=6, check_scheme="mod16"),)
    assert parse_scan("A012345B", rules, "item") == "012345"  # Intermec's published label
    assert _refusal("012345", rules, "item").code == "barcode_check_digit"  # taken as A…A
    assert parse_scan("012346", rules, "item") == "012346"
    assert classify("A012345B", rules) == "item"
    assert classify("012345", rules) is None


def test_expect_must_be_a_kind() -> None:
    with pytest.raises(ValueError):
        parse_scan("123", (), "group")  # type: ignore[arg-type]
