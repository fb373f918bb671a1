"""My Library (マイライブラリ): patron passwords, sign-in with lockout, sessions, and the patron's own settings.

The OPAC never reads these tables: it holds only the opaque session token (in the patron's cookie) and
asks the internal API (api/internal/routes.py), which calls the functions here. The token is stored
hashed (SHA-256) in patron_session, so a copy of the database cannot be used to take over a session.

Sessions end after 30 minutes without a request or 12 hours after sign-in, like staff console sessions.
Sign-in failures are counted per card; the fifth in a row locks the card for 15 minutes. Unknown cards,
cards without a password and wrong passwords all get the same answer. Every sign-in, failure, lockout,
password set or change is audited with the card as subject (the audit log is internal).
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.auth.passwords import hash_password, needs_rehash, verify_password
from api.errors import ShokaError, not_found
from api.patrons.service import load_patron, update_patron

DB = Connection[DictRow]

MIN_PASSWORD_LENGTH = 8
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX_AGE = timedelta(hours=12)
_TOUCH_EVERY = timedelta(minutes=1)
_MAX_PASSWORD = 256  # argon2 hashes anything; this only bounds the work a request can cause

BAD_CREDENTIALS = ShokaError(
    "invalid_credentials", "利用者番号またはパスワードが違います。", "Wrong card number or password.",
    status=401, field="card")
NOT_SIGNED_IN = ShokaError("unauthenticated", "ログインしてください。", "Please sign in.", status=401)
SESSION_EXPIRED = ShokaError(
    "session_expired", "一定時間操作がなかったため、ログアウトしました。もう一度ログインしてください。",
    "You were signed out after a period without activity. Please sign in again.", status=401)


def _locked(until: datetime) -> ShokaError:
    local = until.astimezone().strftime("%H:%M")
    return ShokaError(
        "account_locked",
        f"ログインの失敗が続いたため、{local} までログインできません。"
        "お急ぎの場合は図書館のカウンターへお越しください。",
        f"Too many failed sign-ins: please try again after {local}, or ask at the library counter.", status=423)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def clean_card(card: str) -> str:
    """The card as typed on a phone: full-width digits and letters folded (NFKC), spaces dropped."""
    return "".join(unicodedata.normalize("NFKC", card or "").split())[:64]


def patron_actor(card: str, client_addr: str) -> Actor:
    """Who acts in the audit log when a patron does something in My Library."""
    return Actor(name=f"patron:{card}", client_addr=client_addr)


def _check_new_password(password: str, field: str = "password") -> str:
    if len(password) > _MAX_PASSWORD:
        raise ShokaError("password_too_long", f"パスワードは{_MAX_PASSWORD}文字以内にしてください。",
                         f"The password must have at most {_MAX_PASSWORD} characters.", status=422, field=field)
    try:
        return hash_password(password, MIN_PASSWORD_LENGTH)
    except ShokaError as exc:
        exc.field = field
        raise


# -- staff: setting a password at the counter -------------------------------------------------------

def set_password(conn: DB, actor: Actor, patron_id: int, password: str) -> None:
    """パスワード設定: staff set or reset a patron's My Library password at the counter. Unlocks the card and
    ends the patron's open sessions."""
    password_hash = _check_new_password(password)
    with conn.transaction():
        row = conn.execute("UPDATE patron SET password_hash = %s, password_changed_at = now(), failed_logins = 0, "
                           "locked_until = NULL WHERE id = %s RETURNING card", (password_hash, patron_id)).fetchone()
        if row is None:
            raise not_found("patron", str(patron_id))
        conn.execute("DELETE FROM patron_session WHERE patron_id = %s", (patron_id,))
        record(conn, actor, "patron.password_set", "patron", row["card"], {"id": patron_id})


# -- sign-in and sessions -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PatronLogin:
    token: str          # the opaque session token: only the OPAC's cookie holds it
    patron_id: int
    expires_at: datetime


def login(conn: DB, card: str, password: str, client_addr: str) -> PatronLogin:
    """Check card + password; count failures and lock after MAX_FAILED_LOGINS. The failure count and
    the audit row are committed even when the sign-in is refused."""
    now = datetime.now(UTC)
    card = clean_card(card)
    error: ShokaError | None = None
    with conn.transaction():
        patron = conn.execute("SELECT id, card, password_hash, failed_logins, locked_until FROM patron "
                              "WHERE card = %s FOR UPDATE", (card,)).fetchone() if card else None
        # Verified even for an unknown card, so the answer takes as long either way.
        ok = verify_password(patron["password_hash"] if patron else None, password[:_MAX_PASSWORD])
        actor = patron_actor(card or "-", client_addr)
        if patron is None:
            record(conn, actor, "mylibrary.login_failed", "patron", card or "-", {"reason": "unknown_card"})
            error = BAD_CREDENTIALS
        elif patron["locked_until"] and patron["locked_until"] > now:
            record(conn, actor, "mylibrary.login_failed", "patron", card, {"reason": "locked"})
            error = _locked(patron["locked_until"])
        elif not ok:
            failures = patron["failed_logins"] + 1
            locked_until = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
            conn.execute("UPDATE patron SET failed_logins = %s, locked_until = %s WHERE id = %s",
                         (0 if locked_until else failures, locked_until, patron["id"]))
            reason = "no_password" if patron["password_hash"] is None else "wrong_password"
            record(conn, actor, "mylibrary.login_failed", "patron", card, {"reason": reason, "failures": failures})
            if locked_until:
                record(conn, actor, "mylibrary.locked", "patron", card,
                       {"until": locked_until.isoformat(), "failures": failures})
                error = _locked(locked_until)
            else:
                error = BAD_CREDENTIALS
        else:
            stored = patron["password_hash"]
            new_hash = hash_password(password, MIN_PASSWORD_LENGTH) if needs_rehash(stored) else stored
            conn.execute("UPDATE patron SET failed_logins = 0, locked_until = NULL, last_login_at = %s, "
                         "password_hash = %s WHERE id = %s", (now, new_hash, patron["id"]))
            token = secrets.token_urlsafe(32)
            expires = now + SESSION_MAX_AGE
            conn.execute("DELETE FROM patron_session WHERE expires_at < %s OR last_seen_at < %s",
                         (now, now - SESSION_IDLE))
            conn.execute("INSERT INTO patron_session (token_hash, patron_id, created_at, last_seen_at, expires_at) "
                         "VALUES (%s, %s, %s, %s, %s)", (token_hash(token), patron["id"], now, now, expires))
            record(conn, actor, "mylibrary.login", "patron", card, {"id": patron["id"]})
            return PatronLogin(token, int(patron["id"]), expires)
    assert error is not None
    raise error


@dataclass(frozen=True)
class SessionPatron:
    patron_id: int
    card: str


def resolve_session(conn: DB, token: str, now: datetime | None = None) -> SessionPatron:
    """The patron behind a session token. Idle or too old: the session is deleted and 401 session_expired."""
    now = now or datetime.now(UTC)
    if not token:
        raise NOT_SIGNED_IN
    key = token_hash(token)
    with conn.transaction():
        row = conn.execute("SELECT s.patron_id, s.last_seen_at, s.expires_at, p.card FROM patron_session s "
                           "JOIN patron p ON p.id = s.patron_id WHERE s.token_hash = %s", (key,)).fetchone()
        if row is None:
            raise NOT_SIGNED_IN
        expired = row["expires_at"] < now or row["last_seen_at"] + SESSION_IDLE < now
        if expired:
            conn.execute("DELETE FROM patron_session WHERE token_hash = %s", (key,))
        elif now - row["last_seen_at"] > _TOUCH_EVERY:
            conn.execute("UPDATE patron_session SET last_seen_at = %s WHERE token_hash = %s", (now, key))
    if expired:  # raised after the commit, so the deletion stays
        raise SESSION_EXPIRED
    return SessionPatron(int(row["patron_id"]), row["card"])


def logout(conn: DB, token: str, client_addr: str) -> None:
    """End one session (a token already gone is fine: signing out twice is not an error)."""
    with conn.transaction():
        row = conn.execute("DELETE FROM patron_session s USING patron p WHERE s.token_hash = %s "
                           "AND p.id = s.patron_id RETURNING p.card, p.id", (token_hash(token),)).fetchone()
        if row is not None:
            record(conn, patron_actor(row["card"], client_addr), "mylibrary.logout", "patron", row["card"],
                   {"id": row["id"]})


# -- the patron's own settings ------------------------------------------------------------------------

def change_password(conn: DB, patron_id: int, current: str, new: str, client_addr: str, *,
                    keep_token: str | None = None) -> None:
    """パスワード変更 by the patron: needs the current one (a wrong one counts as a failed sign-in). Other
    sessions end; the one in `keep_token` stays."""
    new_hash = _check_new_password(new, "new_password")
    now = datetime.now(UTC)
    error: ShokaError | None = None
    with conn.transaction():
        row = conn.execute("SELECT card, password_hash, failed_logins FROM patron WHERE id = %s FOR UPDATE",
                           (patron_id,)).fetchone()
        if row is None:
            raise not_found("patron", str(patron_id))
        actor = patron_actor(row["card"], client_addr)
        if not verify_password(row["password_hash"], current[:_MAX_PASSWORD]):
            failures = row["failed_logins"] + 1
            locked_until = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
            conn.execute("UPDATE patron SET failed_logins = %s, locked_until = %s WHERE id = %s",
                         (0 if locked_until else failures, locked_until, patron_id))
            record(conn, actor, "mylibrary.password_change_failed", "patron", row["card"], {"failures": failures})
            if locked_until:
                # Someone guessing from an open session: lock the card and end every session.
                conn.execute("DELETE FROM patron_session WHERE patron_id = %s", (patron_id,))
                record(conn, actor, "mylibrary.locked", "patron", row["card"],
                       {"until": locked_until.isoformat(), "failures": failures})
            error = ShokaError("wrong_current_password", "現在のパスワードが違います。",
                               "The current password is wrong.", status=422, field="current_password")
        else:
            conn.execute("UPDATE patron SET password_hash = %s, password_changed_at = now(), failed_logins = 0 "
                         "WHERE id = %s", (new_hash, patron_id))
            keep = token_hash(keep_token) if keep_token else b""
            conn.execute("DELETE FROM patron_session WHERE patron_id = %s AND token_hash <> %s", (patron_id, keep))
            record(conn, actor, "mylibrary.password_change", "patron", row["card"], {"id": patron_id})
    if error is not None:
        raise error


def update_settings(conn: DB, actor: Actor, patron_id: int, *, email: str | None = None,
                    keep_history: bool | None = None, clear_email: bool = False) -> None:
    """メールアドレス・読書記録の設定, through the patrons domain (its validation and its audit row)."""
    changes: dict[str, Any] = {}
    if email is not None or clear_email:
        changes["email"] = None if clear_email else email
    if keep_history is not None:
        changes["keep_history"] = keep_history
    if changes:
        update_patron(conn, actor, patron_id, changes)


def profile(conn: DB, patron_id: int) -> dict[str, Any]:
    """What My Library shows about the patron: name for the greeting, email, consent, home branch, counts."""
    patron = load_patron(conn, patron_id)
    counts = conn.execute(
        """SELECT (SELECT count(*) FROM loan WHERE patron_id = %(p)s AND returned_at IS NULL) AS loans,
                  (SELECT count(*) FROM loan WHERE patron_id = %(p)s AND returned_at IS NULL
                     AND due_date < current_date) AS overdue,
                  (SELECT count(*) FROM hold WHERE patron_id = %(p)s
                     AND status IN ('placed', 'in_transit', 'on_shelf', 'in_locker')) AS holds,
                  (SELECT count(*) FROM hold WHERE patron_id = %(p)s AND status IN ('on_shelf', 'in_locker')) AS ready
        """, {"p": patron_id}).fetchone()
    assert counts is not None
    return {"name": patron["name"], "email": patron["email"], "keep_history": bool(patron["keep_history"]),
            "home_branch": patron["branch"], "expires_on": patron["expires_on"],
            "counts": {k: int(counts[k]) for k in ("loans", "overdue", "holds", "ready")}}


def history(conn: DB, patron_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """読書記録: returned loans kept because the patron consented (keep_history); newest first.
    Without consent there is none to show: the nightly job removes the patron from returned loans."""
    rows = conn.execute(
        """SELECT l.id, r.id AS record_id, r.title, l.checked_out_at, l.returned_at, b.code AS branch
           FROM loan l JOIN patron p ON p.id = l.patron_id AND p.keep_history
           JOIN item i ON i.id = l.item_id JOIN bib_record r ON r.id = i.record_id
           JOIN branch b ON b.id = l.branch_id
           WHERE l.patron_id = %s AND l.returned_at IS NOT NULL
           ORDER BY l.returned_at DESC, l.id DESC LIMIT %s""", (patron_id, limit)).fetchall()
    return [dict(r) for r in rows]


def login_status(conn: DB, patron_id: int) -> dict[str, Any]:
    """For the staff record page: whether a password is set, when it changed, the last sign-in, any lockout."""
    row = conn.execute("SELECT password_hash IS NOT NULL AS has_password, password_changed_at, last_login_at, "
                       "CASE WHEN locked_until > now() THEN locked_until END AS locked_until FROM patron "
                       "WHERE id = %s", (patron_id,)).fetchone()
    if row is None:
        raise not_found("patron", str(patron_id))
    return dict(row)
