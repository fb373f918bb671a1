"""Receipts (貸出レシート・返却レシート) for the counter, printed on the workstation's ESC/POS printer.

The receipt is stored first, then printed outside the transaction: a printer that is offline never
undoes a loan, and the stored receipt can be reprinted. Receipts carry a masked card number and
titles, never a name; they are kept for reprinting only (purged by the nightly job after a day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.audit import Actor
from api.errors import ShokaError, invalid, not_found
from devices.printers import PrinterError, PrinterSettings, Receipt, ReceiptLine, render_escpos, render_text, send

DB = Connection[DictRow]
JST = ZoneInfo("Asia/Tokyo")
DEFAULT_FOOTER = {"checkout": "返却期限日までにお返しください。", "renew": "返却期限日までにお返しください。",
                  "checkin": "ご利用ありがとうございました。"}
KEEP_RECEIPTS = "1 day"


@dataclass(frozen=True)
class ReceiptOutcome:
    id: int
    printed: bool
    lines: list[str]
    error: ShokaError | None = None

    def as_json(self, lang: str = "ja") -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "printed": self.printed, "lines": self.lines}
        if self.error is not None:
            out["error"] = self.error.body(lang)["error"]
        return out


def mask_card(card: str) -> str:
    """Only the last four characters of a card go on paper."""
    return "*" * max(0, len(card) - 4) + card[-4:] if len(card) > 4 else "****"


def get_workstation(conn: DB, code: str) -> DictRow:
    row = conn.execute("""SELECT w.id, w.code, w.name, w.printer, b.code AS branch, b.name AS branch_name
                          FROM workstation w JOIN branch b ON b.id = w.branch_id WHERE w.code = %s""",
                       (code,)).fetchone()
    if row is None:
        raise invalid("workstation", code, "その端末は登録されていません。", "no such workstation")
    return row


def _receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {"kind": receipt.kind, "library_name": receipt.library_name, "branch_name": receipt.branch_name,
            "printed_at": receipt.printed_at.isoformat(), "patron_label": receipt.patron_label,
            "footer": receipt.footer, "lang": receipt.lang,
            "lines": [{"title": ln.title, "barcode": ln.barcode, "due_date": ln.due_date.isoformat()
                       if ln.due_date else None, "note": ln.note} for ln in receipt.lines]}


def _receipt_from_json(data: dict[str, Any]) -> Receipt:
    return Receipt(kind=data["kind"], library_name=data["library_name"], branch_name=data["branch_name"],
                   printed_at=datetime.fromisoformat(data["printed_at"]), patron_label=data["patron_label"],
                   footer=data["footer"], lang=data.get("lang", "ja"),
                   lines=tuple(ReceiptLine(ln["title"], ln["barcode"],
                                           date.fromisoformat(ln["due_date"]) if ln["due_date"] else None,
                                           ln.get("note", "")) for ln in data["lines"]))


def _settings(ws: DictRow | None) -> PrinterSettings:
    if ws is None:
        return PrinterSettings(connection="none")
    return PrinterSettings.from_dict(ws["printer"])


def _print(conn: DB, receipt_id: int, receipt: Receipt, settings: PrinterSettings) -> ReceiptOutcome:
    lines = render_text(receipt, settings.width)
    if settings.connection == "none":
        error = ShokaError("no_printer", "この端末にはレシートプリンターが設定されていません。",
                           "No receipt printer is set up for this workstation.", status=409)
        conn.execute("UPDATE receipt SET error = %s WHERE id = %s", (error.message_en, receipt_id))
        return ReceiptOutcome(receipt_id, False, lines, error)
    try:
        send(render_escpos(receipt, settings.width), settings)
    except PrinterError as exc:
        conn.execute("UPDATE receipt SET error = %s WHERE id = %s", (exc.message_en, receipt_id))
        return ReceiptOutcome(receipt_id, False, lines, exc)
    conn.execute("UPDATE receipt SET printed_at = now(), error = NULL WHERE id = %s", (receipt_id,))
    return ReceiptOutcome(receipt_id, True, lines)


def issue(conn: DB, actor: Actor, kind: str, barcodes: list[str], *, patron_card: str | None,
          workstation: str | None, branch: str | None, library_name: str, lang: str = "ja") -> ReceiptOutcome:
    """Build, store and print a receipt for items just handled at the counter."""
    ws = get_workstation(conn, workstation) if workstation else None
    branch_code = ws["branch"] if ws else branch
    branch_row = conn.execute("SELECT name FROM branch WHERE code = %s", (branch_code,)).fetchone()
    if branch_row is None:
        raise invalid("branch", branch_code or "", "その館コードはありません。", "no such branch code")
    rows = conn.execute(
        """SELECT i.barcode, r.title, l.due_date
           FROM item i JOIN bib_record r ON r.id = i.record_id
           LEFT JOIN loan l ON l.item_id = i.id AND l.returned_at IS NULL
           WHERE i.barcode = ANY(%s)""", (barcodes,)).fetchall()
    found = {r["barcode"]: r for r in rows}
    missing = [b for b in barcodes if b not in found]
    if missing:
        raise not_found("item", missing[0])
    footer_row = conn.execute("SELECT value FROM library_setting WHERE key = %s",
                              (f"circulation.receipt_footer.{kind}",)).fetchone()
    receipt = Receipt(
        kind=kind,  # type: ignore[arg-type]
        library_name=library_name, branch_name=branch_row["name"],
        printed_at=datetime.now(UTC).astimezone(JST),
        patron_label=mask_card(patron_card) if patron_card else "",
        lines=tuple(ReceiptLine(found[b]["title"], b, found[b]["due_date"] if kind != "checkin" else None)
                    for b in barcodes),
        footer=str(footer_row["value"]) if footer_row else DEFAULT_FOOTER[kind],
        lang="en" if lang == "en" else "ja")
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO receipt (workstation_id, staff_username, kind, content) VALUES (%s, %s, %s, %s)
               RETURNING id""", (ws["id"] if ws else None, actor.name, kind, Jsonb(_receipt_json(receipt)))).fetchone()
    assert row is not None
    return _print(conn, int(row["id"]), receipt, _settings(ws))


def reprint_last(conn: DB, actor: Actor, *, workstation: str | None) -> ReceiptOutcome:
    """再印刷: the workstation's last receipt (or, without a workstation, the clerk's own last one)."""
    ws = get_workstation(conn, workstation) if workstation else None
    if ws is not None:
        row = conn.execute("SELECT id, content FROM receipt WHERE workstation_id = %s ORDER BY id DESC LIMIT 1",
                           (ws["id"],)).fetchone()
    else:
        row = conn.execute("SELECT id, content FROM receipt WHERE workstation_id IS NULL AND staff_username = %s "
                           "ORDER BY id DESC LIMIT 1", (actor.name,)).fetchone()
    if row is None:
        raise ShokaError("no_receipt", "再印刷できるレシートがありません。", "There is no receipt to reprint.",
                         status=404)
    return _print(conn, int(row["id"]), _receipt_from_json(row["content"]), _settings(ws))


def purge_old_receipts(conn: DB) -> int:
    with conn.transaction():
        cur = conn.execute(f"DELETE FROM receipt WHERE created_at < now() - interval '{KEEP_RECEIPTS}'")
    return cur.rowcount
