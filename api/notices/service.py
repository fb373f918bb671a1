"""通知メール: notices queued in the caller's transaction, sent by a worker exactly once.

A notice is a row in `notice`, unique by its dedupe key, so asking twice for the same notice is
harmless. The sender claims one row at a time (pending → sending, committed) before talking to the
mail server and records the outcome after, so a retried or concurrent job never sends a row twice.
A row still 'sending' after SENDING_LEASE belonged to a worker that died mid-send: whether the mail
went out is unknown, so it is marked failed (送信結果不明) for staff to decide, never resent by itself.

Template data per kind (dates as `date` or ISO strings; never a card number or an address):

| kind | required | optional |
|---|---|---|
| hold_ready, pickup_reminder | title, branch, deadline | branch_en |
| due_reminder | title, due_date | branch, branch_en |
| overdue | title, due_date, days_overdue | branch, branch_en |
| locker_code | title, locker_bank, compartment, unlock_code, deadline | locker_location, due_date, branch, branch_en |
| request_decided | title, decision (ordering/borrowing/arrived/declined), reason when declined | branch, branch_en |

Every kind also takes `lang` ("ja" by default, or "en").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from psycopg import Connection
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.audit import Actor, record
from api.errors import ShokaError, invalid, not_found
from api.notices.mailer import Mailer, MailError, classify

DB = Connection[DictRow]
log = logging.getLogger("shoka.notices")

KINDS = ("hold_ready", "pickup_reminder", "due_reminder", "overdue", "locker_code", "request_decided")
STATUSES = ("pending", "sending", "sent", "failed", "skipped")
LANGS = ("ja", "en")
DECISIONS = ("ordering", "borrowing", "arrived", "declined")
MAX_ATTEMPTS = 8
SENDING_LEASE = timedelta(minutes=15)
UNKNOWN_OUTCOME = "送信結果不明: 送信中に処理が止まりました。届いたかどうかを確認してから再送してください。"
NO_ADDRESS = "メールアドレスが登録されていません (no email address)"
JST = ZoneInfo("Asia/Tokyo")
TEMPLATE_DIR = Path(__file__).parent / "templates"

REQUIRED: dict[str, tuple[str, ...]] = {
    "hold_ready": ("title", "branch", "deadline"),
    "pickup_reminder": ("title", "branch", "deadline"),
    "due_reminder": ("title", "due_date"),
    "overdue": ("title", "due_date", "days_overdue"),
    "locker_code": ("title", "locker_bank", "compartment", "unlock_code", "deadline"),
    "request_decided": ("title", "decision"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "hold_ready": ("branch_en",),
    "pickup_reminder": ("branch_en",),
    "due_reminder": ("branch", "branch_en"),
    "overdue": ("branch", "branch_en"),
    "locker_code": ("locker_location", "due_date", "branch", "branch_en"),
    "request_decided": ("reason", "branch", "branch_en"),
}
# Personal data that has no place in a notice row or a mail.
FORBIDDEN_KEYS = ("card", "email", "address", "phone", "birth_date", "password")


@dataclass(frozen=True)
class RenderedNotice:
    subject: str
    body: str


@dataclass(frozen=True)
class SendReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0


# -- pure: data, templates, messages, backoff ------------------------------------------------------

WEEKDAYS_JA = "月火水木金土日"
WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def day_ja(value: object) -> str:
    """2026-04-03 → 2026年4月3日（金）"""
    d = _as_date(value)
    return f"{d.year}年{d.month}月{d.day}日（{WEEKDAYS_JA[d.weekday()]}）"


def day_en(value: object) -> str:
    """2026-04-03 → Friday 3 April 2026"""
    d = _as_date(value)
    return f"{WEEKDAYS_EN[d.weekday()]} {d.day} {MONTHS_EN[d.month - 1]} {d.year}"


def _environment(day: Callable[[object], str]) -> jinja2.Environment:
    # Plain-text mail, not HTML: escaping would put &amp; into titles.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=False,  # noqa: S701
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["day"] = day
    return env


_ENVS = {"ja": _environment(day_ja), "en": _environment(day_en)}


def clean_data(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The template variables as stored: checked against the kind, dates as ISO strings (pure)."""
    if kind not in KINDS:
        raise invalid("kind", kind, f"通知の種類は {', '.join(KINDS)} のいずれかです。",
                      f"use one of {', '.join(KINDS)}")
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        if key in FORBIDDEN_KEYS:
            raise invalid(f"data.{key}", key, "通知に利用者番号・連絡先などの個人情報は入れません。",
                          "a notice carries no card number, address or other contact details")
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif not isinstance(value, str | int | float | bool) and value is not None:
            raise invalid(f"data.{key}", value, "文字列・数値・日付で指定してください。",
                          "use a string, number or date")
        cleaned[key] = value
    missing = [k for k in REQUIRED[kind] if cleaned.get(k) in (None, "")]
    if missing:
        raise invalid(f"data.{missing[0]}", None, f"{kind} の通知には {', '.join(missing)} が必要です。",
                      f"a {kind} notice needs {', '.join(missing)}")
    if cleaned.setdefault("lang", "ja") not in LANGS:
        raise invalid("data.lang", cleaned["lang"], "言語は ja または en です。", "use ja or en")
    if kind == "request_decided":
        if cleaned["decision"] not in DECISIONS:
            raise invalid("data.decision", cleaned["decision"], f"{', '.join(DECISIONS)} のいずれかです。",
                          f"use one of {', '.join(DECISIONS)}")
        if cleaned["decision"] == "declined" and not cleaned.get("reason"):
            raise invalid("data.reason", None, "お断りする場合は理由が必要です。", "a declined request needs a reason")
    for key in ("deadline", "due_date"):
        if cleaned.get(key) is not None:
            try:
                _as_date(cleaned[key])
            except ValueError:
                raise invalid(f"data.{key}", cleaned[key], "日付は 2026-04-01 の形です。", "use the form 2026-04-01") \
                    from None
    return cleaned


def render_notice(kind: str, data: Mapping[str, Any], *, patron_name: str, library_name: str) -> RenderedNotice:
    """Subject (the template's first line) and body, in the notice's language (pure)."""
    lang = data.get("lang") if data.get("lang") in LANGS else "ja"
    context = {**{k: None for k in OPTIONAL[kind]}, **data, "patron_name": patron_name,
               "library_name": library_name}
    text = _ENVS[str(lang)].get_template(f"{kind}.{lang}.txt").render(context)
    subject, _, body = text.partition("\n")
    return RenderedNotice(" ".join(subject.split()), body.strip("\n") + "\n")


def message_id_for(notice_id: int, mail_from: str) -> str:
    """The same Message-ID every time a notice is sent, so a resend can be recognised (pure)."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "shoka.invalid"
    return f"<notice-{notice_id}.shoka@{domain}>"


def build_message(rendered: RenderedNotice, *, to_name: str, to_addr: str, mail_from: str, message_id: str,
                  sent_at: datetime) -> EmailMessage:
    """A UTF-8 message; Japanese headers are encoded (RFC 2047) when the message is written out (pure)."""
    msg = EmailMessage()
    msg["Subject"] = rendered.subject
    msg["From"] = mail_from
    msg["To"] = Address(display_name=to_name, addr_spec=to_addr.strip())
    msg["Date"] = format_datetime(sent_at.astimezone(JST))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg.set_content(rendered.body, charset="utf-8")
    return msg


def backoff(attempts: int) -> timedelta | None:
    """Wait before the next try after `attempts` temporary failures: 1, 2, 4 ... 64 minutes; None after
    MAX_ATTEMPTS (give up) (pure)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return timedelta(minutes=2 ** (max(attempts, 1) - 1))


def outdated(kind: str, data: Mapping[str, Any], today: date) -> str | None:
    """Why a reminder no longer makes sense (its date has passed), e.g. after mail was off for days (pure)."""
    if kind in ("hold_ready", "pickup_reminder", "locker_code") and _as_date(data["deadline"]) < today:
        return f"受取期限（{data['deadline']}）を過ぎたため送信しませんでした (pickup deadline passed)"
    if kind == "due_reminder" and _as_date(data["due_date"]) < today:
        return f"返却期限（{data['due_date']}）を過ぎたため送信しませんでした (due date passed)"
    return None


# -- queueing, in the caller's transaction ---------------------------------------------------------

def queue_notice(conn: DB, kind: str, patron_id: int, dedupe_key: str, data: Mapping[str, Any]) -> int | None:
    """Queue a notice in the caller's transaction (so it exists exactly when the event does). Returns its
    id, or None when a notice with this dedupe key already exists. The template is rendered once here,
    so a missing variable fails the caller now rather than the worker later."""
    if conn.info.transaction_status == TransactionStatus.IDLE:
        raise RuntimeError("queue_notice must run inside the transaction of the event it announces")
    if not dedupe_key or len(dedupe_key) > 200:
        raise invalid("dedupe_key", dedupe_key, "1〜200文字で指定してください。", "use 1 to 200 characters")
    cleaned = clean_data(kind, data)
    try:
        render_notice(kind, cleaned, patron_name="-", library_name="-")
    except (jinja2.TemplateError, ValueError, TypeError) as exc:
        raise ShokaError("notice_data_invalid", f"{kind} の通知を作れません: {exc}",
                         f"Cannot build the {kind} notice: {exc}", status=422, field="data") from exc
    row = conn.execute(
        """INSERT INTO notice (kind, patron_id, dedupe_key, data) VALUES (%s, %s, %s, %s)
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id""",
        (kind, patron_id, dedupe_key, Jsonb(cleaned))).fetchone()
    return int(row["id"]) if row else None


def queue_reminders(conn: DB, *, today: date | None = None) -> dict[str, int]:
    """Daily: due-date reminders (due tomorrow or the day after), overdue notices (one per loan per week
    of lateness) and pickup reminders (hold shelf deadline today or tomorrow). Only patrons with an
    email address; keys already queued are left alone, so a second run the same day adds nothing."""
    today = today or datetime.now(JST).date()
    queued = {"due_reminder": 0, "overdue": 0, "pickup_reminder": 0}
    loans = """SELECT l.id, l.patron_id, l.due_date, r.title, b.name AS branch, b.name_en AS branch_en,
                      %(today)s - l.due_date AS days_overdue
               FROM loan l JOIN patron p ON p.id = l.patron_id JOIN item i ON i.id = l.item_id
               JOIN bib_record r ON r.id = i.record_id JOIN branch b ON b.id = l.branch_id
               WHERE l.returned_at IS NULL AND coalesce(p.email, '') <> '' AND {where}
                 AND NOT EXISTS (SELECT 1 FROM notice n WHERE n.dedupe_key = {key})
               ORDER BY l.id"""
    due_key = "'due_reminder:' || l.id || ':' || to_char(l.due_date, 'YYYY-MM-DD')"
    overdue_key = "'overdue:' || l.id || ':' || ((%(today)s - l.due_date - 1) / 7)"
    with conn.transaction():
        for row in conn.execute(loans.format(where="l.due_date BETWEEN %(today)s + 1 AND %(today)s + 2",
                                             key=due_key), {"today": today}).fetchall():
            if queue_notice(conn, "due_reminder", row["patron_id"],
                            f"due_reminder:{row['id']}:{row['due_date'].isoformat()}",
                            {"title": row["title"], "due_date": row["due_date"], "branch": row["branch"],
                             "branch_en": row["branch_en"]}):
                queued["due_reminder"] += 1
    with conn.transaction():
        for row in conn.execute(loans.format(where="l.due_date < %(today)s", key=overdue_key),
                                {"today": today}).fetchall():
            week = (row["days_overdue"] - 1) // 7
            if queue_notice(conn, "overdue", row["patron_id"], f"overdue:{row['id']}:{week}",
                            {"title": row["title"], "due_date": row["due_date"], "days_overdue": row["days_overdue"],
                             "branch": row["branch"], "branch_en": row["branch_en"]}):
                queued["overdue"] += 1
    with conn.transaction():
        for row in conn.execute(
                """SELECT h.id, h.patron_id, h.pickup_deadline, r.title, b.name AS branch, b.name_en AS branch_en
                   FROM hold h JOIN patron p ON p.id = h.patron_id JOIN bib_record r ON r.id = h.record_id
                   JOIN branch b ON b.id = h.pickup_branch_id
                   WHERE h.status IN ('on_shelf', 'in_locker') AND coalesce(p.email, '') <> ''
                     AND h.pickup_deadline BETWEEN %(today)s AND %(today)s + 1
                     AND NOT EXISTS (SELECT 1 FROM notice n WHERE n.dedupe_key = 'pickup_reminder:' || h.id)
                   ORDER BY h.id""", {"today": today}).fetchall():
            if queue_notice(conn, "pickup_reminder", row["patron_id"], f"pickup_reminder:{row['id']}",
                            {"title": row["title"], "branch": row["branch"], "branch_en": row["branch_en"],
                             "deadline": row["pickup_deadline"]}):
                queued["pickup_reminder"] += 1
    return queued


# -- sending ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Claim:
    notice_id: int
    attempts: int
    message: EmailMessage


def _claim(conn: DB, now: datetime, *, library_name: str, mail_from: str) -> _Claim | str | None:
    """Take the next due notice: 'sending' (committed) with its message, 'skipped' when there is nothing
    to send, 'failed' when it cannot be built, None when no notice is due."""
    with conn.transaction():
        row = conn.execute(
            """SELECT n.id, n.kind, n.data, n.attempts, n.message_id, p.name, p.email
               FROM notice n JOIN patron p ON p.id = n.patron_id
               WHERE n.status = 'pending' AND n.next_attempt_at <= %s
               ORDER BY n.next_attempt_at, n.id LIMIT 1 FOR UPDATE OF n SKIP LOCKED""", (now,)).fetchone()
        if row is None:
            return None
        notice_id = int(row["id"])
        email = (row["email"] or "").strip()
        reason = NO_ADDRESS if not email else outdated(row["kind"], row["data"], now.astimezone(JST).date())
        if reason:
            conn.execute("UPDATE notice SET status = 'skipped', last_error = %s WHERE id = %s", (reason, notice_id))
            return "skipped"
        message_id = row["message_id"] or message_id_for(notice_id, mail_from)
        try:
            rendered = render_notice(row["kind"], row["data"], patron_name=row["name"], library_name=library_name)
            message = build_message(rendered, to_name=row["name"], to_addr=email, mail_from=mail_from,
                                    message_id=message_id, sent_at=now)
        except (jinja2.TemplateError, ValueError, TypeError, IndexError, MessageError) as exc:
            conn.execute("UPDATE notice SET status = 'failed', attempts = attempts + 1, last_error = %s WHERE id = %s",
                         (f"メールを作成できません (cannot build the message): {exc}", notice_id))
            return "failed"
        conn.execute(
            """UPDATE notice SET status = 'sending', attempts = attempts + 1, next_attempt_at = %s, message_id = %s
               WHERE id = %s""", (now + SENDING_LEASE, message_id, notice_id))
    return _Claim(notice_id, int(row["attempts"]) + 1, message)


def send_due(conn: DB, mailer: Mailer, *, library_name: str, mail_from: str, now: datetime | None = None,
             batch: int = 50) -> SendReport:
    """Send up to `batch` due notices, one claim at a time. `now` (for tests) fixes the clock."""
    def clock() -> datetime:
        return now or datetime.now(UTC)

    sent = failed = retried = skipped = 0
    with conn.transaction():
        stale = conn.execute(
            """UPDATE notice SET status = 'failed', last_error = %s
               WHERE status = 'sending' AND next_attempt_at <= %s RETURNING id""",
            (UNKNOWN_OUTCOME, clock())).fetchall()
    for row in stale:
        log.warning("notice %s was left 'sending' by a stopped worker: marked failed (outcome unknown)", row["id"])
    failed += len(stale)
    for _ in range(batch):
        claim = _claim(conn, clock(), library_name=library_name, mail_from=mail_from)
        if claim is None:
            break
        if claim == "skipped":
            skipped += 1
            continue
        if claim == "failed":
            failed += 1
            continue
        assert isinstance(claim, _Claim)
        try:
            mailer.send(claim.message)
        except Exception as exc:  # any failure to hand over the message is recorded on the row
            error = exc if isinstance(exc, MailError) else classify(exc)
            wait = None if error.permanent else backoff(claim.attempts)
            with conn.transaction():
                if wait is None:
                    conn.execute("UPDATE notice SET status = 'failed', last_error = %s WHERE id = %s",
                                 (error.reply[:2000], claim.notice_id))
                else:
                    conn.execute("""UPDATE notice SET status = 'pending', last_error = %s, next_attempt_at = %s
                                    WHERE id = %s""", (error.reply[:2000], clock() + wait, claim.notice_id))
            if wait is None:
                failed += 1
            else:
                retried += 1
            log.warning("notice %s not sent (attempt %d): %s", claim.notice_id, claim.attempts, error.reply)
            if error.server_problem:
                break  # the next notice would meet the same server; the rest stay pending as they are
            continue
        with conn.transaction():
            conn.execute("UPDATE notice SET status = 'sent', sent_at = %s, last_error = NULL WHERE id = %s",
                         (clock(), claim.notice_id))
        sent += 1
    return SendReport(sent, failed, retried, skipped)


# -- staff -----------------------------------------------------------------------------------------

def retry(conn: DB, actor: Actor, notice_id: int) -> None:
    """再送: a failed (or skipped) notice goes back to pending now, with a fresh set of attempts.
    Audited as notice.retry on the patron."""
    with conn.transaction():
        row = conn.execute(
            """SELECT n.id, n.kind, n.status, n.attempts, n.last_error, p.card
               FROM notice n JOIN patron p ON p.id = n.patron_id WHERE n.id = %s FOR UPDATE OF n""",
            (notice_id,)).fetchone()
        if row is None:
            raise not_found("notice", str(notice_id))
        if row["status"] not in ("failed", "skipped"):
            raise ShokaError("notice_not_retryable",
                             f"通知 {notice_id} は状態が「{row['status']}」のため再送できません。"
                             "再送できるのは送信失敗・送信対象外の通知だけです。",
                             f"Notice {notice_id} is {row['status']!r}: only failed or skipped notices can be "
                             "sent again.", status=409)
        conn.execute("UPDATE notice SET status = 'pending', attempts = 0, next_attempt_at = now() WHERE id = %s",
                     (notice_id,))
        record(conn, actor, "notice.retry", "patron", row["card"],
               {"notice": notice_id, "kind": row["kind"], "previous_status": row["status"],
                "attempts": row["attempts"], "last_error": row["last_error"]})


def list_notices(conn: DB, actor: Actor, *, status: str | None = None, limit: int = 100) -> list[DictRow]:
    """Newest first, with the patron's card (a view of personal data: audited as notice.list)."""
    if status is not None and status not in STATUSES:
        raise invalid("status", status, f"{', '.join(STATUSES)} のいずれかです。", f"use one of {', '.join(STATUSES)}")
    with conn.transaction():
        rows = conn.execute(
            """SELECT n.id, n.kind, n.status, n.attempts, n.last_error, n.created_at, n.sent_at, n.next_attempt_at,
                      n.patron_id, p.card
               FROM notice n JOIN patron p ON p.id = n.patron_id
               WHERE %(status)s::text IS NULL OR n.status = %(status)s
               ORDER BY n.id DESC LIMIT %(limit)s""", {"status": status, "limit": limit}).fetchall()
        record(conn, actor, "notice.list", "notice", "", {"status": status or "", "rows": len(rows)})
    return rows
