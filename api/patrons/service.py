"""Patrons (利用者): registration, search, blocks and lending suspensions (貸出停止).

Privacy: card numbers, names, phone numbers and emails are personal data. Nothing here logs them;
every staff view of a record and every search is written to the audit log (the search without its
text). `find_by_card`, `standing` and `current_loans` are not audited: circulation calls them for
every scan, and the counter's own screens record what they show.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.barcodes import nw7
from api.barcodes.service import load_rules
from api.errors import ShokaError, invalid, not_found
from indexer.analysis import fold_reading, to_katakana

DB = Connection[DictRow]

CARD_RE = re.compile(r"^[0-9A-Za-z-]{1,32}$")
# Full-width katakana (incl. ヴヵヶ and the iteration marks), the long-vowel mark, middle dot, spaces.
READING_RE = re.compile(r"^[ァ-ヺヽヾー・ ]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
POSTAL_RE = re.compile(r"^([0-9]{3})-?([0-9]{4})$")
PHONE_RE = re.compile(r"^[0-9+()\- ]+$")
BLOCK_KINDS = ("manual", "suspension")
EARLIEST_BIRTH = date(1900, 1, 1)
MAX_LENGTHS = {"name": 100, "name_reading": 200, "address": 300, "notes": 2000, "contact_name": 100, "email": 254,
               "reason": 500}
AGE_GROUPS = ("0-5", "6-12", "13-15", "16-18", "19-29", "30-39", "40-49", "50-59", "60-69", "70+")
# Fields whose values may go into the audit details; the rest are personal data, recorded by name only.
NON_PERSONAL = frozenset({"category", "branch", "expires_on", "keep_history"})
EDITABLE = frozenset({"card", "name", "name_reading", "birth_date", "postal_code", "address", "phone", "email",
                      "category", "branch", "expires_on", "notes", "keep_history", "contact_name"})


# -- pure helpers ------------------------------------------------------------------------------------

def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def age_on(birth_date: date, on: date) -> int:
    """Completed years on `on` (the birthday itself counts; a 29 February birthday counts from 1 March
    in common years). Statistics only: the legal age (年齢計算ニ関スル法律) turns a day earlier."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def age_group(birth_date: date | None, on: date) -> str:
    """年齢区分 for statistics: '0-5', '6-12', '13-15', '16-18', '19-29', '30-39', … '60-69', '70+', or
    'unknown' without a birth date (groups, or not given) or with one after `on`."""
    if birth_date is None or birth_date > on:
        return "unknown"
    age = age_on(birth_date, on)
    if age <= 5:
        return "0-5"
    if age <= 12:
        return "6-12"
    if age <= 15:
        return "13-15"
    if age <= 18:
        return "16-18"
    if age <= 29:
        return "19-29"
    if age >= 70:
        return "70+"
    decade = age // 10 * 10
    return f"{decade}-{decade + 9}"


def normalize_reading(text: str) -> str:
    """How a reading (ヨミ) is stored: NFKC (半角カナ → 全角), hiragana → katakana, one space between words."""
    return " ".join(to_katakana(unicodedata.normalize("NFKC", text or "")).split())


def reading_key(reading: str) -> str:
    """The search and duplicate key: the reading folded (katakana, small kana as large, no ー) without spaces."""
    return fold_reading(reading).replace(" ", "")


def normalize_name(text: str) -> str:
    """Names keep their characters (異体字 matter); only the spacing is made uniform."""
    return " ".join((text or "").split())


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _check_length(name: str, value: str | None) -> None:
    limit = MAX_LENGTHS.get(name)
    if value is not None and limit is not None and len(value) > limit:
        raise invalid(name, value, f"{limit}文字以内で入力してください。", f"at most {limit} characters")


def clean_reading(value: str) -> str:
    reading = normalize_reading(value)
    if not reading:
        raise invalid("name_reading", value, "ヨミ（カナ）を入力してください。", "the reading (kana) is required")
    if not READING_RE.match(reading):
        raise invalid("name_reading", value, "ヨミはカタカナ（ひらがな可）で入力してください。",
                      "the reading must be written in kana (katakana or hiragana)")
    _check_length("name_reading", reading)
    return reading


def clean_name(value: str, field_name: str = "name", *, required: bool = True) -> str | None:
    name = normalize_name(value)
    if not name:
        if required:
            raise invalid(field_name, value, "氏名を入力してください。", "the name is required")
        return None
    _check_length(field_name, name)
    return name


def clean_email(value: str | None) -> str | None:
    email = (value or "").strip()
    if not email:
        return None
    if not EMAIL_RE.match(email) or len(email) > MAX_LENGTHS["email"]:
        raise invalid("email", value, "メールアドレスの形式ではありません。", "not an email address")
    return email


def clean_phone(value: str | None) -> str | None:
    phone = " ".join(unicodedata.normalize("NFKC", value or "").split())
    if not phone:
        return None
    digits = re.sub(r"[^0-9]", "", phone)
    if not PHONE_RE.match(phone) or not 5 <= len(digits) <= 15:
        raise invalid("phone", value, "電話番号は数字とハイフンで入力してください（5〜15桁）。",
                      "a phone number is 5 to 15 digits, with '-' allowed")
    return phone


def clean_postal_code(value: str | None) -> str | None:
    code = unicodedata.normalize("NFKC", value or "").strip().replace("〒", "").strip()
    if not code:
        return None
    m = POSTAL_RE.match(code)
    if not m:
        raise invalid("postal_code", value, "郵便番号は 123-4567 の形で入力してください。", "use the form 123-4567")
    return f"{m.group(1)}-{m.group(2)}"


def clean_birth_date(value: date | None, today: date) -> date | None:
    if value is None:
        return None
    if value > today:
        raise invalid("birth_date", value.isoformat(), "生年月日が未来の日付です。", "the birth date is in the future")
    if value < EARLIEST_BIRTH:
        raise invalid("birth_date", value.isoformat(), "生年月日が古すぎます。", "the birth date is before 1900")
    return value


def _optional_text(name: str, value: str | None) -> str | None:
    text = (value or "").strip()
    if not text:
        return None
    _check_length(name, text)
    return text


# -- data --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewPatron:
    """A registration (利用登録). `expires_on` defaults to today + the category's card_years."""

    card: str
    name: str
    name_reading: str
    category: str
    branch: str
    birth_date: date | None = None
    postal_code: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None
    expires_on: date | None = None
    notes: str | None = None
    keep_history: bool = False
    contact_name: str | None = None


@dataclass(frozen=True)
class Block:
    """A manual block (貸出禁止) or a lending suspension (貸出停止); `ends_on` is the last day it applies."""

    id: int
    kind: str
    reason: str
    starts_on: date
    ends_on: date | None
    created_by: str
    lifted: bool

    def active_on(self, day: date) -> bool:
        return not self.lifted and self.starts_on <= day and (self.ends_on is None or self.ends_on >= day)


@dataclass(frozen=True)
class Standing:
    """What a patron may do today: active blocks, suspension end, card expiry, overdue and current loans."""

    blocks: tuple[Block, ...]
    suspended_until: date | None
    expires_on: date | None
    expired: bool
    overdue_loans: int
    current_loans: int

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why lending is refused, as stable codes: blocked, suspended, expired, overdue."""
        out = []
        if any(b.kind == "manual" for b in self.blocks):
            out.append("blocked")
        if any(b.kind == "suspension" for b in self.blocks):
            out.append("suspended")
        if self.expired:
            out.append("expired")
        if self.overdue_loans:
            out.append("overdue")
        return tuple(out)

    @property
    def blocked(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class CurrentLoan:
    id: int
    item_barcode: str
    title: str
    checked_out_at: Any
    due_date: date
    renewals: int
    overdue: bool
    branch: str = ""   # the lending branch


@dataclass(frozen=True)
class PatronSearch:
    """Search hits (at most `limit`), the kinds of look-up the query was used for, and whether more matched."""

    patrons: tuple[DictRow, ...]
    kinds: tuple[str, ...]
    truncated: bool = False


# -- look-ups ----------------------------------------------------------------------------------------

def _branch_id(conn: DB, code: str) -> int:
    row = conn.execute("SELECT id FROM branch WHERE code = %s AND active", (code or "",)).fetchone()
    if row is None:
        raise invalid("branch", code, "その館コードはありません。", "no such branch code")
    return int(row["id"])


def _category(conn: DB, code: str) -> DictRow:
    row = conn.execute("SELECT code, name, name_en, is_group, card_years FROM patron_category WHERE code = %s",
                       (code or "",)).fetchone()
    if row is None:
        raise invalid("category", code, "その利用者区分はありません。", "no such patron category")
    return row


def list_categories(conn: DB) -> list[DictRow]:
    return conn.execute("SELECT code, name, name_en, is_group, card_years FROM patron_category "
                        "ORDER BY is_group, code").fetchall()


def clean_card(conn: DB, card: str, branch: str | None) -> str:
    """The card number as stored: scanner characters stripped, checked against the patron-card ranges
    (番号帯) in force at `branch`. Cards from the previous system outside every range are kept as they are."""
    try:
        code = nw7.parse_scan(card or "", nw7.rules_for_branch(load_rules(conn), branch), "patron")
    except ShokaError as exc:
        # The API field is `card`; the message already shows the value as scanned.
        raise ShokaError(exc.code, f"card: {exc.message_ja}", f"card: {exc.message_en}", status=exc.status,
                         field="card") from None
    if not CARD_RE.match(code):
        raise invalid("card", card, "英数字とハイフンで32文字以内です。",
                      "letters, digits and '-', at most 32 characters")
    return code


def _card_taken(card: str) -> ShokaError:
    return ShokaError("card_taken", f"card: 利用者番号「{card}」は既に使われています。",
                      f"card: the card number {card!r} is already in use.", status=409, field="card")


def find_duplicates(conn: DB, name_reading: str, birth_date: date | None,
                    exclude_id: int | None = None) -> list[DictRow]:
    """Patrons with the same reading key and birth date (同一人物の可能性); none without a birth date."""
    if birth_date is None:
        return []
    return conn.execute(
        "SELECT id, card, name, name_reading, birth_date FROM patron WHERE reading_key = %s AND birth_date = %s "
        "AND id IS DISTINCT FROM %s ORDER BY id",
        (reading_key(name_reading), birth_date, exclude_id)).fetchall()


_PATRON_SQL = """
    SELECT p.id, p.card, p.name, p.name_reading, p.birth_date, p.postal_code, p.address, p.phone, p.email,
           p.category, c.name AS category_name, c.name_en AS category_name_en, c.is_group, c.card_years,
           b.code AS branch, b.name AS branch_name, b.name_en AS branch_name_en, p.expires_on, p.notes,
           p.keep_history, p.contact_name, p.created_at, p.updated_at
    FROM patron p JOIN patron_category c ON c.code = p.category JOIN branch b ON b.id = p.home_branch_id"""


def load_patron(conn: DB, patron_id: int) -> DictRow:
    """The record without an audit row: for code that has just written it or audits on its own."""
    row = conn.execute(_PATRON_SQL + " WHERE p.id = %s", (patron_id,)).fetchone()
    if row is None:
        raise not_found("patron", str(patron_id))
    return row


def get_patron(conn: DB, actor: Actor, patron_id: int) -> DictRow:
    """A staff view of a patron record (利用者照会): audited as patron.view with the card as target."""
    with conn.transaction():
        row = load_patron(conn, patron_id)
        record(conn, actor, "patron.view", "patron", row["card"], {"id": patron_id})
    return row


def find_by_card(conn: DB, card: str) -> DictRow | None:
    """The patron with this card, for circulation's own use (not audited: the loan is the record)."""
    return conn.execute(_PATRON_SQL + " WHERE p.card = %s", (card,)).fetchone()


def classify_query(query: str) -> dict[str, str]:
    """Which look-ups a single search box query is used for, with the value for each: card (exact),
    phone (digits, exact), name (prefix) and reading (prefix of the folded reading, for kana queries)."""
    text = " ".join(unicodedata.normalize("NFKC", query or "").split())
    if not text:
        return {}
    kinds: dict[str, str] = {}
    card = nw7.strip_scanner_chars(text)
    if CARD_RE.match(card):
        kinds["card"] = card
    digits = re.sub(r"[^0-9]", "", text)
    if PHONE_RE.match(text) and len(digits) >= 5:
        kinds["phone"] = digits
    if not PHONE_RE.match(text):
        kinds["name"] = normalize_name(query)
        reading = normalize_reading(query)
        if READING_RE.match(reading) and reading_key(reading):
            kinds["reading"] = reading_key(reading)
    return kinds


_SEARCH_CLAUSES = {
    "card": "p.card = %(card)s",
    "phone": "p.phone_digits = %(phone)s",
    "name": "p.name LIKE %(name)s",
    "reading": "p.reading_key LIKE %(reading)s",
}


def search_patrons(conn: DB, actor: Actor, query: str, limit: int = 50, *,
                   only: tuple[str, ...] | None = None) -> PatronSearch:
    """利用者検索 by card number, name, reading or phone from one box; `only` restricts the kinds of
    look-up (e.g. ("card",)). Audited as patron.search with the hit count and the kinds, never the text."""
    kinds = classify_query(query)
    if only is not None:
        kinds = {k: v for k, v in kinds.items() if k in only}
    if not kinds:
        raise invalid("q", query, "利用者番号・氏名・ヨミ・電話番号のいずれかを入力してください。",
                      "enter a card number, name, reading or phone number")
    params: dict[str, Any] = {k: _like_prefix(v) if k in ("name", "reading") else v for k, v in kinds.items()}
    params["limit"] = limit + 1
    where = " OR ".join(_SEARCH_CLAUSES[k] for k in kinds)
    with conn.transaction():
        # prepare=False: LIKE with a known prefix uses the text_pattern_ops index only in a custom plan.
        rows = conn.execute(
            f"""SELECT p.id, p.card, p.name, p.name_reading, p.birth_date, p.category, c.name AS category_name,
                       c.name_en AS category_name_en, b.code AS branch, b.name AS branch_name,
                       b.name_en AS branch_name_en, p.expires_on
                FROM patron p JOIN patron_category c ON c.code = p.category
                JOIN branch b ON b.id = p.home_branch_id
                WHERE {where} ORDER BY p.reading_key, p.id LIMIT %(limit)s""", params, prepare=False).fetchall()
        truncated = len(rows) > limit
        rows = rows[:limit]
        record(conn, actor, "patron.search", "patron", "",
               {"hits": len(rows), "kinds": sorted(kinds), "truncated": truncated})
    return PatronSearch(tuple(rows), tuple(sorted(kinds)), truncated)


# -- registration and changes ------------------------------------------------------------------------

def register_patron(conn: DB, actor: Actor, new: NewPatron, *, allow_duplicate: bool = False,
                    today: date | None = None) -> int:
    """利用登録. Refuses a taken card (409 card_taken) and, unless `allow_duplicate`, a patron with the same
    reading and birth date as an existing one (409 possible_duplicate naming that card)."""
    today = today or date.today()
    name = clean_name(new.name)
    reading = clean_reading(new.name_reading)
    birth_date = clean_birth_date(new.birth_date, today)
    email = clean_email(new.email)
    phone = clean_phone(new.phone)
    postal_code = clean_postal_code(new.postal_code)
    address = _optional_text("address", new.address)
    notes = _optional_text("notes", new.notes)
    contact_name = clean_name(new.contact_name or "", "contact_name", required=False)
    if new.expires_on is not None and new.expires_on < today:
        raise invalid("expires_on", new.expires_on.isoformat(), "有効期限が過去の日付です。",
                      "the expiry date is in the past")
    try:
        with conn.transaction():
            category = _category(conn, new.category)
            branch_id = _branch_id(conn, new.branch)
            card = clean_card(conn, new.card, new.branch)
            if conn.execute("SELECT 1 FROM patron WHERE card = %s", (card,)).fetchone():
                raise _card_taken(card)
            duplicates = find_duplicates(conn, reading, birth_date)
            if duplicates and not allow_duplicate:
                first = duplicates[0]
                raise ShokaError(
                    "possible_duplicate",
                    f"name_reading: ヨミ「{reading}」・生年月日 {birth_date} の利用者が既に登録されています"
                    f"（利用者番号「{first['card']}」）。同じ人でないことを確かめてから登録してください。",
                    f"name_reading: a patron with the reading {reading!r} and birth date {birth_date} is already "
                    f"registered (card {first['card']!r}). Make sure it is not the same person.",
                    status=409, field="name_reading")
            expires_on = new.expires_on or add_years(today, int(category["card_years"]))
            row = conn.execute(
                """INSERT INTO patron (card, name, name_reading, reading_key, birth_date, postal_code, address, phone,
                                       email, category, home_branch_id, expires_on, notes, keep_history, contact_name)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (card, name, reading, reading_key(reading), birth_date, postal_code, address, phone, email,
                 category["code"], branch_id, expires_on, notes, new.keep_history, contact_name)).fetchone()
            assert row is not None
            record(conn, actor, "patron.create", "patron", card,
                   {"id": row["id"], "category": category["code"], "branch": new.branch,
                    "duplicate_override": bool(duplicates)})
            return int(row["id"])
    except psycopg.errors.UniqueViolation:
        # Two registrations of the same card at once: the unique index decides.
        raise _card_taken(nw7.strip_scanner_chars(new.card)) from None


def update_patron(conn: DB, actor: Actor, patron_id: int, changes: dict[str, Any], *,
                  today: date | None = None) -> None:
    """利用者情報の変更. Only the given fields change; None or '' clears an optional field. The audit row names
    the fields whose value changed (values only for category, branch, expiry and history consent); a save
    that changes nothing writes nothing."""
    today = today or date.today()
    unknown = set(changes) - EDITABLE
    if unknown:
        key = sorted(unknown)[0]
        raise invalid(key, changes[key], "この項目は変更できません。", "this field cannot be changed here")
    sets: dict[str, Any] = {}
    if "name" in changes:
        sets["name"] = clean_name(changes["name"] or "")
    if "name_reading" in changes:
        sets["name_reading"] = clean_reading(changes["name_reading"] or "")
        sets["reading_key"] = reading_key(sets["name_reading"])
    if "birth_date" in changes:
        sets["birth_date"] = clean_birth_date(changes["birth_date"], today)
    if "email" in changes:
        sets["email"] = clean_email(changes["email"])
    if "phone" in changes:
        sets["phone"] = clean_phone(changes["phone"])
    if "postal_code" in changes:
        sets["postal_code"] = clean_postal_code(changes["postal_code"])
    for key in ("address", "notes"):
        if key in changes:
            sets[key] = _optional_text(key, changes[key])
    if "contact_name" in changes:
        sets["contact_name"] = clean_name(changes["contact_name"] or "", "contact_name", required=False)
    if "keep_history" in changes:
        if not isinstance(changes["keep_history"], bool):
            raise invalid("keep_history", changes["keep_history"], "はい／いいえで指定してください。",
                          "must be true or false")
        sets["keep_history"] = changes["keep_history"]
    if "expires_on" in changes:
        if changes["expires_on"] is None:
            raise invalid("expires_on", None, "有効期限を入力してください。", "an expiry date is required")
        sets["expires_on"] = changes["expires_on"]
    try:
        with conn.transaction():
            current = conn.execute(
                "SELECT p.*, b.code AS branch FROM patron p JOIN branch b ON b.id = p.home_branch_id "
                "WHERE p.id = %s FOR UPDATE OF p", (patron_id,)).fetchone()
            if current is None:
                raise not_found("patron", str(patron_id))
            if "category" in changes:
                sets["category"] = _category(conn, changes["category"])["code"]
            if "branch" in changes:
                sets["home_branch_id"] = _branch_id(conn, changes["branch"])
            if "card" in changes and changes["card"] != current["card"]:
                card = clean_card(conn, changes["card"] or "", changes.get("branch") or current["branch"])
                if card != current["card"]:
                    if conn.execute("SELECT 1 FROM patron WHERE card = %s", (card,)).fetchone():
                        raise _card_taken(card)
                    sets["card"] = card
            sets = {k: v for k, v in sets.items() if current[k] != v}
            if not sets:
                return
            assignments = ", ".join(f"{k} = %({k})s" for k in sets)
            conn.execute(f"UPDATE patron SET {assignments}, updated_at = now() WHERE id = %(id)s",
                         {**sets, "id": patron_id})
            changed = sorted({"branch" if k == "home_branch_id" else k for k in sets} - {"reading_key"})
            details: dict[str, Any] = {"id": patron_id, "fields": changed}
            for key in sorted(NON_PERSONAL & set(changed)):
                value = changes[key]
                details[key] = value.isoformat() if isinstance(value, date) else value
            if "card" in sets:
                details["previous_card"] = current["card"]  # a reissued card (再発行): both stay traceable
            record(conn, actor, "patron.update", "patron", str(sets.get("card", current["card"])), details)
    except psycopg.errors.UniqueViolation:
        raise _card_taken(str(changes.get("card", ""))) from None


def renew_card(conn: DB, actor: Actor, patron_id: int, *, today: date | None = None) -> date:
    """有効期限の更新: the category's card_years added to the later of today and the current expiry."""
    today = today or date.today()
    with conn.transaction():
        row = conn.execute(
            "SELECT p.card, p.expires_on, c.card_years FROM patron p JOIN patron_category c ON c.code = p.category "
            "WHERE p.id = %s FOR UPDATE OF p", (patron_id,)).fetchone()
        if row is None:
            raise not_found("patron", str(patron_id))
        base = max(today, row["expires_on"] or today)
        expires_on = add_years(base, int(row["card_years"]))
        conn.execute("UPDATE patron SET expires_on = %s, updated_at = now() WHERE id = %s", (expires_on, patron_id))
        record(conn, actor, "patron.renew_card", "patron", row["card"],
               {"id": patron_id, "from": row["expires_on"].isoformat() if row["expires_on"] else None,
                "to": expires_on.isoformat()})
    return expires_on


# -- blocks and suspensions --------------------------------------------------------------------------

def _block(row: DictRow) -> Block:
    return Block(int(row["id"]), row["kind"], row["reason"], row["starts_on"], row["ends_on"], row["created_by"],
                 row["lifted_at"] is not None)


def add_block(conn: DB, actor: Actor, patron_id: int, kind: str, reason: str, ends_on: date | None = None,
              starts_on: date | None = None) -> int:
    """A manual block (貸出禁止, until lifted or `ends_on`) or a lending suspension (貸出停止, which needs
    an end date). Both apply from `starts_on` (default today) through `ends_on` inclusive."""
    starts_on = starts_on or date.today()
    if kind not in BLOCK_KINDS:
        raise invalid("kind", kind, "manual（貸出禁止）か suspension（貸出停止）です。",
                      "expected manual or suspension")
    reason = (reason or "").strip()
    if not reason:
        raise invalid("reason", reason, "理由を入力してください。", "a reason is required")
    _check_length("reason", reason)
    if kind == "suspension" and ends_on is None:
        raise invalid("ends_on", None, "貸出停止には終了日が必要です。", "a lending suspension needs an end date")
    if ends_on is not None and ends_on < starts_on:
        raise invalid("ends_on", ends_on.isoformat(), "終了日が開始日より前です。", "the end is before the start")
    with conn.transaction():
        patron = conn.execute("SELECT card FROM patron WHERE id = %s", (patron_id,)).fetchone()
        if patron is None:
            raise not_found("patron", str(patron_id))
        row = conn.execute(
            "INSERT INTO patron_block (patron_id, kind, reason, starts_on, ends_on, created_by) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (patron_id, kind, reason, starts_on, ends_on, actor.name)).fetchone()
        assert row is not None
        record(conn, actor, "patron.block_add", "patron", patron["card"],
               {"id": patron_id, "block_id": row["id"], "kind": kind, "starts_on": starts_on.isoformat(),
                "ends_on": ends_on.isoformat() if ends_on else None})
        return int(row["id"])


def lift_block(conn: DB, actor: Actor, block_id: int, *, patron_id: int | None = None) -> None:
    """解除: the block stays in the history with who lifted it and when. With `patron_id`, the block must
    belong to that patron (a URL naming another patron's block is refused as not found)."""
    with conn.transaction():
        row = conn.execute(
            "SELECT k.id, k.patron_id, k.lifted_at, p.card FROM patron_block k JOIN patron p ON p.id = k.patron_id "
            "WHERE k.id = %s FOR UPDATE OF k", (block_id,)).fetchone()
        if row is None or (patron_id is not None and row["patron_id"] != patron_id):
            raise not_found("block", str(block_id))
        if row["lifted_at"] is not None:
            raise ShokaError("block_lifted", "この貸出禁止・貸出停止は既に解除されています。",
                             "This block has already been lifted.", status=409)
        conn.execute("UPDATE patron_block SET lifted_at = now(), lifted_by = %s WHERE id = %s", (actor.name, block_id))
        record(conn, actor, "patron.block_lift", "patron", row["card"],
               {"id": row["patron_id"], "block_id": block_id})


def list_blocks(conn: DB, patron_id: int, *, include_lifted: bool = False) -> list[Block]:
    lifted = "" if include_lifted else "AND lifted_at IS NULL"
    rows = conn.execute(f"SELECT id, kind, reason, starts_on, ends_on, created_by, lifted_at FROM patron_block "
                        f"WHERE patron_id = %s {lifted} ORDER BY starts_on, id", (patron_id,)).fetchall()
    return [_block(r) for r in rows]


def standing(conn: DB, patron_id: int, today: date | None = None) -> Standing:
    """The patron's standing today: blocks and suspensions in force, card expiry, overdue and current loans."""
    today = today or date.today()
    row = conn.execute(
        """SELECT p.expires_on,
                  (SELECT count(*) FROM loan l WHERE l.patron_id = p.id AND l.returned_at IS NULL) AS current,
                  (SELECT count(*) FROM loan l WHERE l.patron_id = p.id AND l.returned_at IS NULL
                     AND l.due_date < %(t)s) AS overdue
           FROM patron p WHERE p.id = %(p)s""", {"p": patron_id, "t": today}).fetchone()
    if row is None:
        raise not_found("patron", str(patron_id))
    active = tuple(b for b in list_blocks(conn, patron_id) if b.active_on(today))
    ends = [b.ends_on for b in active if b.kind == "suspension" and b.ends_on is not None]
    expires_on = row["expires_on"]
    return Standing(active, max(ends) if ends else None, expires_on,
                    expires_on is not None and expires_on < today, int(row["overdue"]), int(row["current"]))


def current_loans(conn: DB, patron_id: int, today: date | None = None) -> list[CurrentLoan]:
    """The patron's loans not yet returned, oldest due date first (for a group: the 団体貸出 list)."""
    today = today or date.today()
    rows = conn.execute(
        """SELECT l.id, i.barcode, r.title, l.checked_out_at, l.due_date, l.renewals, l.due_date < %s AS overdue,
                  b.code AS branch
           FROM loan l JOIN item i ON i.id = l.item_id JOIN bib_record r ON r.id = i.record_id
           JOIN branch b ON b.id = l.branch_id
           WHERE l.patron_id = %s AND l.returned_at IS NULL ORDER BY l.due_date, l.id""",
        (today, patron_id)).fetchall()
    return [CurrentLoan(int(r["id"]), r["barcode"], r["title"], r["checked_out_at"], r["due_date"],
                        int(r["renewals"]), bool(r["overdue"]), r["branch"]) for r in rows]
