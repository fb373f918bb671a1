"""予約本受取ロッカー: pickup lockers that are not connected to the system.

Banks (a set of lockers at a branch) and their compartments (扉) are data. Staff choose a free
compartment for a hold on the hold shelf (確保); loading it checks the item out to the patron, keeps
the hold as 'in_locker' with a fresh unlock code (暗証番号), and emails the patron the compartment and
the code. Staff then mark the compartment emptied (the patron took it: the hold is collected), or,
when the pickup deadline has passed, take the item out: it is checked in like any return, so the next
hold is trapped at once, and the hold expires.

Lock order, as in circulation and holds: patron, item, hold, compartment. The unlock code is written
to the hold and the patron's notice only: never to the audit log, a URL or a log line.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.circulation import service as circulation
from api.errors import ShokaError, invalid, not_found

DB = Connection[DictRow]
CODE_DIGITS = 6                     # 暗証番号の桁数 (the lockers take 4 to 6 digits)
MAX_COMPARTMENTS = 200              # per bank, per request: a typo of 2000 is refused
LABEL_MAX = 16
BANK_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
LABEL_SPLIT_RE = re.compile(r"[\s,、，]+")


# -- pure ------------------------------------------------------------------------------------------

def new_unlock_code(digits: int = CODE_DIGITS) -> str:
    """A fresh random unlock code of `digits` digits (leading zeros kept), from the OS's CSPRNG."""
    if not 4 <= digits <= 6:
        raise ValueError(f"an unlock code has 4 to 6 digits, not {digits}")
    return f"{secrets.randbelow(10 ** digits):0{digits}d}"


def compartment_labels(count: int, *, prefix: str = "", start: int = 1) -> list[str]:
    """Labels for `count` compartments numbered from `start`: prefix + number ("A1", "A2", ...)."""
    if not 1 <= count <= MAX_COMPARTMENTS:
        raise invalid("count", count, f"扉の数は 1〜{MAX_COMPARTMENTS} です。",
                      f"a bank has 1 to {MAX_COMPARTMENTS} compartments")
    if start < 0:
        raise invalid("start", start, "番号は 0 以上です。", "numbers start at 0 or more")
    return clean_labels([f"{prefix.strip()}{n}" for n in range(start, start + count)])


def parse_labels(text: str) -> list[str]:
    """Labels typed by staff, separated by commas, 読点 or spaces/new lines, in the order given."""
    return clean_labels([part for part in LABEL_SPLIT_RE.split(unicodedata.normalize("NFKC", text)) if part])


def clean_labels(labels: Iterable[str]) -> list[str]:
    """Labels as stored: NFKC, trimmed, 1–16 characters, each once."""
    out: list[str] = []
    for raw in labels:
        label = unicodedata.normalize("NFKC", raw).strip()
        if not label or len(label) > LABEL_MAX:
            raise invalid("labels", raw, f"扉の番号は 1〜{LABEL_MAX} 文字です。",
                          f"a label has 1 to {LABEL_MAX} characters")
        if label in out:
            raise invalid("labels", label, "同じ番号が二度あります。", "this label appears twice")
        out.append(label)
    if not out:
        raise invalid("labels", "", "扉の番号を一つ以上入力してください。", "give at least one compartment label")
    if len(out) > MAX_COMPARTMENTS:
        raise invalid("labels", len(out), f"扉の数は {MAX_COMPARTMENTS} までです。",
                      f"at most {MAX_COMPARTMENTS} compartments")
    return out


# -- data ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Compartment:
    id: int
    label: str
    out_of_service: bool
    hold_id: int | None = None
    item: str | None = None            # barcode of the item inside
    title: str | None = None
    loaded_at: datetime | None = None
    pickup_deadline: date | None = None

    @property
    def free(self) -> bool:
        """Offered to staff for loading: empty and in service."""
        return self.hold_id is None and not self.out_of_service


@dataclass(frozen=True)
class LockerBank:
    id: int
    code: str
    name: str
    branch: str
    branch_name: str
    branch_name_en: str | None
    location: str | None
    compartments: tuple[Compartment, ...]

    @property
    def free_count(self) -> int:
        return sum(1 for c in self.compartments if c.free)


@dataclass(frozen=True)
class ShelfHold:
    """A hold on the hold shelf of a branch that has lockers: a candidate for loading."""

    id: int
    branch: str
    item: str
    title: str
    pickup_deadline: date | None
    shelved_at: datetime | None


@dataclass(frozen=True)
class LockerLoad:
    """The result of loading, shown to staff once (the unlock code is not shown again)."""

    hold_id: int
    bank: str
    bank_name: str
    compartment_id: int
    compartment: str
    unlock_code: str
    item: str
    title: str
    loan_id: int
    due_date: date
    pickup_deadline: date | None
    notice_queued: bool


@dataclass(frozen=True)
class LockerReturn:
    """An uncollected item taken out of a compartment and checked in."""

    hold_id: int
    compartment: str
    checkin: circulation.CheckinResult


# -- banks and compartments (administration) -------------------------------------------------------

def _branch(conn: DB, code: str) -> DictRow:
    row = conn.execute("SELECT id, code, name, name_en FROM branch WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise invalid("branch", code, "その館コードはありません。", "no such branch code")
    return row


def create_bank(conn: DB, actor: Actor, code: str, name: str, branch: str, labels: Iterable[str], *,
                location: str | None = None) -> int:
    """Add a locker bank at a branch with its compartments (管理: circulation:administer)."""
    code = code.strip()
    name = name.strip()
    if not BANK_CODE_RE.match(code):
        raise invalid("code", code, "英小文字・数字・-・_ で32文字以内です。",
                      "lower-case letters, digits, '-' and '_', at most 32 characters")
    if not name:
        raise invalid("name", name, "名前を入力してください。", "the name is required")
    cleaned = clean_labels(labels)
    with conn.transaction():
        branch_row = _branch(conn, branch)
        if conn.execute("SELECT 1 FROM locker_bank WHERE code = %s", (code,)).fetchone():
            raise ShokaError("locker_bank_exists", f"code: ロッカーのコード「{code}」は既に使われています。",
                             f"code: the locker bank code {code!r} is already in use.", status=409, field="code")
        row = conn.execute("INSERT INTO locker_bank (code, name, branch_id, location) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", (code, name, branch_row["id"], (location or "").strip() or None)).fetchone()
        assert row is not None
        bank_id = int(row["id"])
        _insert_compartments(conn, bank_id, cleaned)
        record(conn, actor, "locker.bank_create", "locker_bank", code,
               {"branch": branch, "compartments": len(cleaned)})
        return bank_id


def _insert_compartments(conn: DB, bank_id: int, labels: list[str]) -> None:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO locker_compartment (bank_id, label) VALUES (%s, %s)",
                        [(bank_id, label) for label in labels])


def add_compartments(conn: DB, actor: Actor, bank_id: int, labels: Iterable[str]) -> int:
    """Add compartments to a bank; a label already in the bank is refused. Returns how many were added."""
    cleaned = clean_labels(labels)
    with conn.transaction():
        bank = conn.execute("SELECT id, code FROM locker_bank WHERE id = %s FOR UPDATE", (bank_id,)).fetchone()
        if bank is None:
            raise not_found("locker_bank", str(bank_id))
        taken = conn.execute("SELECT label FROM locker_compartment WHERE bank_id = %s AND label = ANY(%s) "
                             "ORDER BY label LIMIT 1", (bank_id, cleaned)).fetchone()
        if taken is not None:
            raise invalid("labels", taken["label"], "このロッカーには同じ番号の扉があります。",
                          "this bank already has a compartment with this label")
        _insert_compartments(conn, bank_id, cleaned)
        record(conn, actor, "locker.compartments_add", "locker_bank", bank["code"], {"labels": cleaned})
        return len(cleaned)


def set_out_of_service(conn: DB, actor: Actor, compartment_id: int, out_of_service: bool) -> None:
    """故障・使用中止. A compartment out of service is never offered; one still holding an item keeps it
    until staff empty it."""
    with conn.transaction():
        row = conn.execute(
            """UPDATE locker_compartment c SET out_of_service = %s FROM locker_bank b
               WHERE c.id = %s AND b.id = c.bank_id RETURNING b.code, c.label""",
            (out_of_service, compartment_id)).fetchone()
        if row is None:
            raise not_found("locker_compartment", str(compartment_id))
        record(conn, actor, "locker.service", "locker_compartment", compartment_id,
               {"bank": row["code"], "label": row["label"], "out_of_service": out_of_service})


# -- reading ---------------------------------------------------------------------------------------

def list_banks(conn: DB, *, branch: str | None = None) -> list[LockerBank]:
    """Banks (of one branch, or all) with every compartment and what is in it (two queries)."""
    banks = conn.execute(
        """SELECT lb.id, lb.code, lb.name, lb.location, b.code AS branch, b.name AS branch_name,
                  b.name_en AS branch_name_en
           FROM locker_bank lb JOIN branch b ON b.id = lb.branch_id
           WHERE %(branch)s::text IS NULL OR b.code = %(branch)s ORDER BY b.code, lb.code""",
        {"branch": branch}).fetchall()
    rows = conn.execute(
        """SELECT c.id, c.bank_id, c.label, c.out_of_service, c.hold_id, c.loaded_at, h.pickup_deadline,
                  i.barcode AS item, r.title
           FROM locker_compartment c LEFT JOIN hold h ON h.id = c.hold_id
           LEFT JOIN item i ON i.id = h.trapped_item_id LEFT JOIN bib_record r ON r.id = h.record_id
           WHERE c.bank_id = ANY(%s) ORDER BY c.bank_id, c.id""", ([b["id"] for b in banks],)).fetchall()
    by_bank: dict[int, list[Compartment]] = {}
    for r in rows:
        by_bank.setdefault(r["bank_id"], []).append(Compartment(
            r["id"], r["label"], r["out_of_service"], r["hold_id"], r["item"], r["title"], r["loaded_at"],
            r["pickup_deadline"]))
    return [LockerBank(b["id"], b["code"], b["name"], b["branch"], b["branch_name"], b["branch_name_en"],
                       b["location"], tuple(by_bank.get(b["id"], ()))) for b in banks]


def get_bank(conn: DB, bank_id: int) -> LockerBank:
    row = conn.execute("SELECT b.code FROM locker_bank lb JOIN branch b ON b.id = lb.branch_id WHERE lb.id = %s",
                       (bank_id,)).fetchone()
    if row is None:
        raise not_found("locker_bank", str(bank_id))
    return next(b for b in list_banks(conn, branch=row["code"]) if b.id == bank_id)


def shelf_holds(conn: DB, *, branch: str | None = None) -> list[ShelfHold]:
    """Holds on the hold shelf (確保) at branches that have lockers, oldest deadline first."""
    rows = conn.execute(
        """SELECT h.id, b.code AS branch, i.barcode AS item, r.title, h.pickup_deadline, h.shelved_at
           FROM hold h JOIN branch b ON b.id = h.pickup_branch_id JOIN item i ON i.id = h.trapped_item_id
           JOIN bib_record r ON r.id = h.record_id
           WHERE h.status = 'on_shelf' AND EXISTS (SELECT 1 FROM locker_bank lb WHERE lb.branch_id = b.id)
             AND (%(branch)s::text IS NULL OR b.code = %(branch)s)
           ORDER BY h.pickup_deadline NULLS LAST, h.id""", {"branch": branch}).fetchall()
    return [ShelfHold(r["id"], r["branch"], r["item"], r["title"], r["pickup_deadline"], r["shelved_at"])
            for r in rows]


# -- loading ---------------------------------------------------------------------------------------

def _refusal(code: str, ja: str, en: str, field: str | None = None) -> ShokaError:
    return ShokaError(code, ja, en, status=409, field=field)


_COMPARTMENT_SQL = """
    SELECT c.id, c.label, c.hold_id, c.out_of_service, lb.id AS bank_id, lb.code AS bank, lb.name AS bank_name,
           lb.location, lb.branch_id
    FROM locker_compartment c JOIN locker_bank lb ON lb.id = c.bank_id"""


def _choose_compartment(conn: DB, branch_id: int, compartment_id: int | None, bank_id: int | None) -> DictRow:
    if compartment_id is not None:
        comp = conn.execute(_COMPARTMENT_SQL + " WHERE c.id = %s FOR UPDATE OF c", (compartment_id,)).fetchone()
        if comp is None:
            raise invalid("compartment", compartment_id, "そのロッカーの扉はありません。", "no such compartment")
        if comp["branch_id"] != branch_id:
            raise invalid("compartment", comp["label"], "受取館のロッカーではありません。",
                          "this locker is not at the hold's pickup branch")
        if comp["hold_id"] is not None or comp["out_of_service"]:
            raise _refusal("compartment_not_free",
                           f"compartment: 「{comp['bank_name']} {comp['label']}」は空いていません"
                           "（使用中・使用中止）。",
                           f"compartment: {comp['bank_name']} {comp['label']} is not free (in use or out of service).",
                           field="compartment")
        return comp
    # SKIP LOCKED: two counters loading at once take different compartments instead of waiting.
    comp = conn.execute(
        _COMPARTMENT_SQL + """ WHERE lb.branch_id = %s AND (%s::bigint IS NULL OR lb.id = %s)
              AND c.hold_id IS NULL AND NOT c.out_of_service
            ORDER BY lb.code, c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED""",
        (branch_id, bank_id, bank_id)).fetchone()
    if comp is None:
        raise _refusal("locker_full", "空いているロッカーがありません。予約棚でお渡ししてください。",
                       "No locker compartment is free; keep the item on the hold shelf.", field="compartment")
    return comp


def load_hold(conn: DB, actor: Actor, hold_id: int, *, compartment_id: int | None = None,
              bank_id: int | None = None, today: date | None = None, override: Iterable[str] = ()) -> LockerLoad:
    """ロッカーに入れる: in one transaction, lend the trapped item to the patron (at the locker's branch),
    keep the hold as 'in_locker' with a fresh unlock code, occupy the compartment (the one chosen, else
    the first free one) and queue the `locker_code` notice. Check-out refusals (blocked patron, limits)
    come through unchanged; `override` is passed to the check-out."""
    today = today or date.today()
    with conn.transaction():
        first = conn.execute("SELECT patron_id, trapped_item_id FROM hold WHERE id = %s", (hold_id,)).fetchone()
        if first is None:
            raise not_found("hold", str(hold_id))
        patron = conn.execute("SELECT id, card FROM patron WHERE id = %s FOR UPDATE",
                              (first["patron_id"],)).fetchone()
        item = None
        if first["trapped_item_id"] is not None:
            item = conn.execute("SELECT id, barcode FROM item WHERE id = %s FOR UPDATE",
                                (first["trapped_item_id"],)).fetchone()
        hold = conn.execute(
            """SELECT h.id, h.status, h.trapped_item_id, h.pickup_branch_id, h.pickup_deadline, r.title,
                      b.code AS branch, b.name AS branch_name, b.name_en AS branch_name_en
               FROM hold h JOIN bib_record r ON r.id = h.record_id JOIN branch b ON b.id = h.pickup_branch_id
               WHERE h.id = %s FOR UPDATE OF h""", (hold_id,)).fetchone()
        assert patron is not None and hold is not None
        if hold["status"] != "on_shelf" or item is None or hold["trapped_item_id"] != item["id"]:
            raise _refusal("hold_not_on_shelf",
                           "この予約は予約棚にありません（確保済みの予約だけをロッカーに入れられます）。",
                           "This hold is not on the hold shelf; only trapped holds can go into a locker.",
                           field="hold")
        deadline = hold["pickup_deadline"]
        if deadline is not None and deadline < today:
            raise _refusal("hold_past_deadline",
                           f"この予約は受取期限（{deadline.isoformat()}）を過ぎています。",
                           f"This hold is past its pickup deadline ({deadline.isoformat()}).", field="hold")
        comp = _choose_compartment(conn, hold["pickup_branch_id"], compartment_id, bank_id)
        loan = circulation.checkout(conn, actor, patron["card"], item["barcode"], branch=hold["branch"],
                                    today=today, override=override)
        if loan.hold_collected != hold_id:
            raise _refusal("locker_load_failed",
                           "貸出処理で予約を引き当てられませんでした。予約の状態を確認してください。",
                           "The check-out did not fill this hold; check the hold's state.", field="hold")
        code = new_unlock_code()
        # The check-out marked the hold collected; in a locker it stays open until staff empty it.
        conn.execute(
            """UPDATE hold SET status = 'in_locker', ended_at = NULL, end_reason = NULL, locker_compartment_id = %s,
                               unlock_code = %s, updated_at = now() WHERE id = %s""", (comp["id"], code, hold_id))
        conn.execute("UPDATE locker_compartment SET hold_id = %s, loaded_at = now() WHERE id = %s",
                     (hold_id, comp["id"]))
        from api.notices.service import queue_notice

        notice = queue_notice(conn, "locker_code", patron["id"], f"locker_code:{hold_id}:{comp['id']}", {
            "title": hold["title"], "locker_bank": comp["bank_name"], "compartment": comp["label"],
            "unlock_code": code, "deadline": deadline or today, "locker_location": comp["location"],
            "due_date": loan.due_date, "branch": hold["branch_name"], "branch_en": hold["branch_name_en"]})
        record(conn, actor, "locker.load", "hold", hold_id,
               {"bank": comp["bank"], "compartment": comp["label"], "item": item["barcode"]})
        return LockerLoad(hold_id, comp["bank"], comp["bank_name"], comp["id"], comp["label"], code,
                          item["barcode"], hold["title"], loan.loan_id, loan.due_date, deadline, notice is not None)


# -- emptying ----------------------------------------------------------------------------------------

_OCCUPIED_SQL = """
    SELECT c.id, c.label, c.hold_id, lb.code AS bank, lb.name AS bank_name, b.code AS branch, h.status,
           h.pickup_deadline, i.barcode AS item
    FROM locker_compartment c JOIN locker_bank lb ON lb.id = c.bank_id JOIN branch b ON b.id = lb.branch_id
    LEFT JOIN hold h ON h.id = c.hold_id LEFT JOIN item i ON i.id = h.trapped_item_id
    WHERE c.id = %s FOR UPDATE OF c"""


def _occupied(conn: DB, compartment_id: int) -> DictRow:
    """The compartment and its hold, locked hold first (the hold is locked before the compartment
    everywhere)."""
    peek = conn.execute("SELECT hold_id FROM locker_compartment WHERE id = %s", (compartment_id,)).fetchone()
    if peek is None:
        raise not_found("locker_compartment", str(compartment_id))
    if peek["hold_id"] is not None:
        conn.execute("SELECT 1 FROM hold WHERE id = %s FOR UPDATE", (peek["hold_id"],))
    comp = conn.execute(_OCCUPIED_SQL, (compartment_id,)).fetchone()
    assert comp is not None
    if comp["hold_id"] is None or comp["hold_id"] != peek["hold_id"] or comp["status"] != "in_locker":
        raise _refusal("compartment_empty", f"「{comp['bank_name']} {comp['label']}」には資料が入っていません。",
                       f"{comp['bank_name']} {comp['label']} holds no item.", field="compartment")
    return comp


def _free(conn: DB, compartment_id: int) -> None:
    conn.execute("UPDATE locker_compartment SET hold_id = NULL, loaded_at = NULL WHERE id = %s", (compartment_id,))


def mark_emptied(conn: DB, actor: Actor, compartment_id: int) -> int:
    """空になった: the patron took the item (it is already on loan to them). The hold is collected and
    the compartment free again. Returns the hold id."""
    with conn.transaction():
        comp = _occupied(conn, compartment_id)
        conn.execute("""UPDATE hold SET status = 'collected', ended_at = now(), end_reason = 'collected',
                        unlock_code = NULL, updated_at = now() WHERE id = %s""", (comp["hold_id"],))
        _free(conn, compartment_id)
        record(conn, actor, "locker.emptied", "hold", comp["hold_id"],
               {"bank": comp["bank"], "compartment": comp["label"]})
        return int(comp["hold_id"])


def return_uncollected(conn: DB, actor: Actor, compartment_id: int, *, today: date | None = None) -> LockerReturn:
    """受取期限切れ: staff take the item out after the pickup deadline. The hold expires, the compartment
    is freed and the item is checked in at the locker's branch (the loan ends; the next hold is trapped
    at once), all in one transaction."""
    today = today or date.today()
    with conn.transaction():
        peek = conn.execute(
            """SELECT i.id FROM locker_compartment c JOIN hold h ON h.id = c.hold_id
               JOIN item i ON i.id = h.trapped_item_id WHERE c.id = %s""", (compartment_id,)).fetchone()
        if peek is not None:  # the item first, as check-in locks it
            conn.execute("SELECT 1 FROM item WHERE id = %s FOR UPDATE", (peek["id"],))
        comp = _occupied(conn, compartment_id)
        deadline = comp["pickup_deadline"]
        if deadline is not None and deadline >= today:
            raise _refusal("locker_not_past_deadline",
                           f"受取期限（{deadline.isoformat()}）までは取り出せません。受け取られた場合は「空になった」にしてください。",
                           f"The pickup deadline ({deadline.isoformat()}) has not passed; if the patron took the "
                           "item, mark the compartment emptied.", field="compartment")
        conn.execute("""UPDATE hold SET status = 'expired', ended_at = now(), end_reason = 'not_collected',
                        unlock_code = NULL, updated_at = now() WHERE id = %s""", (comp["hold_id"],))
        _free(conn, compartment_id)
        record(conn, actor, "locker.return", "hold", comp["hold_id"],
               {"bank": comp["bank"], "compartment": comp["label"], "item": comp["item"]})
        result = circulation.checkin(conn, actor, comp["item"], branch=comp["branch"], today=today)
        return LockerReturn(int(comp["hold_id"]), comp["label"], result)
