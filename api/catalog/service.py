"""Saving bibliographic records (書誌) in batches, and reading a record with its holdings.

A batch is one transaction: existing records are found with two queries (by source + control
number, then by ISBN), the batch is copied (binary COPY) into a temporary staging table, new records
are inserted with one INSERT ... SELECT and existing ones updated with one UPDATE ... FROM, and every
touched record gets a search-outbox row. A batch of new records only (a bulk load) is copied straight
into bib_record instead. No query runs per record.

Saving is two steps: `prepare_records` (Python only: each record's JSON and its staging row, encoded
for the COPY) and `write_batch` (the transaction), so that a bulk import can prepare one batch while
another is written.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.audit import Actor, record
from api.catalog.bib import BibRecord
from api.errors import invalid, not_found


@dataclass
class SaveResult:
    added: int = 0
    updated: int = 0


# One staging row per incoming record, filled by binary COPY: far cheaper for both sides than rows of
# array parameters. The temporary table lives as long as the session and is emptied at each commit.
_STAGE = """CREATE TEMP TABLE IF NOT EXISTS bib_stage (
    n int, id bigint, source text, control_number text, title text, title_reading text, material_type text,
    pub_year int, ndc text, isbns text[], data jsonb, raw_format text, raw bytea) ON COMMIT DELETE ROWS"""
# encode_record encodes the record's columns; `n` comes first and `id` (known only once the batch is
# matched) last.
_STAGE_COLUMNS = "n, source, control_number, title, title_reading, material_type, pub_year, ndc, isbns, data, " \
                 "raw_format, raw, id"

# PostgreSQL's binary COPY format (see COPY in its manual), written here rather than by psycopg's
# write_row so that the thread holding the connection has only each row's id left to add.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"
_ROW_START = struct.pack(">h", 13)  # fields per row
_NULL = struct.pack(">i", -1)  # a field's length when it is NULL
_INT4 = struct.Struct(">ii")  # length, value
_INT8 = struct.Struct(">iq")  # length, value
_ARRAY_HEAD = struct.Struct(">iii")  # dimensions, has-NULLs flag, element type
_ARRAY_DIM = struct.Struct(">ii")  # length, lower bound
_TEXT_OID = 25


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _text(value: str | None) -> bytes:
    # UTF-8: the encoding of Shoka's databases (write_batch checks the connection's).
    return _NULL if value is None else _field(value.encode())


def _text_array(values: Sequence[str]) -> bytes:
    if not values:  # an empty array has no dimension
        return _field(_ARRAY_HEAD.pack(0, 0, _TEXT_OID))
    return _field(_ARRAY_HEAD.pack(1, 0, _TEXT_OID) + _ARRAY_DIM.pack(len(values), 1) + b"".join(map(_text, values)))


def encode_record(r: BibRecord) -> bytes:
    """Record r's columns for a binary COPY row, `source` to `raw`: the row's field count, the staging
    row's `n` and its final `id` are added when the batch is written."""
    return b"".join((
        _text(r.source), _text(r.control_number), _text(r.title),
        _text(r.title_reading), _text(r.material_type), _NULL if r.year is None else _INT4.pack(4, r.year),
        _text(r.ndc), _text_array(r.isbns),
        _field(b"\x01" + r.json_bytes()),  # jsonb: format version 1, then the JSON text (UTF-8)
        _text(r.raw_format), _NULL if r.raw is None else _field(r.raw)))


@dataclass
class PreparedBatch:
    """A batch of records turned into COPY columns: the Python half of saving, which needs no connection
    (so a bulk import prepares the next batch while PostgreSQL writes this one)."""

    sources: list[str]
    control_numbers: list[str]
    isbns: list[list[str]]
    rows: list[bytes]  # each record's columns from `encode_record`

    def __len__(self) -> int:
        return len(self.rows)


def prepare_records(records: Sequence[BibRecord]) -> PreparedBatch:
    """A batch's rows, with each record's JSON serialised and everything encoded for COPY."""
    return PreparedBatch([r.source for r in records], [r.control_number for r in records],
                         [list(r.isbns) for r in records], [encode_record(r) for r in records])


def _resolve_ids(conn: Connection[DictRow], batch: PreparedBatch) -> list[int | None]:
    """The existing record id for each incoming record: same source and control number first,
    then any shared ISBN; None for a new record; -1 - j for a repeat of new record j in this batch."""
    keys = list(zip(batch.sources, batch.control_numbers, strict=True))
    by_key = {(row["source"], row["control_number"]): row["id"] for row in conn.execute(
        "SELECT b.id, b.source, b.control_number FROM bib_record b "
        "JOIN unnest(%s::text[], %s::text[]) AS k(source, control_number) USING (source, control_number)",
        (batch.sources, batch.control_numbers)).fetchall()}
    ids: list[int | None] = [by_key.get(key) for key in keys]
    wanted = sorted({isbn for isbns, found in zip(batch.isbns, ids, strict=True) if found is None for isbn in isbns})
    if wanted:
        by_isbn: dict[str, int] = {}
        # One GIN probe per ISBN: with the whole list in one `isbns && ...` the planner reads every row instead.
        for row in conn.execute(
                "SELECT DISTINCT b.id, b.isbns FROM unnest(%s::text[]) AS k(isbn) "
                "JOIN LATERAL (SELECT id, isbns FROM bib_record WHERE isbns @> ARRAY[k.isbn]) AS b ON true "
                "ORDER BY b.id", (wanted,)).fetchall():
            for isbn in row["isbns"]:
                by_isbn.setdefault(isbn, row["id"])
        for i, isbns in enumerate(batch.isbns):
            if ids[i] is None:
                ids[i] = next((by_isbn[isbn] for isbn in isbns if isbn in by_isbn), None)
    first: dict[tuple[str, str], int] = {}
    for i, key in enumerate(keys):
        if key in first:  # the same record twice in one batch: the later copy updates the earlier
            j = first[key]
            ids[i] = ids[j] if ids[j] is not None else -1 - j
        else:
            first[key] = i
    return ids


def save_records(conn: Connection[DictRow], actor: Actor, records: Sequence[BibRecord], *,
                 origin: str = "", outbox: bool = True) -> SaveResult:
    """Insert or update a batch of records in one transaction, with outbox rows and one audit row.

    `outbox=False` is for a bulk load followed by a full rebuild (`shoka import --then-reindex`): the
    rebuild indexes every record anyway, so per-record outbox rows would only make the worker index
    them a second time.
    """
    return write_batch(conn, actor, prepare_records(records), origin=origin, outbox=outbox)


_NEW_COLUMNS = "source, control_number, title, title_reading, material_type, pub_year, ndc, isbns, data, raw_format, " \
               "raw"
_NEW_ROW_START = struct.pack(">h", 11)


def _copy_new(conn: Connection[DictRow], batch: PreparedBatch, outbox: bool) -> None:
    """New records straight into bib_record (ids from the identity, in batch order), skipping the staging
    table and the INSERT ... SELECT: a third of a bulk load's writing time."""
    payload = [_COPY_HEADER]
    for row in batch.rows:
        payload += (_NEW_ROW_START, row)
    payload.append(_COPY_TRAILER)
    with conn.cursor() as cur, cur.copy(f"COPY bib_record ({_NEW_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"".join(payload))
    if outbox:
        conn.execute("INSERT INTO search_outbox (record_id) SELECT b.id FROM bib_record b "
                     "JOIN unnest(%s::text[], %s::text[]) AS k(source, control_number) USING (source, control_number)",
                     (batch.sources, batch.control_numbers))


def _write_staged(conn: Connection[DictRow], batch: PreparedBatch, ids: list[int | None], outbox: bool) -> SaveResult:
    """A batch with records to update (or one record twice): through the staging table."""
    result = SaveResult()
    conn.execute(_STAGE)
    payload = [_COPY_HEADER]
    for n, (found, row) in enumerate(zip(ids, batch.rows, strict=True)):
        payload += (_ROW_START, _INT4.pack(4, n), row, _NULL if found is None else _INT8.pack(8, found))
    payload.append(_COPY_TRAILER)
    with conn.cursor() as cur, cur.copy(f"COPY bib_stage ({_STAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"".join(payload))
    new_idx = [i for i, found in enumerate(ids) if found is None]
    if new_idx:
        inserted = conn.execute(
            """INSERT INTO bib_record (source, control_number, title, title_reading, material_type, pub_year, ndc,
                                       isbns, data, raw_format, raw)
               SELECT source, control_number, title, title_reading, material_type, pub_year, ndc, isbns, data,
                      raw_format, raw
               FROM bib_stage WHERE id IS NULL ORDER BY n
               RETURNING id, source, control_number""").fetchall()
        by_key = {(row["source"], row["control_number"]): row["id"] for row in inserted}
        for i in new_idx:
            ids[i] = by_key[(batch.sources[i], batch.control_numbers[i])]
        result.added = len(new_idx)
    repeats = [(found, ids[-1 - found]) for found in ids if found is not None and found < 0]
    if repeats:  # later copies of a record that is new in this batch update the row just inserted
        conn.execute("UPDATE bib_stage s SET id = m.id FROM unnest(%s::bigint[], %s::bigint[]) AS m(mark, id) "
                     "WHERE s.id = m.mark", ([m for m, _ in repeats], [i for _, i in repeats]))
        for i, found in enumerate(ids):
            if found is not None and found < 0:
                ids[i] = ids[-1 - found]
    new = set(new_idx)
    result.updated = len(batch) - len(new)
    if result.updated:
        # Source and control number stay: a record matched by ISBN keeps the key it was found by.
        conn.execute(
            """UPDATE bib_record b SET title = u.title, title_reading = u.title_reading,
                      material_type = u.material_type, pub_year = u.pub_year, ndc = u.ndc, isbns = u.isbns,
                      data = u.data, raw_format = u.raw_format, raw = u.raw, updated_at = now()
               FROM (SELECT DISTINCT ON (id) * FROM bib_stage WHERE id IS NOT NULL ORDER BY id, n DESC) AS u
               WHERE b.id = u.id""")
    if outbox:
        conn.execute("INSERT INTO search_outbox (record_id) SELECT DISTINCT unnest(%s::bigint[])", (ids,))
    return result


def write_batch(conn: Connection[DictRow], actor: Actor, batch: PreparedBatch, *, origin: str = "",
                outbox: bool = True) -> SaveResult:
    """`save_records` for a batch from `prepare_records`: the matching and the writing, in one transaction."""
    if not batch:
        return SaveResult()
    if conn.info.encoding != "utf-8":  # the staging rows' text is UTF-8
        raise RuntimeError(f"the database connection's client encoding is {conn.info.encoding}, not UTF8")
    with conn.transaction():
        ids = _resolve_ids(conn, batch)
        if all(found is None for found in ids):  # a batch of new records only: the usual bulk load
            _copy_new(conn, batch, outbox)
            result = SaveResult(added=len(batch))
        else:
            result = _write_staged(conn, batch, ids, outbox)
        record(conn, actor, "catalog.import", "import", origin, {"added": result.added, "updated": result.updated})
    return result


def lookup(conn: Connection[DictRow], *, barcode: str = "", call_number: str = "",
           record_id: int | None = None) -> list[int]:
    """Record ids by exact item barcode, call number (prefix) or record ID, straight from PostgreSQL."""
    if barcode:
        rows = conn.execute("SELECT record_id AS id FROM item WHERE barcode = %s", (barcode,)).fetchall()
    elif call_number:
        rows = conn.execute("SELECT DISTINCT record_id AS id FROM item WHERE call_number LIKE %s ORDER BY 1 "
                            "LIMIT 100", (call_number.replace("%", r"\%").replace("_", r"\_") + "%",)).fetchall()
    else:
        rows = conn.execute("SELECT id FROM bib_record WHERE id = %s", (record_id,)).fetchall()
    return [int(r["id"]) for r in rows]


def staff_summaries(conn: Connection[DictRow], ids: list[int]) -> list[dict[str, Any]]:
    """Result rows for staff: the public summary plus item counts."""
    if not ids:
        return []
    rows = conn.execute(
        """SELECT r.id, r.title, r.title_reading, r.pub_year AS year, r.ndc, r.isbns, r.source, r.control_number,
                  count(i.id) FILTER (WHERE i.status <> 'withdrawn') AS items,
                  count(i.id) FILTER (WHERE i.status = 'available') AS available
           FROM bib_record r LEFT JOIN item i ON i.record_id = r.id
           WHERE r.id = ANY(%s) GROUP BY r.id""", (ids,)).fetchall()
    by_id = {r["id"]: dict(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def staff_record(conn: Connection[DictRow], record_id: int) -> dict[str, Any]:
    """A record with every item (including withdrawn ones) as staff see them."""
    row = conn.execute("SELECT id, source, control_number, data, raw_format, created_at, updated_at "
                       "FROM bib_record WHERE id = %s", (record_id,)).fetchone()
    if row is None:
        raise not_found("record", str(record_id))
    items = conn.execute(
        """SELECT i.barcode, b.code AS branch, l.code AS location, i.call_number, i.item_type, i.status,
                  i.acquired_on, i.price, i.notes, i.withdrawn_on, i.withdrawal_reason
           FROM item i JOIN branch b ON b.id = i.branch_id LEFT JOIN location l ON l.id = i.location_id
           WHERE i.record_id = %s ORDER BY b.code, i.barcode""", (record_id,)).fetchall()
    return {"id": row["id"], "source": row["source"], "control_number": row["control_number"],
            "raw_format": row["raw_format"], "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(), "record": row["data"],
            "items": [{**dict(i), "acquired_on": i["acquired_on"].isoformat() if i["acquired_on"] else None,
                       "withdrawn_on": i["withdrawn_on"].isoformat() if i["withdrawn_on"] else None}
                      for i in items]}


EDITABLE_FIELDS = ("title", "title_reading", "subtitle", "responsibility", "publisher", "publisher_reading",
                   "year", "ndc", "isbns", "notes")


def update_record(conn: Connection[DictRow], actor: Actor, record_id: int, changes: dict[str, Any]) -> None:
    """Edit a record's description by hand. The record is marked as edited locally; its readings are
    regenerated where a text changes without one, and the change reaches the index via the outbox."""
    from indexer.analysis import reading_of
    from indexer.params import normalize_isbn

    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise invalid(unknown[0], changes[unknown[0]], "この項目は編集できません。", "this field cannot be edited")
    if "title" in changes and not str(changes["title"] or "").strip():
        raise invalid("title", changes["title"], "書名は必須です。", "a title is required")
    if changes.get("year") is not None and not (isinstance(changes["year"], int) and 0 < changes["year"] < 10000):
        raise invalid("year", changes["year"], "出版年は西暦4桁の整数です。", "a year such as 2024")
    if changes.get("ndc") and not re.fullmatch(r"[0-9]{1,3}(\.[0-9]+)?", str(changes["ndc"])):
        raise invalid("ndc", changes["ndc"], "NDCは 913.6 のような分類番号です。", "an NDC number such as 913.6")
    if "isbns" in changes:
        normalized = []
        for value in changes["isbns"] or []:
            isbn = normalize_isbn(str(value))
            if isbn is None:
                raise invalid("isbns", value, "ISBNとして正しくありません。", "not a valid ISBN")
            normalized.append(isbn)
        changes = {**changes, "isbns": normalized}
    with conn.transaction():
        row = conn.execute("SELECT data FROM bib_record WHERE id = %s FOR UPDATE", (record_id,)).fetchone()
        if row is None:
            raise not_found("record", str(record_id))
        data = dict(row["data"])
        before = {k: data.get(k) for k in changes}
        data.update(changes)
        generated = set(data.get("readings_generated") or [])
        for text, reading, kind in (("title", "title_reading", "title"), ("publisher", "publisher_reading",
                                                                            "publisher")):
            if text in changes and reading not in changes and data.get(text):
                data[reading] = reading_of(data[text])
                generated.add(kind)
            elif reading in changes:
                generated.discard(kind)
        data["readings_generated"] = sorted(generated)
        data["edited_locally"] = True
        conn.execute(
            "UPDATE bib_record SET title = %s, title_reading = %s, pub_year = %s, ndc = %s, isbns = %s, data = %s, "
            "updated_at = now() WHERE id = %s",
            (data["title"], data.get("title_reading"), data.get("year"), data.get("ndc"), data.get("isbns") or [],
             Jsonb(data), record_id))
        conn.execute("INSERT INTO search_outbox (record_id) VALUES (%s)", (record_id,))
        record(conn, actor, "catalog.record_update", "record", record_id,
               {"before": before, "after": {k: data.get(k) for k in changes}})
