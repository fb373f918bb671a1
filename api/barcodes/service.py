"""Loading the NW-7 number ranges (barcode_rule) for the counter."""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

from api.barcodes.nw7 import BarcodeRule


def load_rules(conn: Connection[DictRow]) -> list[BarcodeRule]:
    rows = conn.execute(
        """SELECT r.kind, r.name, r.prefix, r.length, r.check_scheme, b.code AS branch
           FROM barcode_rule r LEFT JOIN branch b ON b.id = r.branch_id ORDER BY r.kind, r.prefix""").fetchall()
    return [BarcodeRule(kind=r["kind"], name=r["name"], prefix=r["prefix"], length=r["length"],
                        check_scheme=r["check_scheme"], branch=r["branch"]) for r in rows]
