"""Receipts (貸出レシート・返却レシート・延長レシート) laid out as lines of text.

One layout serves the staff screen (render_text) and the ESC/POS printer (escpos_out.render_escpos), so what
staff see is what the patron gets. Widths are counted in printer columns: an ASCII character takes one column,
every other character is printed as a two-byte Shift_JIS character in kanji mode and takes two (全角).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from api.errors import invalid

Kind = Literal["checkout", "checkin", "renew"]
Lang = Literal["ja", "en"]
Align = Literal["left", "center", "right"]

GETA = "〓"  # ゲタ: the conventional stand-in for a character the printer has no glyph for
MIN_WIDTH = 24
MAX_WIDTH = 80


@dataclass(frozen=True)
class ReceiptLine:
    """One item on a receipt. `due_date` is None on a check-in receipt (返却レシート)."""

    title: str
    barcode: str
    due_date: date | None = None
    note: str = ""  # e.g. "予約あり" / "延長不可"


@dataclass(frozen=True)
class Receipt:
    """A receipt for one counter transaction. `patron_label` is already masked by the caller (e.g. "****1234");
    a patron's name never goes on paper."""

    kind: Kind
    library_name: str
    branch_name: str
    printed_at: datetime
    patron_label: str
    lines: tuple[ReceiptLine, ...]
    footer: str = ""  # the library's note, e.g. "返却はお早めに。次回休館日 …"
    lang: Lang = "ja"


@dataclass(frozen=True)
class LaidOutLine:
    """One printed line: its text (already printable, see `printable`) and how the printer styles it."""

    text: str
    align: Align = "left"
    bold: bool = False
    double: bool = False  # double width and double height (倍角)


# Characters Windows (cp932) data often carries that JIS X 0208 Shift_JIS spells with another code point.
_CP932_TO_JIS = str.maketrans({
    "～": "〜", "∥": "‖", "－": "−", "￠": "¢", "￡": "£", "￢": "¬", "—": "―",
    # JIS X 0201 yen and overline encode to the single bytes 0x5C/0x7E, which print as \ and ~ on ASCII
    # printers; their full-width forms always print right.
    "¥": "￥", "‾": "￣",
})
_HALFWIDTH_KANA = re.compile("[\uff61-\uff9f]+")
_JA_WEEKDAYS = "月火水木金土日"
_EN_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _kanji_ok(ch: str) -> bool:
    """True if `ch` is a two-byte Shift_JIS character the printer accepts in kanji mode (FS C 1: first byte
    81–9F or E0–EF)."""
    try:
        code = ch.encode("shift_jis")
    except UnicodeEncodeError:
        return False
    return len(code) == 2 and (0x81 <= code[0] <= 0x9F or 0xE0 <= code[0] <= 0xEF)


def _ascii_ok(ch: str) -> bool:
    return " " <= ch <= "~"


def _printable_char(ch: str) -> str:
    if _ascii_ok(ch) or _kanji_ok(ch):
        return ch
    # ①→1, Ⅱ→II, ㈱→(株), 欄 (compatibility ideograph)→欄: the same text in characters every printer has.
    for candidate in (unicodedata.normalize("NFKC", ch),
                      "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))):
        if candidate and all(_ascii_ok(c) or _kanji_ok(c) for c in candidate):
            return candidate
    return GETA  # 外字 and characters outside JIS X 0208 (e.g. 髙, 𠮷)


def printable(text: str) -> str:
    """The text as the printer can print it: ASCII and JIS X 0208 characters only; anything else becomes an
    equivalent spelling where one exists, otherwise 〓. Never raises."""
    text = unicodedata.normalize("NFC", text)
    # ｶﾞｲﾄﾞ → ガイド: half-width kana are single bytes that depend on the code table, and their sound marks
    # must join the kana before them.
    text = _HALFWIDTH_KANA.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    text = text.translate(_CP932_TO_JIS)
    out: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f":
            out.append(" ")
        elif category in ("Cc", "Cf", "Mn", "Me"):
            continue  # control characters, zero-width marks, variation selectors (異体字セレクタ)
        else:
            out.append(_printable_char(ch))
    return "".join(out)


def char_width(ch: str) -> int:
    """Columns one character takes: 1 for ASCII; 2 for East Asian wide, full-width and ambiguous characters
    (unicodedata.east_asian_width W/F/A), and 2 for any other two-byte Shift_JIS character, because kanji mode
    prints every two-byte code full-width (e.g. ¢ £ ¬, which Unicode calls narrow)."""
    if _ascii_ok(ch):
        return 1
    if unicodedata.east_asian_width(ch) in ("W", "F", "A") or _kanji_ok(ch):
        return 2
    return 1  # half-width forms and other narrow characters not yet made printable (screen width)


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


# 行頭禁則: characters that must not begin a line; 行末禁則: characters that must not end one.
_NO_LINE_START = set("、。，．,.)）」』】〕〉》］｝〙〗ー・：；？！゛゜ヽヾゝゞ々〻"
                     "ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ")
_NO_LINE_END = set("（「『【〔〈《［｛〘〖")


def _units(text: str) -> list[str]:
    """Break opportunities: an ASCII word stays whole, a space is its own unit, each other character is one."""
    return re.findall(r" |[!-~]+|[^ -~]", text)


def wrap(text: str, width: int) -> list[str]:
    """Wrap printable text to `width` columns. Japanese breaks between any two characters except before
    closing punctuation and small kana (行頭禁則) and after opening brackets (行末禁則); ASCII words break at
    spaces unless a word alone is wider than the line. Returns at least one line."""
    if width < 2:
        raise ValueError("width must be at least 2 columns")
    lines: list[list[str]] = []
    current: list[str] = []
    used = 0

    def flush() -> None:
        nonlocal current, used
        carry: list[str] = []
        while current and current[-1] == " ":
            current.pop()
        # an opening bracket at the line end moves down with what it opens
        while len(current) > 1 and current[-1] in _NO_LINE_END:
            carry.insert(0, current.pop())
        lines.append(current)
        current = carry
        used = text_width("".join(carry))

    for unit in _units(text.strip()):
        if unit == " ":
            if current and used + 1 <= width:
                current.append(unit)
                used += 1
            elif current:
                flush()
            continue
        unit_width = text_width(unit)
        if unit_width > width:  # an ASCII word longer than the line: split it where the line ends
            for ch in unit:
                if used + 1 > width:
                    flush()
                current.append(ch)
                used += 1
            continue
        if used + unit_width > width:
            carry: list[str] = []
            # 追い出し: move the last character down so that a closing mark does not begin the next line
            if (unit in _NO_LINE_START and len(current) > 1 and current[-1] != " "
                    and text_width(current[-1]) + unit_width <= width):
                carry.append(current.pop())
            flush()
            for moved in carry:
                current.append(moved)
                used += text_width(moved)
        current.append(unit)
        used += unit_width
    if current or not lines:
        flush()
    return ["".join(line).rstrip() for line in lines]


def format_date(day: date, lang: Lang = "ja") -> str:
    """2026年11月21日(土) / Sat 21 Nov 2026."""
    if lang == "en":
        return f"{_EN_WEEKDAYS[day.weekday()]} {day.day} {_EN_MONTHS[day.month - 1]} {day.year}"
    return f"{day.year}年{day.month}月{day.day}日({_JA_WEEKDAYS[day.weekday()]})"


def format_datetime(moment: datetime, lang: Lang = "ja") -> str:
    return f"{format_date(moment.date(), lang)} {moment:%H:%M}"


_HEADINGS: dict[Lang, dict[Kind, str]] = {
    "ja": {"checkout": "貸出レシート", "checkin": "返却レシート", "renew": "延長レシート"},
    "en": {"checkout": "Checkout receipt", "checkin": "Check-in receipt", "renew": "Renewal receipt"},
}
_TOTALS: dict[Lang, dict[Kind, str]] = {
    "ja": {"checkout": "貸出 {n} 点", "checkin": "返却 {n} 点", "renew": "延長 {n} 点"},
    "en": {"checkout": "Items checked out: {n}", "checkin": "Items returned: {n}", "renew": "Items renewed: {n}"},
}
_LABELS: dict[Lang, dict[str, str]] = {
    "ja": {"patron": "利用者", "barcode": "資料番号", "due": "返却期限", "note": "※"},
    "en": {"patron": "Patron", "barcode": "Item", "due": "Due", "note": "* "},
}


def check_width(width: int) -> None:
    if isinstance(width, bool) or not isinstance(width, int) or not MIN_WIDTH <= width <= MAX_WIDTH:
        raise invalid("width", width, f"用紙の桁数は {MIN_WIDTH}〜{MAX_WIDTH} で指定してください。",
                      f"the paper width must be {MIN_WIDTH} to {MAX_WIDTH} columns.")


def layout(receipt: Receipt, width: int = 42) -> list[LaidOutLine]:
    """The receipt as styled lines, each at most `width` columns wide as printed."""
    check_width(width)
    lang = receipt.lang
    labels = _LABELS[lang]
    out: list[LaidOutLine] = []
    for text in wrap(printable(receipt.library_name), width):
        out.append(LaidOutLine(text, align="center", bold=True))
    if receipt.branch_name.strip():
        for text in wrap(printable(receipt.branch_name), width):
            out.append(LaidOutLine(text, align="center"))
    for text in wrap(_HEADINGS[lang][receipt.kind], width // 2):
        out.append(LaidOutLine(text, align="center", double=True))
    out.append(LaidOutLine(""))
    out.append(LaidOutLine(format_datetime(receipt.printed_at, lang)))
    for text in wrap(printable(f"{labels['patron']} {receipt.patron_label}"), width):
        out.append(LaidOutLine(text))
    rule = LaidOutLine("-" * width)
    out.append(rule)
    digits = len(str(len(receipt.lines)))
    for number, item in enumerate(receipt.lines, start=1):
        prefix = f"{number:>{digits}}. "
        indent = " " * len(prefix)
        inner = width - len(prefix)
        for i, text in enumerate(wrap(printable(item.title) or GETA, inner)):
            out.append(LaidOutLine((prefix if i == 0 else indent) + text))
        for text in wrap(printable(f"{labels['barcode']} {item.barcode}"), inner):
            out.append(LaidOutLine(indent + text))
        if item.due_date is not None:
            for text in wrap(f"{labels['due']} {format_date(item.due_date, lang)}", inner):
                out.append(LaidOutLine(indent + text, bold=True))
        if item.note.strip():
            for text in wrap(printable(labels["note"] + item.note.strip()), inner):
                out.append(LaidOutLine(indent + text))
    out.append(rule)
    out.append(LaidOutLine(_TOTALS[lang][receipt.kind].format(n=len(receipt.lines))))
    paragraphs = [p for p in receipt.footer.splitlines() if p.strip()]
    if paragraphs:
        out.append(LaidOutLine(""))
        for paragraph in paragraphs:
            out.extend(LaidOutLine(text) for text in wrap(printable(paragraph), width))
    return out


def line_columns(line: LaidOutLine) -> int:
    """Columns the line takes on paper (double size takes twice as many)."""
    return text_width(line.text) * (2 if line.double else 1)


def aligned(line: LaidOutLine, width: int) -> str:
    """The line as it sits on paper: centred and right-aligned lines get leading spaces, as the printer places
    them (rounded down to whole columns)."""
    free = max(width - line_columns(line), 0)
    if line.align == "center":
        return " " * (free // 2) + line.text
    if line.align == "right":
        return " " * free + line.text
    return line.text


def render_text(receipt: Receipt, width: int = 42) -> list[str]:
    """The receipt as text lines for screens and tests, laid out as it prints on `width`-column paper."""
    return [aligned(line, width) for line in layout(receipt, width)]
