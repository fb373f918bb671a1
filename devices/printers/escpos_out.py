"""Receipts as ESC/POS byte streams, and sending them to the counter's printer through python-escpos.

python-escpos frames the stream (ESC @, ESC a, ESC E, GS !, GS V) and owns the connections (Network, Usb, File).
Japanese goes out as raw bytes in kanji mode, which python-escpos's code-page encoder does not do:
FS C 1 (kanji code system Shift_JIS) once after ESC @, then FS & <two-byte Shift_JIS> FS . around each run
of Japanese. ASCII stays outside kanji mode, so a run never spans a line feed.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import usb.core
from escpos.exceptions import Error as EscposError
from escpos.printer import Dummy, File, Network, Usb

from api.errors import ShokaError, invalid
from devices.printers.receipt import LaidOutLine, Receipt, check_width, layout

FS = b"\x1c"
KANJI_ON = FS + b"&"  # FS &: select kanji character mode
KANJI_OFF = FS + b"."  # FS .: cancel kanji character mode
KANJI_SHIFT_JIS = FS + b"C\x01"  # FS C 1: kanji code system Shift_JIS

Connection = Literal["none", "network", "usb", "file"]
Reason = Literal["not_configured", "offline", "refused", "timeout"]

_RUNS = re.compile(r"[ -~]+|[^ -~]+")


def _write_text(printer: Dummy, text: str) -> None:
    for run in _RUNS.findall(text):
        if run[0] <= "~":
            printer.text(run)
        else:
            # `text` comes from layout(), already printable: every non-ASCII character is two-byte Shift_JIS
            printer._raw(KANJI_ON + run.encode("shift_jis") + KANJI_OFF)


def _restyle(printer: Dummy, current: LaidOutLine, line: LaidOutLine) -> None:
    changes: dict[str, Any] = {}
    if line.align != current.align:
        changes["align"] = line.align
    if line.bold != current.bold:
        changes["bold"] = line.bold
    if line.double != current.double:
        # GS ! sizes kanji too; ESC ! (python-escpos's double_width/double_height) would not
        size = 2 if line.double else 1
        changes.update(custom_size=True, width=size, height=size)
    if changes:
        printer.set(**changes)


def render_escpos(receipt: Receipt, width: int = 42) -> bytes:
    """The receipt as the byte stream a Japanese ESC/POS printer (Epson TM-T88/TM-T20 J models, Star and Citizen
    in ESC/POS mode) prints, ending with a feed and a full cut."""
    printer = Dummy()
    printer.hw("INIT")
    printer._raw(KANJI_SHIFT_JIS)
    current = LaidOutLine("")  # ESC @ leaves left alignment, no emphasis, normal size
    for line in layout(receipt, width):
        _restyle(printer, current, line)
        current = line
        _write_text(printer, line.text)
        printer.ln()
    _restyle(printer, current, LaidOutLine(""))  # leave the printer as ESC @ left it
    printer.cut()
    return bytes(printer.output)


def _is_hostname(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x) for x in labels)


@dataclass(frozen=True)
class PrinterSettings:
    """The receipt printer of one counter workstation (カウンター端末のレシートプリンター設定)."""

    connection: Connection
    host: str | None = None
    port: int = 9100  # raw TCP ("port 9100" printing)
    usb_vendor: int | None = None
    usb_product: int | None = None
    path: str | None = None  # a file, or a device node such as /dev/usb/lp0
    width: int = 42  # columns of font A: 42 on 80 mm paper (TM-T20), 48 on TM-T88 576-dot heads, 32 on 58 mm
    timeout: float = 3.0  # seconds a print may take before the counter is told it failed

    def __post_init__(self) -> None:
        if self.connection not in ("none", "network", "usb", "file"):
            raise invalid("connection", self.connection, "none・network・usb・file のいずれかを指定してください。",
                          "must be one of none, network, usb, file.")
        if self.connection == "network" and (not isinstance(self.host, str) or not _is_hostname(self.host)):
            raise invalid("host", self.host, "プリンターのホスト名または IPv4 アドレスを指定してください。",
                          "give the printer's host name or IPv4 address.")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise invalid("port", self.port, "ポート番号は 1〜65535 です。", "the port must be 1 to 65535.")
        for name in ("usb_vendor", "usb_product"):
            value = getattr(self, name)
            required = self.connection == "usb"
            if value is None and not required:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise invalid(name, value, "USB の ID を 16 進 4 桁（例 04b8）で指定してください。",
                              "give the USB id as 4 hex digits (e.g. 04b8).")
        if self.connection == "file" and (
                not isinstance(self.path, str) or not self.path.startswith("/") or "\x00" in self.path):
            raise invalid("path", self.path, "絶対パス（例 /dev/usb/lp0）を指定してください。",
                          "give an absolute path (e.g. /dev/usb/lp0).")
        check_width(self.width)
        timeout = self.timeout
        if (isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout)
                or not 0 < timeout <= 60):
            raise invalid("timeout", timeout, "タイムアウトは 0 より大きく 60 秒以下です。",
                          "the timeout must be more than 0 and at most 60 seconds.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrinterSettings:
        """Settings as stored or posted (JSON): numbers may come as strings; USB ids as hex ("04b8", "0x04b8")
        or integers. Unknown keys are refused so that a misspelt setting is not silently ignored."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise invalid(str(key), data[key], "不明な設定項目です。", "unknown printer setting.")
        if "connection" not in data:
            raise invalid("connection", None, "接続方法を指定してください。", "the connection is required.")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is None or value == "":
                if key in ("port", "width", "timeout"):
                    continue  # keep the default
                values[key] = None
            elif key in ("port", "width"):
                values[key] = _parse_int(key, value, 10)
            elif key in ("usb_vendor", "usb_product"):
                values[key] = _parse_int(key, value, 16)
            elif key == "timeout":
                values[key] = _parse_float(key, value)
            elif key in ("host", "path"):
                if not isinstance(value, str):
                    raise invalid(key, value, "文字列で指定してください。", "must be text.")
                values[key] = value.strip()
            else:
                values[key] = value
        return cls(**values)

    def describe(self) -> str:
        """The printer as staff know it, for messages."""
        if self.connection == "network":
            return f"{self.host}:{self.port}"
        if self.connection == "usb":
            return f"USB {self.usb_vendor or 0:04x}:{self.usb_product or 0:04x}"
        if self.connection == "file":
            return str(self.path)
        return "none"


def _parse_int(field: str, value: object, base: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if base == 16 and text.startswith("0x"):
            text = text[2:]
        if text and all(c in "0123456789abcdef"[:base] for c in text):
            return int(text, base)
    what_ja = "16 進数" if base == 16 else "整数"
    what_en = "a hexadecimal number" if base == 16 else "a whole number"
    raise invalid(field, value, f"{what_ja}で指定してください。", f"must be {what_en}.")


def _parse_float(field: str, value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise invalid(field, value, "数値で指定してください。", "must be a number.")


_REASONS: dict[Reason, tuple[str, str]] = {
    "not_configured": ("この端末にはレシートプリンターが設定されていません",
                       "no receipt printer is set up for this workstation"),
    "offline": ("プリンターが見つからないか、電源が入っていません", "the printer cannot be reached or is switched off"),
    "refused": ("プリンターが接続を拒否しました", "the printer refused the connection"),
    "timeout": ("時間内に応答がありません", "it did not answer in time"),
}


class PrinterError(ShokaError):
    """The receipt could not be printed. Says which printer and why; that the loan itself went through is for
    the caller to say."""

    def __init__(self, settings: PrinterSettings, reason: Reason, detail: str = "") -> None:
        printer = settings.describe()
        ja, en = _REASONS[reason]
        if reason == "timeout":
            ja, en = f"{settings.timeout:g} 秒以内に応答がありません", f"no answer within {settings.timeout:g} s"
        if reason == "not_configured":
            message_ja, message_en = f"{ja}。", f"{en[0].upper()}{en[1:]}."
        else:
            detail_ja, detail_en = (f"（{detail}）", f" ({detail})") if detail else ("", "")
            message_ja = f"レシートプリンター（{printer}）に印刷できません：{ja}{detail_ja}。"
            message_en = f"Cannot print on receipt printer {printer}: {en}{detail_en}."
        super().__init__("printer_unavailable", message_ja, message_en, status=503)
        self.printer = printer
        self.reason = reason
        self.detail = detail


# What a printer that is off, unplugged, busy or missing raises through python-escpos and pyusb.
_DEVICE_ERRORS = (EscposError, OSError, usb.core.USBError, usb.core.NoBackendError)


def _reason(error: BaseException) -> Reason:
    seen: BaseException | None = error
    while seen is not None:  # python-escpos wraps the socket/USB error; the cause says what happened
        if isinstance(seen, ConnectionRefusedError):
            return "refused"
        if isinstance(seen, TimeoutError | usb.core.USBTimeoutError):
            return "timeout"
        seen = seen.__cause__ or seen.__context__
    return "offline"


def _first_line(error: BaseException) -> str:
    seen: BaseException = error
    while (seen.__cause__ or seen.__context__) is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    return str(seen).strip().splitlines()[-1] if str(seen).strip() else type(seen).__name__


def _open(settings: PrinterSettings) -> Network | Usb | File:
    if settings.connection == "network":
        return Network(host=settings.host, port=settings.port, timeout=settings.timeout)
    if settings.connection == "usb":
        # pyusb counts its timeout in milliseconds
        return Usb(idVendor=settings.usb_vendor, idProduct=settings.usb_product,
                   timeout=max(1, int(settings.timeout * 1000)))
    return File(devfile=settings.path, auto_flush=False)


def _transmit(data: bytes, settings: PrinterSettings, deadline: float) -> None:
    printer = _open(settings)
    try:
        printer.open()
        if isinstance(printer, Network):
            # the connect used up part of the time; the write gets what is left
            sock = printer.device
            assert isinstance(sock, socket.socket)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        printer._raw(data)
        if isinstance(printer, File):
            printer.flush()
    finally:
        printer.close()


def send(data: bytes, settings: PrinterSettings) -> None:
    """Send a rendered receipt to the counter's printer and close the connection. Any failure of the printer or
    its connection raises PrinterError; it never waits longer than `settings.timeout` (a device node that
    blocks, e.g. a USB printer out of paper, is left to its own thread)."""
    if settings.connection == "none":
        raise PrinterError(settings, "not_configured")
    deadline = time.monotonic() + settings.timeout
    failures: list[BaseException] = []

    def work() -> None:
        try:
            _transmit(data, settings, deadline)
        except BaseException as error:  # handed to the caller's thread below
            failures.append(error)

    worker = threading.Thread(target=work, name=f"receipt-printer {settings.describe()}", daemon=True)
    worker.start()
    worker.join(settings.timeout)
    if worker.is_alive():
        raise PrinterError(settings, "timeout")
    if failures:
        error = failures[0]
        if isinstance(error, _DEVICE_ERRORS):
            raise PrinterError(settings, _reason(error), _first_line(error)) from error
        raise error
