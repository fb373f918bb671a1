"""NW-7 (Codabar) barcodes at the counter: scanner clean-up, check digits (チェックデジット) and the
number ranges (番号帯) that say which codes are items (資料) and which are patron cards (利用者カード).

Pure functions. Existing labels and cards from the previous system keep working because the check-digit
scheme and length are configuration per range (and per branch): see docs/barcodes.md for the schemes,
their sources and worked examples.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from stdnum import ean as stdnum_ean

from api.errors import ShokaError

Kind = Literal["item", "patron"]
KINDS: tuple[Kind, ...] = ("item", "patron")

CHECK_SCHEMES: tuple[str, ...] = (
    "none",
    "mod10_w21",         # モジュラス10 ウェイト2・1 一括法: products summed as whole numbers
    "mod10_w21_digits",  # モジュラス10 ウェイト2・1 分割法 (Luhn): digits of each product summed
    "mod10_w31",         # モジュラス10 ウェイト3・1 (the JAN/EAN rule)
    "mod11",             # モジュラス11 ウェイト2〜7: remainders 0 and 1 both give 0
    "7dr",               # the number mod 7
    "7dsr",              # 7 − (the number mod 7): 1..7
    "9dr",               # the number mod 9
    "9dsr",              # 9 − (the number mod 9): 1..9
    "mod16",             # Codabar's own: character values incl. start/stop, to a multiple of 16
)

SCHEME_NAMES_JA: dict[str, str] = {
    "none": "チェックデジットなし",
    "mod10_w21": "モジュラス10 ウェイト2・1（一括法）",
    "mod10_w21_digits": "モジュラス10 ウェイト2・1（分割法・Luhn）",
    "mod10_w31": "モジュラス10 ウェイト3・1",
    "mod11": "モジュラス11 ウェイト2〜7",
    "7dr": "7DR（7で割った余り）",
    "7dsr": "7DSR（7から余りを引いた値）",
    "9dr": "9DR（9で割った余り）",
    "9dsr": "9DSR（9から余りを引いた値）",
    "mod16": "モジュラス16（NW-7）",
}
SCHEME_NAMES_EN: dict[str, str] = {
    "none": "no check digit",
    "mod10_w21": "modulus 10, weights 2-1, products summed",
    "mod10_w21_digits": "modulus 10, weights 2-1, digits of products summed (Luhn)",
    "mod10_w31": "modulus 10, weights 3-1",
    "mod11": "modulus 11, weights 2-7",
    "7dr": "7DR (remainder of division by 7)",
    "7dsr": "7DSR (7 minus the remainder)",
    "9dr": "9DR (remainder of division by 9)",
    "9dsr": "9DSR (9 minus the remainder)",
    "mod16": "modulus 16 (Codabar)",
}

# Codabar start/stop characters; T N * E are the same bar patterns as A B C D (alternate names).
START_STOP = frozenset("ABCDTNE*abcdtne")
# Codabar character values for modulus 16 (JIS X 0506 character set; start/stop count as 16..19).
CODABAR_VALUES: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "-": 10, "$": 11, ":": 12, "/": 13, ".": 14, "+": 15,
    "A": 16, "B": 17, "C": 18, "D": 19, "T": 16, "N": 17, "*": 18, "E": 19,
}
MOD16_CHARS = "0123456789-$:/.+"
_CODABAR_DATA = re.compile(r"^[0-9\-$:/.+]+$")
ALLOWED_RE = re.compile(r"^[0-9A-Za-z-]{1,32}$")  # the item table's rule for barcodes
MAX_LENGTH = 32
# Hyphen look-alikes an IME or a spreadsheet puts where the label has '-'; NFKC leaves them alone.
_HYPHENS = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70"), "-")

FIELD_JA = {"item": "資料番号", "patron": "利用者番号"}
FIELD_EN = {"item": "item barcode", "patron": "patron card number"}
KIND_JA = {"item": "資料のバーコード", "patron": "利用者カード"}
KIND_EN = {"item": "an item barcode", "patron": "a patron card"}


# --- scanner clean-up ---------------------------------------------------------------------------

def _split_scan(raw: str) -> tuple[str, str, str]:
    """(start, data, stop): trimmed and NFKC-normalised, with the start/stop pair split off when present."""
    text = unicodedata.normalize("NFKC", raw or "").translate(_HYPHENS)
    text = text.strip().strip("".join(map(chr, range(32))) + "\x7f").strip()
    # Only a real pair counts: a letter at both ends around Codabar data, so codes such as "TEST"
    # or "A12B3A" from a previous system are left as they are.
    if len(text) >= 3 and text[0] in START_STOP and text[-1] in START_STOP and _CODABAR_DATA.match(text[1:-1]):
        return text[0], text[1:-1], text[-1]
    return "", text, ""


def strip_scanner_chars(raw: str) -> str:
    """What the scanner sent, without its decorations: surrounding whitespace and CR/LF, full-width
    characters from an IME (全角数字) folded by NFKC, and the Codabar start/stop characters
    (A B C D or T N * E, either case) when they stand at both ends."""
    return _split_scan(raw)[1]


# --- check digits -------------------------------------------------------------------------------

def _digits(body: str, scheme: str) -> list[int]:
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(f"check scheme {scheme!r} needs a body of digits, got {body!r}")
    return [int(c) for c in body]


def _mod10(body: str, scheme: str, weights: tuple[int, int], split_products: bool) -> str:
    total = 0
    for i, d in enumerate(reversed(_digits(body, scheme))):
        product = d * weights[i % 2]
        total += product // 10 + product % 10 if split_products else product
    return str((10 - total % 10) % 10)


def _mod11(body: str, scheme: str) -> str:
    total = sum(d * (2 + i % 6) for i, d in enumerate(reversed(_digits(body, scheme))))
    remainder = total % 11
    # 11 − 0 = 11 and 11 − 1 = 10 cannot be one digit: both are written as 0 (the common Japanese
    # business rule, e.g. Hitachi's LXRPIZ04). A remainder of 1 therefore also gives check digit 0.
    return "0" if remainder in (0, 1) else str(11 - remainder)


def _mod16(body: str, scheme: str) -> str:
    start, data, stop = body[:1], body[1:-1], body[-1:]
    if not (len(body) >= 3 and start in START_STOP and stop in START_STOP):
        start, data, stop = "", body, ""
    if not data or not _CODABAR_DATA.match(data):
        raise ValueError(f"check scheme {scheme!r} needs Codabar data characters, got {body!r}")
    # Without start/stop the pair is taken as A…A, whose values (16 + 16) add nothing modulo 16.
    total = sum(CODABAR_VALUES[c] for c in (start + data + stop).upper())
    return MOD16_CHARS[(16 - total % 16) % 16]


def compute_check_digit(body: str, scheme: str) -> str:
    """The check character for `body` (the number without its check digit) under `scheme`
    ('' for "none"). For "mod16" the body may keep its start/stop characters, e.g. "A37859B".
    Raises ValueError on an unknown scheme or a body the scheme cannot take (non-digits)."""
    if scheme == "none":
        return ""
    if scheme == "mod10_w21":
        return _mod10(body, scheme, (2, 1), split_products=False)
    if scheme == "mod10_w21_digits":
        return _mod10(body, scheme, (2, 1), split_products=True)
    if scheme == "mod10_w31":
        return _mod10(body, scheme, (3, 1), split_products=False)
    if scheme == "mod11":
        return _mod11(body, scheme)
    if scheme in ("7dr", "7dsr", "9dr", "9dsr"):
        modulus = int(scheme[0])
        _digits(body, scheme)
        remainder = int(body) % modulus
        return str(remainder if scheme.endswith("dr") else modulus - remainder)
    if scheme == "mod16":
        return _mod16(body, scheme)
    raise ValueError(f"unknown check scheme {scheme!r}; known: {', '.join(CHECK_SCHEMES)}")


def has_valid_check_digit(code: str, scheme: str) -> bool:
    """True when the last character of `code` is the check digit of the rest under `scheme`
    (always True for "none"). For "mod16" the code may carry its start/stop characters, the check
    character standing just before the stop character. Unknown scheme: ValueError."""
    if scheme not in CHECK_SCHEMES:
        raise ValueError(f"unknown check scheme {scheme!r}; known: {', '.join(CHECK_SCHEMES)}")
    if scheme == "none":
        return True
    if scheme == "mod16":
        start, data, stop = _split_scan(code)
        body, check = start + data[:-1] + stop, data[-1:]
    else:
        body, check = code[:-1], code[-1:]
    try:
        return bool(check) and compute_check_digit(body, scheme) == check
    except ValueError:
        return False


# --- number ranges ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BarcodeRule:
    """One number range (番号帯) of item labels or patron cards: codes starting with `prefix`
    ('' = any), `length` characters long including the check digit (None = any length), checked
    with `check_scheme`; `branch` is the branch code it belongs to (None = every branch)."""

    kind: Kind
    name: str = ""
    prefix: str = ""
    length: int | None = None
    check_scheme: str = "none"
    branch: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"barcode rule kind must be 'item' or 'patron', not {self.kind!r}")
        if self.check_scheme not in CHECK_SCHEMES:
            raise ValueError(f"unknown check scheme {self.check_scheme!r}; known: {', '.join(CHECK_SCHEMES)}")
        if self.prefix and not ALLOWED_RE.match(self.prefix):
            raise ValueError(f"barcode rule prefix {self.prefix!r}: letters, digits and '-' only")
        if self.length is not None and not 1 <= self.length <= MAX_LENGTH:
            raise ValueError(f"barcode rule length {self.length!r} must be between 1 and {MAX_LENGTH}")
        if self.length is not None and len(self.prefix) > self.length:
            raise ValueError(f"barcode rule prefix {self.prefix!r} is longer than the length {self.length}")
        if self.length is not None and self.check_scheme != "none" and self.length < 2:
            raise ValueError("a barcode with a check digit needs at least 2 characters")

    @property
    def discriminating(self) -> bool:
        """Whether the rule says anything about a code beyond its kind (a catch-all says nothing)."""
        return bool(self.prefix) or self.length is not None or self.check_scheme != "none"


def rules_for_branch(rules: Iterable[BarcodeRule], branch: str | None) -> tuple[BarcodeRule, ...]:
    """The rules in force at a counter of `branch`: those of every branch and those of that branch."""
    return tuple(r for r in rules if r.branch is None or r.branch == branch)


def rule_accepts(rule: BarcodeRule, code: str, start_stop: tuple[str, str] = ("", "")) -> bool:
    """Whether `code` (normalised) is in the rule's range: prefix, length and check digit."""
    if not code.startswith(rule.prefix):
        return False
    if rule.length is not None and len(code) != rule.length:
        return False
    if rule.check_scheme == "mod16":
        return has_valid_check_digit(start_stop[0] + code + start_stop[1], "mod16")
    return has_valid_check_digit(code, rule.check_scheme)


def match_rule(code: str, rules: Sequence[BarcodeRule], kind: str) -> BarcodeRule | None:
    """The rule of `kind` whose prefix `code` starts with; the longest prefix wins. Among rules with
    that same prefix (per branch, or old and new card lengths), one the code satisfies comes first,
    then one of the right length, then the first given."""
    candidates = [r for r in rules if r.kind == kind and code.startswith(r.prefix)]
    if not candidates:
        return None
    longest = max(len(r.prefix) for r in candidates)
    tied = [r for r in candidates if len(r.prefix) == longest]
    return max(tied, key=lambda r: (rule_accepts(r, code), r.length is None or r.length == len(code)))


def _recognised_as(code: str, rules: Sequence[BarcodeRule], kind: str,
                   start_stop: tuple[str, str] = ("", "")) -> BarcodeRule | None:
    """The most specific discriminating rule of `kind` that the code satisfies."""
    hits = [r for r in rules if r.kind == kind and r.discriminating and rule_accepts(r, code, start_stop)]
    return max(hits, key=lambda r: len(r.prefix), default=None)


def classify(code: str, rules: Sequence[BarcodeRule]) -> Kind | None:
    """Which kind a scanned code looks like (for a counter with one input field): the kind of the
    rule it satisfies (prefix, length and check digit); when rules of both kinds are satisfied the
    one with the longer prefix wins; None when no rule is satisfied or it stays ambiguous."""
    start, data, stop = _split_scan(code)
    best: dict[Kind, int] = {}
    for r in rules:
        if rule_accepts(r, data, (start, stop)):
            best[r.kind] = max(best.get(r.kind, -1), len(r.prefix))
    if len(best) == 1:
        return next(iter(best))
    if len(best) == 2 and best["item"] != best["patron"]:
        return "item" if best["item"] > best["patron"] else "patron"
    return None


# --- the counter --------------------------------------------------------------------------------

def _shown(value: str) -> str:
    return value if len(value) <= 40 else value[:40] + "…"


def _refuse(code: str, expect: str, value: str, ja: str, en: str) -> ShokaError:
    return ShokaError(code, f"{FIELD_JA[expect]}「{_shown(value)}」: {ja}",
                      f"{FIELD_EN[expect]} {_shown(value)!r}: {en}", status=422, field=expect)


def is_book_jan(code: str) -> bool:
    """The bars printed on a Japanese book's cover (書籍JANコード): the ISBN bar (978/979 with a
    valid check digit) or the second bar with classification and price (192…, 13 digits)."""
    if len(code) != 13 or not code.isascii() or not code.isdigit():
        return False
    if code.startswith("192"):
        return True
    return code.startswith(("978", "979")) and stdnum_ean.calc_check_digit(code[:12]) == code[12]


def parse_scan(raw: str, rules: Sequence[BarcodeRule], expect: Kind) -> str:
    """The normalised code of a scan into the `expect` field ("item" or "patron"), or a ShokaError
    (status 422, field = expect) with one of the codes barcode_empty, barcode_chars, book_jan,
    patron_barcode_in_item_field, item_barcode_in_patron_field, barcode_length, barcode_check_digit.

    `rules` are those in force at the counter (see rules_for_branch). A code in no range of the
    expected kind is accepted as it is, so numbers from the previous system keep working, unless it
    is recognised as the other kind."""
    if expect not in KINDS:
        raise ValueError(f"expect must be 'item' or 'patron', not {expect!r}")
    other: Kind = "patron" if expect == "item" else "item"
    start, code, stop = _split_scan(raw)
    ends = (start, stop)
    if not code:
        raise _refuse("barcode_empty", expect, "", "バーコードが読み取れていません。もう一度読み取ってください。",
                      "nothing was scanned; scan the barcode again.")
    if not ALLOWED_RE.match(code):
        raise _refuse("barcode_chars", expect, code,
                      f"使える文字は英数字とハイフンだけで、{MAX_LENGTH}文字以内です。",
                      f"only letters, digits and '-' are allowed, at most {MAX_LENGTH} characters.")
    rule = match_rule(code, rules, expect)
    # A range the library configured inside the JAN prefixes themselves keeps its numbers.
    claimed = rule is not None and rule.prefix.startswith(code[:3]) and rule_accepts(rule, code, ends)
    if is_book_jan(code) and not claimed:
        raise _refuse("book_jan", expect, code,
                      "本の表紙の書籍JANコードです。図書館のバーコードラベルを読み取ってください。",
                      "this is the barcode printed on the book's cover (ISBN/JAN); scan the library's label.")
    if rule is not None and rule_accepts(rule, code, ends):
        return code
    foreign = _recognised_as(code, rules, other, ends)
    if foreign is not None and (rule is None or len(foreign.prefix) >= len(rule.prefix)):
        raise _refuse(f"{other}_barcode_in_{expect}_field", expect, code,
                      f"これは{KIND_JA[other]}の番号です（{describe_rule(foreign)}）。"
                      f"{FIELD_JA[expect]}の欄には{KIND_JA[expect]}を読み取ってください。",
                      f"this is {KIND_EN[other]} ({foreign.name or foreign.prefix or 'any'} range), "
                      f"not {KIND_EN[expect]}.")
    if rule is None:
        return code
    if rule.length is not None and len(code) != rule.length:
        lengths = sorted({r.length for r in rules if r.kind == expect and r.prefix == rule.prefix and r.length})
        expected_ja = "・".join(f"{n}桁" for n in lengths)
        expected_en = " or ".join(str(n) for n in lengths)
        raise _refuse("barcode_length", expect, code,
                      f"{_range_ja(rule)}の番号は{expected_ja}ですが、{len(code)}桁でした。",
                      f"numbers in the {_range_en(rule)} have {expected_en} characters, this one has {len(code)}.")
    raise _refuse("barcode_check_digit", expect, code,
                  f"チェックデジット（{SCHEME_NAMES_JA[rule.check_scheme]}）が合いません。"
                  "読み取り直すか、番号を確かめてください。",
                  f"the check digit ({SCHEME_NAMES_EN[rule.check_scheme]}) is wrong; scan again or check the number.")


def _range_ja(rule: BarcodeRule) -> str:
    return f"先頭「{rule.prefix}」の範囲" if rule.prefix else "この範囲"


def _range_en(rule: BarcodeRule) -> str:
    return f"range starting {rule.prefix!r}" if rule.prefix else "configured range"


def describe_rule(rule: BarcodeRule) -> str:
    """A rule in words for admin screens (ja), e.g. "利用者カード「新カード」: 先頭「2」・14桁・
    モジュラス10 ウェイト2・1（分割法・Luhn）・全館"."""
    parts = [f"先頭「{rule.prefix}」" if rule.prefix else "先頭の指定なし",
             f"{rule.length}桁" if rule.length is not None else "桁数自由",
             SCHEME_NAMES_JA[rule.check_scheme],
             f"館「{rule.branch}」" if rule.branch is not None else "全館"]
    name = f"「{rule.name}」" if rule.name else ""
    return f"{KIND_JA[rule.kind]}{name}: " + "・".join(parts)
