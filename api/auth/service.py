"""Staff authentication, sessions and account administration.

Every function that changes something runs in one explicit transaction together with its audit
row, so either both happen or neither does.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.auth.passwords import hash_password, needs_rehash, verify_password
from api.auth.permissions import ACTIONS, AREAS, Permission, Principal
from api.errors import ShokaError, invalid, not_found

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
CONSOLE_IDLE = timedelta(minutes=30)
CONSOLE_MAX_AGE = timedelta(hours=12)
API_TOKEN_AGE = timedelta(hours=8)
_TOUCH_EVERY = timedelta(minutes=1)
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

BAD_CREDENTIALS = ShokaError(
    "invalid_credentials", "ユーザーIDまたはパスワードが違います。", "Wrong user ID or password.", status=401)


def _locked_error(until: datetime) -> ShokaError:
    local = until.astimezone().strftime("%H:%M")
    return ShokaError(
        "account_locked",
        f"ログインの失敗が続いたため、このアカウントは {local} までロックされています。"
        "管理者に解除を依頼することもできます。",
        f"Too many failed logins: this account is locked until {local}. An administrator can unlock it.",
        status=423)


def _as_account(acct: DictRow, client_addr: str) -> Actor:
    return Actor(name=acct["username"], client_addr=client_addr, account_id=acct["id"])


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# -- login, sessions, tokens -------------------------------------------------------------------

def authenticate(conn: Connection[DictRow], username: str, password: str, client_addr: str) -> int:
    """Check a password; count failures and lock after MAX_FAILED_LOGINS. Returns the account id.

    The failure count and the audit row are committed even when the login is refused.
    """
    now = datetime.now(UTC)
    error: ShokaError | None = None
    with conn.transaction():
        acct = conn.execute(
            "SELECT id, username, password_hash, active, failed_logins, locked_until "
            "FROM staff_account WHERE lower(username) = lower(%s) FOR UPDATE", (username,)).fetchone()
        ok = verify_password(acct["password_hash"] if acct else None, password)
        anonymous = Actor(name=username[:64] or "-", client_addr=client_addr)
        if acct is None:
            record(conn, anonymous, "auth.login_failed", "staff", username[:64], {"reason": "unknown_user"})
            error = BAD_CREDENTIALS
        elif acct["locked_until"] and acct["locked_until"] > now:
            record(conn, _as_account(acct, client_addr), "auth.login_failed", "staff", acct["username"],
                   {"reason": "locked"})
            error = _locked_error(acct["locked_until"])
        elif not ok:
            failures = acct["failed_logins"] + 1
            locked_until = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
            conn.execute("UPDATE staff_account SET failed_logins = %s, locked_until = %s WHERE id = %s",
                         (0 if locked_until else failures, locked_until, acct["id"]))
            actor = _as_account(acct, client_addr)
            record(conn, actor, "auth.login_failed", "staff", acct["username"],
                   {"reason": "wrong_password", "failures": failures})
            if locked_until:
                record(conn, actor, "auth.locked", "staff", acct["username"],
                       {"until": locked_until.isoformat(), "failures": failures})
                error = _locked_error(locked_until)
            else:
                error = BAD_CREDENTIALS
        elif not acct["active"]:
            record(conn, _as_account(acct, client_addr), "auth.login_failed", "staff", acct["username"],
                   {"reason": "inactive"})
            error = BAD_CREDENTIALS
        else:
            new_hash = hash_password(password) if needs_rehash(acct["password_hash"]) else acct["password_hash"]
            conn.execute("UPDATE staff_account SET failed_logins = 0, locked_until = NULL, last_login_at = %s, "
                         "password_hash = %s WHERE id = %s", (now, new_hash, acct["id"]))
            return int(acct["id"])
    assert error is not None
    raise error


@dataclass(frozen=True)
class Session:
    token: str
    csrf_token: str
    expires_at: datetime


def open_session(conn: Connection[DictRow], account_id: int, kind: str, client_addr: str) -> Session:
    """Start a console session or issue an API token, and audit it."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    expires = now + (CONSOLE_MAX_AGE if kind == "console" else API_TOKEN_AGE)
    with conn.transaction():
        conn.execute("DELETE FROM staff_session WHERE expires_at < %s", (now,))
        conn.execute(
            "INSERT INTO staff_session (token_hash, account_id, kind, csrf_token, expires_at, client_addr) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (_token_hash(token), account_id, kind, csrf if kind == "console" else None, expires, client_addr))
        name = conn.execute("SELECT username FROM staff_account WHERE id = %s", (account_id,)).fetchone()
        assert name is not None
        record(conn, Actor(name["username"], client_addr, account_id),
               "auth.login" if kind == "console" else "auth.token_issued", "staff", name["username"],
               {"kind": kind})
    return Session(token, csrf, expires)


def _expired(kind: str) -> ShokaError:
    if kind == "console":
        return ShokaError("session_expired", "セッションの有効期限が切れました。もう一度ログインしてください。",
                          "Your session has expired. Please sign in again.", status=401)
    return ShokaError("token_expired", "アクセストークンの有効期限が切れました。", "The access token has expired.",
                      status=401)


UNAUTHENTICATED = ShokaError("unauthenticated", "ログインが必要です。", "Authentication required.", status=401)


def resolve_session(conn: Connection[DictRow], token: str, kind: str) -> tuple[Principal, str | None]:
    """The principal for a session cookie or bearer token, and the session's CSRF token."""
    now = datetime.now(UTC)
    expired = False
    with conn.transaction():
        row = conn.execute(
            "SELECT s.account_id, s.csrf_token, s.expires_at, s.last_seen_at, a.active "
            "FROM staff_session s JOIN staff_account a ON a.id = s.account_id "
            "WHERE s.token_hash = %s AND s.kind = %s", (_token_hash(token), kind)).fetchone()
        if row is None or not row["active"]:
            raise UNAUTHENTICATED
        idle_over = kind == "console" and row["last_seen_at"] + CONSOLE_IDLE < now
        if row["expires_at"] < now or idle_over:
            # Deleted in this transaction, which must commit: raising inside it would roll the delete back.
            conn.execute("DELETE FROM staff_session WHERE token_hash = %s", (_token_hash(token),))
            expired = True
        else:
            if now - row["last_seen_at"] > _TOUCH_EVERY:
                conn.execute("UPDATE staff_session SET last_seen_at = %s WHERE token_hash = %s",
                             (now, _token_hash(token)))
            principal = load_principal(conn, row["account_id"])
    if expired:
        raise _expired(kind)
    return principal, row["csrf_token"]


def close_session(conn: Connection[DictRow], token: str, principal: Principal, client_addr: str,
                  kind: str) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM staff_session WHERE token_hash = %s", (_token_hash(token),))
        record(conn, Actor(principal.username, client_addr, principal.account_id),
               "auth.logout" if kind == "console" else "auth.token_revoked", "staff", principal.username)


def load_principal(conn: Connection[DictRow], account_id: int) -> Principal:
    row = conn.execute(
        """SELECT a.id, a.username, a.display_name, b.code AS branch_code,
                  ARRAY(SELECT r.code FROM staff_account_role ar JOIN staff_role r ON r.id = ar.role_id
                        WHERE ar.account_id = a.id ORDER BY r.code) AS roles,
                  ARRAY(SELECT g.code FROM staff_account_group ag JOIN staff_group g ON g.id = ag.group_id
                        WHERE ag.account_id = a.id ORDER BY g.code) AS groups,
                  ARRAY(SELECT rp.area || ':' || rp.action FROM staff_account_role ar
                          JOIN role_permission rp ON rp.role_id = ar.role_id WHERE ar.account_id = a.id
                        UNION
                        SELECT gp.area || ':' || gp.action FROM staff_account_group ag
                          JOIN group_permission gp ON gp.group_id = ag.group_id WHERE ag.account_id = a.id
                  ) AS permissions
           FROM staff_account a LEFT JOIN branch b ON b.id = a.branch_id WHERE a.id = %s""",
        (account_id,)).fetchone()
    if row is None:
        raise UNAUTHENTICATED
    perms: frozenset[Permission] = frozenset(
        (p.split(":", 1)[0], p.split(":", 1)[1]) for p in row["permissions"])
    return Principal(row["id"], row["username"], row["display_name"], row["branch_code"],
                     tuple(row["roles"]), tuple(row["groups"]), perms)


# -- account administration ------------------------------------------------------------------

def _branch_id(conn: Connection[DictRow], code: str | None, field_name: str = "branch") -> int | None:
    if not code:
        return None
    row = conn.execute("SELECT id FROM branch WHERE code = %s", (code,)).fetchone()
    if row is None:
        raise invalid(field_name, code, "その館コードはありません。", "no such branch code")
    return int(row["id"])


def _codes_to_ids(conn: Connection[DictRow], table: str, codes: list[str], field_name: str) -> list[int]:
    if not codes:
        return []
    rows = conn.execute(f"SELECT id, code FROM {table} WHERE code = ANY(%s)", (codes,)).fetchall()
    found = {r["code"]: r["id"] for r in rows}
    for code in codes:
        if code not in found:
            what = ("その役割はありません。", "no such role") if table == "staff_role" else \
                ("そのグループはありません。", "no such group")
            raise invalid(field_name, code, *what)
    return [found[c] for c in codes]


def _set_memberships(conn: Connection[DictRow], account_id: int, role_ids: list[int] | None,
                     group_ids: list[int] | None) -> None:
    if role_ids is not None:
        conn.execute("DELETE FROM staff_account_role WHERE account_id = %s", (account_id,))
        conn.execute("INSERT INTO staff_account_role (account_id, role_id) SELECT %s, unnest(%s::bigint[])",
                     (account_id, role_ids))
    if group_ids is not None:
        conn.execute("DELETE FROM staff_account_group WHERE account_id = %s", (account_id,))
        conn.execute("INSERT INTO staff_account_group (account_id, group_id) SELECT %s, unnest(%s::bigint[])",
                     (account_id, group_ids))


def create_account(conn: Connection[DictRow], actor: Actor, username: str, password: str, *,
                   display_name: str = "", roles: list[str] | None = None, groups: list[str] | None = None,
                   branch: str | None = None) -> int:
    if not USERNAME_RE.match(username or ""):
        raise invalid("username", username, "英数字と . _ - で64文字以内にしてください。",
                      "use letters, digits, '.', '_' or '-', at most 64 characters")
    password_hash = hash_password(password)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM staff_account WHERE lower(username) = lower(%s)", (username,)).fetchone():
            raise ShokaError("username_taken", f"ユーザーID「{username}」は既に使われています。",
                             f"The user ID {username!r} is already taken.", status=409, field="username")
        branch_id = _branch_id(conn, branch)
        role_ids = _codes_to_ids(conn, "staff_role", roles or [], "roles")
        group_ids = _codes_to_ids(conn, "staff_group", groups or [], "groups")
        row = conn.execute(
            "INSERT INTO staff_account (username, display_name, password_hash, branch_id) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            (username, display_name or username, password_hash, branch_id)).fetchone()
        assert row is not None
        _set_memberships(conn, row["id"], role_ids, group_ids)
        record(conn, actor, "staff.create", "staff", username,
               {"roles": roles or [], "groups": groups or [], "branch": branch})
        return int(row["id"])


def _account_id(conn: Connection[DictRow], username: str) -> int:
    row = conn.execute("SELECT id FROM staff_account WHERE lower(username) = lower(%s)", (username,)).fetchone()
    if row is None:
        raise not_found("staff", username)
    return int(row["id"])


def update_account(conn: Connection[DictRow], actor: Actor, username: str, *, display_name: str | None = None,
                   branch: str | None = None, clear_branch: bool = False, active: bool | None = None,
                   roles: list[str] | None = None, groups: list[str] | None = None,
                   password: str | None = None) -> None:
    password_hash = hash_password(password) if password else None
    with conn.transaction():
        account_id = _account_id(conn, username)
        changes: dict[str, Any] = {}
        if display_name is not None:
            conn.execute("UPDATE staff_account SET display_name = %s WHERE id = %s", (display_name, account_id))
            changes["display_name"] = display_name
        if branch is not None or clear_branch:
            conn.execute("UPDATE staff_account SET branch_id = %s WHERE id = %s",
                         (None if clear_branch else _branch_id(conn, branch), account_id))
            changes["branch"] = None if clear_branch else branch
        if active is not None:
            if active is False and actor.account_id == account_id:
                raise ShokaError("cannot_disable_self", "自分自身のアカウントは無効にできません。",
                                 "You cannot deactivate your own account.", status=409, field="active")
            conn.execute("UPDATE staff_account SET active = %s WHERE id = %s", (active, account_id))
            if not active:
                conn.execute("DELETE FROM staff_session WHERE account_id = %s", (account_id,))
            changes["active"] = active
        role_ids = _codes_to_ids(conn, "staff_role", roles, "roles") if roles is not None else None
        group_ids = _codes_to_ids(conn, "staff_group", groups, "groups") if groups is not None else None
        if role_ids is not None and actor.account_id == account_id and "admin" not in (roles or []):
            raise ShokaError("cannot_remove_own_admin", "自分自身の管理者権限は外せません。",
                             "You cannot remove your own administrator role.", status=409, field="roles")
        _set_memberships(conn, account_id, role_ids, group_ids)
        if roles is not None:
            changes["roles"] = roles
        if groups is not None:
            changes["groups"] = groups
        if password_hash:
            conn.execute("UPDATE staff_account SET password_hash = %s, password_changed_at = now(), "
                         "failed_logins = 0, locked_until = NULL WHERE id = %s", (password_hash, account_id))
            conn.execute("DELETE FROM staff_session WHERE account_id = %s", (account_id,))
            changes["password"] = "changed"  # noqa: S105 - records that it changed, never the value
        conn.execute("UPDATE staff_account SET updated_at = now() WHERE id = %s", (account_id,))
        record(conn, actor, "staff.update", "staff", username, changes)


def unlock_account(conn: Connection[DictRow], actor: Actor, username: str) -> None:
    with conn.transaction():
        account_id = _account_id(conn, username)
        conn.execute("UPDATE staff_account SET failed_logins = 0, locked_until = NULL WHERE id = %s", (account_id,))
        record(conn, actor, "staff.unlock", "staff", username)


def list_accounts(conn: Connection[DictRow], username: str | None = None) -> list[DictRow]:
    """All accounts, or the one named `username` (case-insensitive)."""
    return conn.execute(
        """SELECT a.id, a.username, a.display_name, a.active, a.locked_until, a.last_login_at,
                  b.code AS branch, b.name AS branch_name,
                  ARRAY(SELECT r.code FROM staff_account_role ar JOIN staff_role r ON r.id = ar.role_id
                        WHERE ar.account_id = a.id ORDER BY r.code) AS roles,
                  ARRAY(SELECT g.code FROM staff_account_group ag JOIN staff_group g ON g.id = ag.group_id
                        WHERE ag.account_id = a.id ORDER BY g.code) AS groups
           FROM staff_account a LEFT JOIN branch b ON b.id = a.branch_id
           WHERE %(username)s::text IS NULL OR lower(a.username) = lower(%(username)s)
           ORDER BY a.username""", {"username": username}).fetchall()


def view_accounts(conn: Connection[DictRow], actor: Actor) -> list[DictRow]:
    """The account list as a staff member sees it; like any view of people's records, audited."""
    with conn.transaction():
        rows = list_accounts(conn)
        record(conn, actor, "staff.list", "staff", "", {"rows": len(rows)})
    return rows


def get_account(conn: Connection[DictRow], actor: Actor, username: str) -> DictRow:
    """One account's details; viewing a person's record is audited."""
    with conn.transaction():
        found = list_accounts(conn, username)
        if not found:
            raise not_found("staff", username)
        record(conn, actor, "staff.view", "staff", found[0]["username"])
    return found[0]


# -- roles, groups and grants -----------------------------------------------------------------

def list_roles(conn: Connection[DictRow]) -> list[DictRow]:
    return conn.execute(
        """SELECT r.code, r.name, r.name_en, r.builtin, 'role' AS kind,
                  ARRAY(SELECT area || ':' || action FROM role_permission p WHERE p.role_id = r.id
                        ORDER BY 1) AS permissions
           FROM staff_role r
           UNION ALL
           SELECT g.code, g.name, coalesce(g.name_en, g.name), false, 'group',
                  ARRAY(SELECT area || ':' || action FROM group_permission p WHERE p.group_id = g.id
                        ORDER BY 1)
           FROM staff_group g
           ORDER BY kind DESC, code""").fetchall()


def set_permissions(conn: Connection[DictRow], actor: Actor, kind: str, code: str,
                    permissions: list[Permission]) -> None:
    """Replace the grants of one role or group."""
    table, perm_table, key = ("staff_role", "role_permission", "role_id") if kind == "role" else \
        ("staff_group", "group_permission", "group_id")
    for area, action in permissions:
        if area not in AREAS:
            raise invalid("area", area, "その業務区分はありません。", "unknown area")
        if action not in ACTIONS:
            raise invalid("action", action, "その操作はありません。", "unknown action")
    with conn.transaction():
        row = conn.execute(f"SELECT id FROM {table} WHERE code = %s", (code,)).fetchone()
        if row is None:
            raise not_found(kind, code)
        if kind == "role" and code == "admin" and ("system", "administer") not in permissions:
            raise ShokaError("admin_role_locked", "管理者ロールからシステム管理権限は外せません。",
                             "The admin role must keep system:administer.", status=409)
        before = conn.execute(f"SELECT area || ':' || action AS p FROM {perm_table} WHERE {key} = %s ORDER BY 1",
                              (row["id"],)).fetchall()
        conn.execute(f"DELETE FROM {perm_table} WHERE {key} = %s", (row["id"],))
        conn.execute(f"INSERT INTO {perm_table} ({key}, area, action) "
                     "SELECT %s, unnest(%s::text[]), unnest(%s::text[])",
                     (row["id"], [p[0] for p in permissions], [p[1] for p in permissions]))
        record(conn, actor, "staff.grants_update", kind, code,
               {"before": [r["p"] for r in before], "after": sorted(f"{a}:{b}" for a, b in permissions)})


def create_group(conn: Connection[DictRow], actor: Actor, code: str, name: str) -> None:
    if not re.match(r"^[a-z0-9][a-z0-9_-]{0,31}$", code or ""):
        raise invalid("code", code, "英小文字・数字・_・- で32文字以内にしてください。",
                      "use lower-case letters, digits, '_' or '-', at most 32 characters")
    if not name.strip():
        raise invalid("name", name, "名前を入力してください。", "a name is required")
    with conn.transaction():
        if conn.execute("SELECT 1 FROM staff_group WHERE code = %s", (code,)).fetchone():
            raise ShokaError("group_exists", f"グループ「{code}」は既にあります。", f"Group {code!r} exists.",
                             status=409, field="code")
        conn.execute("INSERT INTO staff_group (code, name) VALUES (%s, %s)", (code, name.strip()))
        record(conn, actor, "staff.group_create", "group", code, {"name": name.strip()})


# -- year-end assignment changes (人事異動) ----------------------------------------------------

ASSIGNMENT_COLUMNS = ("username", "branch", "roles", "groups", "active")


@dataclass
class AssignmentReport:
    applied: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    dry_run: bool = False


def import_assignments(conn: Connection[DictRow], actor: Actor, csv_text: str, *,
                       dry_run: bool = False) -> AssignmentReport:
    """Apply a CSV of staff assignments (username, branch, roles, groups, active).

    Roles and groups are separated by ';'. An empty cell leaves that attribute unchanged; '-'
    clears it. Each row is applied on its own, so a bad row is reported and the rest still apply.
    """
    report = AssignmentReport(dry_run=dry_run)
    text = csv_text.lstrip("\ufeff")  # Excel writes a BOM
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "username" not in header:
        raise invalid("csv", ",".join(header) or "(空)", "1行目に username 列が必要です。",
                      "the first line must be a header with a username column")
    unknown = [h for h in header if h not in ASSIGNMENT_COLUMNS]
    if unknown:
        raise invalid("csv", ",".join(unknown), f"未知の列です（使える列: {', '.join(ASSIGNMENT_COLUMNS)}）。",
                      f"unknown columns (allowed: {', '.join(ASSIGNMENT_COLUMNS)})")
    reader.fieldnames = header
    for line_no, raw in enumerate(reader, start=2):
        row = {k: (v or "").strip() for k, v in raw.items() if k}
        username = row.get("username", "")
        try:
            kwargs: dict[str, Any] = {}
            branch = row.get("branch", "")
            if branch == "-":
                kwargs["clear_branch"] = True
            elif branch:
                kwargs["branch"] = branch
            for col in ("roles", "groups"):
                value = row.get(col, "")
                if value:
                    kwargs[col] = [] if value == "-" else [v.strip() for v in value.split(";") if v.strip()]
            active = row.get("active", "").lower()
            if active:
                if active not in ("true", "false", "1", "0", "yes", "no"):
                    raise invalid("active", active, "true か false を指定してください。", "use true or false")
                kwargs["active"] = active in ("true", "1", "yes")
            with conn.transaction(force_rollback=dry_run):
                update_account(conn, actor, username, **kwargs)
            report.applied.append(username)
        except ShokaError as exc:
            report.rejected.append((line_no, exc.message_ja))
    if not dry_run:
        with conn.transaction():
            record(conn, actor, "staff.assignments_import", "staff", "",
                   {"applied": len(report.applied), "rejected": len(report.rejected)})
    return report
