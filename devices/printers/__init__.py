"""Receipt printers (レシートプリンター): receipts laid out as text, the ESC/POS byte stream with Japanese in kanji
mode, sending it over the network, USB or a device file, and decoding a stream back to text for previews and tests.
"""

from devices.printers.decode import decode_escpos
from devices.printers.escpos_out import PrinterError, PrinterSettings, render_escpos, send
from devices.printers.receipt import GETA, Receipt, ReceiptLine, printable, render_text, text_width, wrap

__all__ = [
    "GETA",
    "PrinterError",
    "PrinterSettings",
    "Receipt",
    "ReceiptLine",
    "decode_escpos",
    "printable",
    "render_escpos",
    "render_text",
    "send",
    "text_width",
    "wrap",
]
