"""Receipts (貸出レシート・返却レシート・延長レシート): layout, kanji-mode ESC/POS bytes, decoding, printer connections.

Expected receipts are typed out by hand; Shift_JIS codes come from the JIS X 0208 table (via Python's codec,
which is independent of this code). Patrons appear only as masked card labels.
"""

from __future__ import annotations

import os
import select
import socket
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from api.errors import ShokaError
from devices.printers import (
    GETA,
    PrinterError,
    PrinterSettings,
    Receipt,
    ReceiptLine,
    decode_escpos,
    printable,
    render_escpos,
    render_text,
    send,
    text_width,
    wrap,
)
from devices.printers.receipt import format_date, layout

PRINTED = datetime(2026, 11, 21, 14, 5)  # a Saturday
DUE = date(2026, 12, 5)  # 14 days later, also a Saturday
NEKO = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"  # 33 characters, 66 columns

CHECKOUT = Receipt(
    kind="checkout",
    library_name="しょうか市立図書館",
    branch_name="中央館",
    printed_at=PRINTED,
    patron_label="****1234",
    lines=(
        ReceiptLine("坊っちゃん", "2100000000017", DUE, "予約あり"),
        ReceiptLine("Python Programming", "2100000000024", DUE),
    ),
    footer="返却はお早めに。",
)
CHECKIN = replace(CHECKOUT, kind="checkin", footer="",
                  lines=(ReceiptLine("坊っちゃん", "2100000000017"), ReceiptLine("こころ", "2100000000031")))
RENEW = replace(CHECKOUT, kind="renew", footer="", lines=(ReceiptLine("こころ", "2100000000031", DUE, "延長不可"),))
ODD = replace(
    CHECKOUT,
    library_name="髙根沢町図書館",  # 髙 (はしご高) is not in JIS X 0208
    lines=(
        ReceiptLine(NEKO, "2100000000048", DUE),
        ReceiptLine("𠮷野家の歴史 ｶﾞｲﾄﾞ ～第3版～", "2100000000055", DUE, "予約あり"),
        ReceiptLine("A Very Long English Title About Libraries And Their Catalogues", "2100000000062", DUE),
        ReceiptLine("葛\U000e0100飾区の「まち」と﨑の字", "2100000000079", DUE),
    ),
    footer="返却はお早めに。次回休館日 12月1日(月)\n電話 0263-00-0000",
)
RECEIPTS = [CHECKOUT, CHECKIN, RENEW, ODD, *(replace(r, lang="en") for r in (CHECKOUT, CHECKIN, RENEW, ODD))]


# --- the text layout, against receipts typed out by hand ------------------------------------------------------

def test_checkout_receipt_text_at_42_columns() -> None:
    assert render_text(CHECKOUT, 42) == [
        " " * 12 + "しょうか市立図書館",  # 18 columns centred in 42
        " " * 18 + "中央館",
        " " * 9 + "貸出レシート",  # 12 columns printed double width: 24
        "",
        "2026年11月21日(土) 14:05",
        "利用者 ****1234",
        "-" * 42,
        "1. 坊っちゃん",
        "   資料番号 2100000000017",
        "   返却期限 2026年12月5日(土)",
        "   ※予約あり",
        "2. Python Programming",
        "   資料番号 2100000000024",
        "   返却期限 2026年12月5日(土)",
        "-" * 42,
        "貸出 2 点",
        "",
        "返却はお早めに。",
    ]


def test_checkin_receipt_has_no_due_dates() -> None:
    assert render_text(CHECKIN, 32) == [
        " " * 7 + "しょうか市立図書館",
        " " * 13 + "中央館",
        " " * 4 + "返却レシート",
        "",
        "2026年11月21日(土) 14:05",
        "利用者 ****1234",
        "-" * 32,
        "1. 坊っちゃん",
        "   資料番号 2100000000017",
        "2. こころ",
        "   資料番号 2100000000031",
        "-" * 32,
        "返却 2 点",
    ]


def test_renew_and_english_receipts() -> None:
    text = render_text(RENEW, 42)
    assert text[2] == " " * 9 + "延長レシート"
    assert text[7:11] == ["1. こころ", "   資料番号 2100000000031", "   返却期限 2026年12月5日(土)", "   ※延長不可"]
    assert text[-1] == "延長 1 点"
    english = render_text(replace(CHECKOUT, lang="en"), 42)
    assert english[2] == " " * 5 + "Checkout receipt"  # 32 columns at double width
    assert english[4:6] == ["Sat 21 Nov 2026 14:05", "Patron ****1234"]
    assert english[7:11] == ["1. 坊っちゃん", "   Item 2100000000017", "   Due Sat 5 Dec 2026", "   * 予約あり"]
    assert english[-3] == "Items checked out: 2"
    assert render_text(replace(CHECKIN, lang="en"), 42)[-1] == "Items returned: 2"
    assert render_text(replace(RENEW, lang="en"), 42)[-1] == "Items renewed: 1"


@pytest.mark.parametrize(("day", "ja", "en"), [
    (date(2026, 11, 21), "2026年11月21日(土)", "Sat 21 Nov 2026"),
    (date(2000, 1, 1), "2000年1月1日(土)", "Sat 1 Jan 2000"),
    (date(2019, 5, 1), "2019年5月1日(水)", "Wed 1 May 2019"),  # 令和 began on a Wednesday
    (date(2024, 2, 29), "2024年2月29日(木)", "Thu 29 Feb 2024"),
])
def test_dates(day: date, ja: str, en: str) -> None:
    assert format_date(day, "ja") == ja
    assert format_date(day, "en") == en


# --- wrapping ----------------------------------------------------------------------------------------------------

def test_long_japanese_title_wraps_at_42_and_32_columns() -> None:
    assert wrap(NEKO, 42) == ["吾輩は猫である。名前はまだ無い。どこで生れ", "たかとんと見当がつかぬ。"]
    # 16 characters a line; 「。」 may not begin a line (行頭禁則), so 「ぬ」 goes down with it
    assert wrap(NEKO, 32) == ["吾輩は猫である。名前はまだ無い。", "どこで生れたかとんと見当がつか", "ぬ。"]
    receipt = replace(CHECKOUT, lines=(ReceiptLine(NEKO, "2100000000048", DUE),))
    assert render_text(receipt, 42)[7:9] == ["1. 吾輩は猫である。名前はまだ無い。どこで",
                                             "   生れたかとんと見当がつかぬ。"]
    assert render_text(receipt, 32)[7:10] == ["1. 吾輩は猫である。名前はまだ無", "   い。どこで生れたかとんと見当",
                                              "   がつかぬ。"]


def test_wrap_rules() -> None:
    assert wrap("あいう「えお」", 8) == ["あいう", "「えお」"]  # an opening bracket does not end a line (行末禁則)
    assert wrap("Python Programming Language", 20) == ["Python Programming", "Language"]
    assert wrap("A" * 30, 24) == ["A" * 24, "A" * 6]
    assert wrap("Python入門 第3版", 10) == ["Python入門", "第3版"]
    assert wrap("", 42) == [""]


@pytest.mark.parametrize("title", [NEKO, printable(ODD.lines[1].title), ODD.lines[2].title,
                                   "「あ」「い」、。、。ー" * 5, "Catalogue" * 9, "第1巻 ABC（上）" * 6])
def test_wrap_keeps_every_character_within_every_width(title: str) -> None:
    for width in range(2, 81):
        lines = wrap(title, width)
        assert all(text_width(line) <= width for line in lines), width
        assert "".join(lines).replace(" ", "") == title.replace(" ", ""), width


# --- characters the printer lacks ---------------------------------------------------------------------------------

def test_characters_outside_shift_jis_become_geta() -> None:
    assert printable("髙橋") == "〓橋"
    assert printable("𠮷野家") == "〓野家"
    assert printable("山﨑") == "山〓"
    assert printable("📚") == GETA
    # equivalent spellings the printer has are used instead
    assert printable("ｶﾞｲﾄﾞ ～第3版～") == "ガイド 〜第3版〜"
    assert printable("葛\U000e0100飾 ①㈱ Café ¥100") == "葛飾 1(株) Cafe ￥100"
    assert printable("a\tb\x07c") == "a bc"
    text = render_text(ODD, 42)
    assert text[0].strip() == "〓根沢町図書館"
    assert "2. 〓野家の歴史 ガイド 〜第3版〜" in text
    assert "4. 葛飾区の「まち」と〓の字" in text


def test_every_bmp_character_prints_as_ascii_or_two_byte_shift_jis() -> None:
    for code in [*range(0x10000), *range(0x20000, 0x21000)]:
        out = printable(chr(code))
        encoded = out.encode("shift_jis")  # never raises
        assert all(" " <= c <= "~" or len(c.encode("shift_jis")) == 2 for c in out), hex(code)
        assert text_width(out) == len(encoded), hex(code)  # one column per byte, as printed


# --- the ESC/POS stream ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("receipt", RECEIPTS, ids=lambda r: f"{r.kind}-{r.lang}-{len(r.lines)}")
def test_decoded_bytes_match_the_text(receipt: Receipt) -> None:
    for width in range(24, 81):
        data = render_escpos(receipt, width)
        assert decode_escpos(data, width=width) == render_text(receipt, width), width
        assert decode_escpos(data) == [line.text for line in layout(receipt, width)], width


def test_stream_framing() -> None:
    data = render_escpos(CHECKOUT, 42)
    assert data.startswith(b"\x1b@\x1cC\x01")  # ESC @, then FS C 1 (Shift_JIS) before any kanji
    assert data.endswith(b"\x1bd\x06\x1dV\x00")  # feed to the cutter, full cut
    heading = "貸出レシート".encode("shift_jis")
    assert heading == bytes.fromhex("91dd8f6f838c8356815b8367")
    assert b"\x1d!\x11\x1c&" + heading + b"\x1c.\n\x1d!\x00" in data  # GS ! doubles kanji too
    assert b"   \x1c&" + bytes.fromhex("95d48b708afa8cc0") + b"\x1c. 2026\x1c&\x94N\x1c.12" in data  # 返却期限 2026年12
    for receipt in RECEIPTS:
        kanji = False
        stream = render_escpos(receipt, 32)
        i = 0
        while i < len(stream):
            if stream[i:i + 2] == b"\x1c&":
                assert not kanji
                kanji, i = True, i + 2
                continue
            if stream[i:i + 2] == b"\x1c.":
                assert kanji
                kanji, i = False, i + 2
                continue
            if stream[i] >= 0x80:  # a two-byte kanji, only ever inside FS & … FS .
                assert kanji
                i += 2
                continue
            if stream[i] == 0x0A:
                assert not kanji  # kanji mode never spans a line
            i += 1
        assert not kanji


def test_decoder_reads_a_hand_made_stream() -> None:
    stream = (b"\x1b@\x1cC\x01\x1ba\x01\x1c&" + "図書館".encode("shift_jis") + b"\x1c.\n"
              b"\x1ba\x02ABC\n\x1ba\x00\x1bE\x01x\x1c&\x82\xa0\x1c.\n\x1bd\x03\x1dVA\x00")
    assert decode_escpos(stream, width=10) == ["  図書館", "       ABC", "xあ"]
    assert decode_escpos(stream) == ["図書館", "ABC", "xあ"]


@pytest.mark.parametrize(("stream", "offset", "why"), [
    (b"\x1b@\x1bZ", 2, "unknown command ESC Z"),
    (b"\x1b@\x1c&\x8b\x9d\x1c.\n", 4, "JIS code system"),  # FS C 1 missing: the printer reads JIS
    (b"\x1b@\x1cC\x01\x82\xa0\n", 5, "outside kanji mode"),
    (b"\x1b@\x1cC\x01\x1c&\xf0\x40\x1c.\n", 7, "first byte"),
    (b"\x1b@\x1ba", 2, "cut short"),
    (b"\x1b@\x1ba\x05", 2, "alignment"),
    (b"\x1b@AB\x1dV\x00\n", 4, "middle of a line"),
    (b"\x1b@ABC", 5, "never printed"),
    (b"\x1b@\tA\n", 2, "control byte 0x09"),
])
def test_decoder_refuses_what_a_printer_would_misread(stream: bytes, offset: int, why: str) -> None:
    with pytest.raises(ValueError, match=f"byte offset {offset}: .*{why}"):
        decode_escpos(stream)


def test_decoder_catches_lines_wider_than_the_paper() -> None:
    assert decode_escpos(b"A" * 43 + b"\n") == ["A" * 43]
    with pytest.raises(ValueError, match="byte offset 43: line of 43 columns is wider than the paper"):
        decode_escpos(b"A" * 43 + b"\n", width=42)
    with pytest.raises(ValueError, match="wider than the paper"):  # double width counts twice
        decode_escpos(b"\x1d!\x11" + b"A" * 22 + b"\n", width=42)


def test_width_out_of_range_is_refused() -> None:
    with pytest.raises(ShokaError) as caught:
        render_escpos(CHECKOUT, 20)
    assert caught.value.field == "width"


# --- sending ----------------------------------------------------------------------------------------------------------



def test_send_to_a_network_printer(network_printer: Any) -> None:
    settings = PrinterSettings.from_dict({"connection": "network", "host": "127.0.0.1",
                                          "port": network_printer.server_address[1], "timeout": 2})
    data = render_escpos(ODD, settings.width)
    send(data, settings)
    assert network_printer.done.wait(5)
    assert network_printer.received == [data]
    assert decode_escpos(network_printer.received[0], width=42) == render_text(ODD, 42)


def test_closed_port_is_refused() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = PrinterSettings("network", host="127.0.0.1", port=port, timeout=1.0)
    with pytest.raises(PrinterError) as caught:
        send(render_escpos(CHECKOUT), settings)
    error = caught.value
    assert (error.code, error.status, error.reason) == ("printer_unavailable", 503, "refused")
    assert f"127.0.0.1:{port}" in error.message_ja and f"127.0.0.1:{port}" in error.message_en
    assert "拒否" in error.message_ja and "refused" in error.message_en


def test_send_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "receipt.bin"
    settings = PrinterSettings.from_dict({"connection": "file", "path": str(target), "width": "32"})
    data = render_escpos(RENEW, settings.width)
    send(data, settings)
    assert target.read_bytes() == data
    assert decode_escpos(target.read_bytes(), width=32) == render_text(RENEW, 32)


def test_missing_device_file_usb_printer_and_no_printer(tmp_path: Path) -> None:
    with pytest.raises(PrinterError) as caught:
        send(b"\x1b@", PrinterSettings("file", path=str(tmp_path / "no-such-dir" / "lp0")))
    assert caught.value.reason == "offline" and str(tmp_path) in caught.value.message_en
    with pytest.raises(PrinterError) as caught:  # no such device on this machine (or no libusb at all)
        send(b"\x1b@", PrinterSettings("usb", usb_vendor=0x04B8, usb_product=0x0E15, timeout=2.0))
    assert caught.value.reason == "offline" and "USB 04b8:0e15" in caught.value.message_ja
    with pytest.raises(PrinterError) as caught:
        send(b"\x1b@", PrinterSettings("none"))
    assert caught.value.reason == "not_configured" and caught.value.status == 503


def test_a_device_that_blocks_times_out(tmp_path: Path) -> None:
    fifo = tmp_path / "lp0"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes, like a printer that never answers
    with pytest.raises(PrinterError) as caught:
        send(b"\x1b@", PrinterSettings("file", path=str(fifo), timeout=0.2))
    assert caught.value.reason == "timeout" and "0.2 s" in caught.value.message_en
    # let the stuck writer finish: read what it sends until it closes
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    received = b""
    try:
        while select.select([reader], [], [], 5)[0]:
            chunk = os.read(reader, 4096)
            if not chunk:
                break
            received += chunk
    finally:
        os.close(reader)
    assert received == b"\x1b@"


# --- settings --------------------------------------------------------------------------------------------------------

def test_settings_from_dict() -> None:
    usb = PrinterSettings.from_dict({"connection": "usb", "usb_vendor": "0x04B8", "usb_product": "0e15"})
    assert (usb.usb_vendor, usb.usb_product, usb.width, usb.timeout) == (0x04B8, 0x0E15, 42, 3.0)
    network = PrinterSettings.from_dict({"connection": "network", "host": "printer-1.branch.example",
                                         "port": "9100", "width": "48", "timeout": "2.5"})
    assert (network.port, network.width, network.timeout) == (9100, 48, 2.5)
    assert PrinterSettings.from_dict({"connection": "none"}) == PrinterSettings("none")


@pytest.mark.parametrize(("data", "field", "value"), [
    ({}, "connection", "None"),
    ({"connection": "serial"}, "connection", "'serial'"),
    ({"connection": "network"}, "host", "None"),
    ({"connection": "network", "host": "printer 1"}, "host", "'printer 1'"),
    ({"connection": "network", "host": "192.0.2.10", "port": 70000}, "port", "70000"),
    ({"connection": "network", "host": "192.0.2.10", "port": "abc"}, "port", "'abc'"),
    ({"connection": "network", "host": "192.0.2.10", "port": True}, "port", "True"),
    ({"connection": "usb", "usb_vendor": "04b8"}, "usb_product", "None"),
    ({"connection": "usb", "usb_vendor": "zz", "usb_product": "0e15"}, "usb_vendor", "'zz'"),
    ({"connection": "usb", "usb_vendor": 0x10000, "usb_product": 1}, "usb_vendor", "65536"),
    ({"connection": "file", "path": "lp0"}, "path", "'lp0'"),
    ({"connection": "file", "path": "/dev/usb/lp0", "width": 20}, "width", "20"),
    ({"connection": "file", "path": "/dev/usb/lp0", "width": "wide"}, "width", "'wide'"),
    ({"connection": "none", "timeout": 0}, "timeout", "0.0"),
    ({"connection": "none", "timeout": "nan"}, "timeout", "nan"),
    ({"connection": "none", "timeout": 120}, "timeout", "120.0"),
    ({"connection": "network", "host": "192.0.2.10", "hots": "x"}, "hots", "'x'"),
])
def test_settings_validation_names_the_field(data: dict[str, Any], field: str, value: str) -> None:
    with pytest.raises(ShokaError) as caught:
        PrinterSettings.from_dict(data)
    error = caught.value
    assert (error.code, error.status, error.field) == ("validation_error", 422, field)
    assert error.message_en.startswith(f"{field}: {value} — ")
    assert error.message_ja.startswith(f"{field}: ")
