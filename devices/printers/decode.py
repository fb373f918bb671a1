"""A small ESC/POS interpreter: the lines a Japanese receipt printer would print from a byte stream.

For tests (decode what render_escpos produced and compare with render_text) and for the receipt preview. It
knows the commands receipts use and a few common neighbours; anything else raises ValueError naming the byte
offset, because a printer would misread a stream this decoder does not understand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ESC, FS, GS = 0x1B, 0x1C, 0x1D
LF, CR = 0x0A, 0x0D

# Commands with one parameter byte that change nothing this decoder shows (ESC t code table, ESC - underline,
# ESC M font, ESC R international set, ESC { upside-down, ESC 3 line spacing, ESC G double-strike,
# GS B reverse, GS b smoothing, FS - kanji underline).
_ESC_ONE = {ord(c) for c in "t-MR{3G"}
_GS_ONE = {ord(c) for c in "Bb"}
_FS_ONE = {ord(c) for c in "-"}


def _name(prefix: int, command: int) -> str:
    lead = {ESC: "ESC", FS: "FS", GS: "GS"}[prefix]
    shown = chr(command) if 0x21 <= command <= 0x7E else f"0x{command:02X}"
    return f"{lead} {shown}"


@dataclass
class _State:
    align: str = "left"
    ascii_width: int = 1  # width multiplier of alphanumeric characters (ESC !, GS !)
    kanji_width: int = 1  # width multiplier of kanji (FS !, GS !)
    kanji: bool = False  # FS & … FS .
    shift_jis: bool = False  # FS C 1; the power-on default is JIS (FS C 0)
    line: list[str] = field(default_factory=list)
    columns: int = 0
    line_align: str = "left"


class _Decoder:
    def __init__(self, data: bytes, width: int | None) -> None:
        self.data = data
        self.width = width
        self.pos = 0
        self.state = _State()
        self.lines: list[str] = []

    def fail(self, offset: int, what: str) -> ValueError:
        return ValueError(f"ESC/POS stream, byte offset {offset}: {what}")

    def param(self, start: int, count: int = 1) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail(start, f"command {_name(self.data[start], self.data[start + 1])} is cut short")
        value = self.data[self.pos:self.pos + count]
        self.pos += count
        return value

    def feed(self, offset: int) -> None:
        """LF: print the line buffer and start a new line."""
        s = self.state
        text = "".join(s.line)
        if self.width is not None and text:
            if s.columns > self.width:
                raise self.fail(offset, f"line of {s.columns} columns is wider than the paper ({self.width}): "
                                        f"the printer would wrap it: {text!r}")
            free = self.width - s.columns
            if s.line_align == "center":
                text = " " * (free // 2) + text
            elif s.line_align == "right":
                text = " " * free + text
        self.lines.append(text)
        s.line = []
        s.columns = 0

    def put(self, char: str, columns: int) -> None:
        s = self.state
        if not s.line:
            s.line_align = s.align  # ESC a takes effect only at the beginning of a line
        s.line.append(char)
        s.columns += columns

    def run(self) -> list[str]:
        data = self.data
        while self.pos < len(data):
            start = self.pos
            byte = data[self.pos]
            self.pos += 1
            if byte == ESC:
                self.esc(start)
            elif byte == GS:
                self.gs(start)
            elif byte == FS:
                self.fs(start)
            elif byte == LF:
                self.feed(start)
            elif byte == CR:
                continue  # ignored by receipt printers when LF follows
            elif byte < 0x20 or byte == 0x7F:
                raise self.fail(start, f"control byte 0x{byte:02X} is not understood")
            elif self.state.kanji and not self.state.shift_jis:
                raise self.fail(start, "kanji mode with the JIS code system (FS C 0): Shift_JIS bytes and ASCII "
                                       "would print as wrong kanji; send FS C 1 first")
            elif byte < 0x80:
                self.put(chr(byte), self.state.ascii_width)
            elif not self.state.kanji:
                raise self.fail(start, f"byte 0x{byte:02X} outside kanji mode would print from the code table, "
                                       "not as Japanese")
            else:
                self.kanji(start, byte)
        if self.state.line:
            raise self.fail(len(data), f"text {''.join(self.state.line)!r} is never printed: no LF after it")
        return _drop_trailing_blanks(self.lines)

    def kanji(self, start: int, first: int) -> None:
        if not (0x81 <= first <= 0x9F or 0xE0 <= first <= 0xEF):
            raise self.fail(start, f"byte 0x{first:02X} is not a Shift_JIS first byte the printer accepts")
        if self.pos >= len(self.data):
            raise self.fail(start, "a two-byte kanji is cut short")
        second = self.data[self.pos]
        self.pos += 1
        try:
            char = bytes((first, second)).decode("shift_jis")
        except UnicodeDecodeError:
            raise self.fail(start, f"0x{first:02X}{second:02X} is not a Shift_JIS character") from None
        self.put(char, 2 * self.state.kanji_width)

    def esc(self, start: int) -> None:
        s = self.state
        command = self.param(start)[0]
        if command == ord("@"):  # initialise: clears the print buffer and resets the modes
            self.state = _State()
        elif command == ord("a"):
            n = self.param(start)[0]
            aligns = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
            if n not in aligns:
                raise self.fail(start, f"ESC a {n}: no such alignment")
            s.align = aligns[n]
        elif command == ord("E"):
            self.param(start)  # emphasis does not change the text
        elif command == ord("!"):
            n = self.param(start)[0]
            s.ascii_width = 2 if n & 0x20 else 1
        elif command == ord("d"):
            for _ in range(self.param(start)[0]):
                self.feed(start)
        elif command == ord("2"):
            pass  # default line spacing
        elif command in _ESC_ONE:
            self.param(start)
        else:
            raise self.fail(start, f"unknown command {_name(ESC, command)}")

    def gs(self, start: int) -> None:
        s = self.state
        command = self.param(start)[0]
        if command == ord("!"):
            n = self.param(start)[0]
            if n & 0x88:
                raise self.fail(start, f"GS ! 0x{n:02X}: no such character size")
            s.ascii_width = s.kanji_width = (n >> 4) + 1
        elif command == ord("V"):
            m = self.param(start)[0]
            if m in (65, 66, 97, 98, 103, 104):
                self.param(start)  # feed amount before the cut
            elif m not in (0, 1, 48, 49):
                raise self.fail(start, f"GS V {m}: no such cut")
            if s.line:
                raise self.fail(start, "GS V in the middle of a line: the printer ignores the cut")
            self.lines = _drop_trailing_blanks(self.lines)  # the feed to the cutter is not content
        elif command in _GS_ONE:
            self.param(start)
        else:
            raise self.fail(start, f"unknown command {_name(GS, command)}")

    def fs(self, start: int) -> None:
        s = self.state
        command = self.param(start)[0]
        if command == ord("&"):
            s.kanji = True
        elif command == ord("."):
            s.kanji = False
        elif command == ord("C"):
            n = self.param(start)[0]
            if n not in (0, 1, 48, 49):
                raise self.fail(start, f"FS C {n}: no such kanji code system")
            s.shift_jis = n in (1, 49)
        elif command == ord("!"):
            n = self.param(start)[0]
            s.kanji_width = 2 if n & 0x04 else 1
        elif command in _FS_ONE:
            self.param(start)
        else:
            raise self.fail(start, f"unknown command {_name(FS, command)}")


def _drop_trailing_blanks(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and not lines[end - 1]:
        end -= 1
    return lines[:end]


def decode_escpos(data: bytes, width: int | None = None) -> list[str]:
    """The lines the printer prints from `data`: kanji-mode bytes decoded as Shift_JIS, other text as ASCII,
    commands consumed. Blank lines fed before a cut or at the end are left out. With `width` (the paper's
    columns), centred and right-aligned lines get the leading spaces the printer would leave, and a line wider
    than the paper is an error. Raises ValueError naming the byte offset of anything the printer would
    misread."""
    return _Decoder(data, width).run()
