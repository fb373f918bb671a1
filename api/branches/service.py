"""Branches: list, create and update service points."""

from __future__ import annotations

import re

from psycopg import Connection
from psycopg.rows import DictRow

from api.audit import Actor, record
from api.errors import ShokaError, invalid, not_found

KINDS = ("library", "branch_room", "bookmobile", "deposit", "other")
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def list_branches(conn: Connection[DictRow], *, active_only: bool = False) -> list[DictRow]:
    where = "WHERE active" if active_only else ""
    return conn.execute(f"SELECT code, name, name_en, kind, takes_holds, active FROM branch {where} "
                        "ORDER BY id").fetchall()


def _check(code: str, name: str, kind: str) -> None:
    if not CODE_RE.match(code or ""):
        raise invalid("code", code, "英小文字・数字・_・- で32文字以内にしてください。",
                      "use lower-case letters, digits, '_' or '-', at most 32 characters")
    if not (name or "").strip():
        raise invalid("name", name, "館名を入力してください。", "a name is required")
    if kind not in KINDS:
        kinds = ", ".join(KINDS)
        raise invalid("kind", kind, f"種別は {kinds} のいずれかです。", f"expected one of {kinds}")


def create_branch(conn: Connection[DictRow], actor: Actor, code: str, name: str, *, name_en: str | None = None,
                  kind: str = "library", takes_holds: bool = True) -> None:
    _check(code, name, kind)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM branch WHERE code = %s", (code,)).fetchone():
            raise ShokaError("branch_exists", f"館コード「{code}」は既にあります。", f"Branch {code!r} exists.",
                             status=409, field="code")
        conn.execute("INSERT INTO branch (code, name, name_en, kind, takes_holds) VALUES (%s, %s, %s, %s, %s)",
                     (code, name.strip(), name_en, kind, takes_holds))
        record(conn, actor, "branch.create", "branch", code, {"name": name, "kind": kind})


def update_branch(conn: Connection[DictRow], actor: Actor, code: str, *, name: str | None = None,
                  name_en: str | None = None, takes_holds: bool | None = None, active: bool | None = None) -> None:
    if name is not None and not name.strip():
        raise invalid("name", name, "館名を入力してください。", "a name is required")
    with conn.transaction():
        row = conn.execute("SELECT id FROM branch WHERE code = %s FOR UPDATE", (code,)).fetchone()
        if row is None:
            raise not_found("branch", code)
        changes = {k: v for k, v in {"name": name, "name_en": name_en, "takes_holds": takes_holds,
                                      "active": active}.items() if v is not None}
        if changes:
            sets = ", ".join(f"{k} = %({k})s" for k in changes)
            conn.execute(f"UPDATE branch SET {sets} WHERE id = %(id)s", {**changes, "id": row["id"]})
        record(conn, actor, "branch.update", "branch", code, changes)


def library_name(conn: Connection[DictRow], default: str) -> str:
    row = conn.execute("SELECT value FROM library_setting WHERE key = 'library_name'").fetchone()
    return str(row["value"]) if row else default


def list_locations(conn: Connection[DictRow], branch: str) -> list[DictRow]:
    return conn.execute("SELECT l.code, l.name, l.name_en FROM location l JOIN branch b ON b.id = l.branch_id "
                        "WHERE b.code = %s ORDER BY l.code", (branch,)).fetchall()


def create_location(conn: Connection[DictRow], actor: Actor, branch: str, code: str, name: str,
                    name_en: str | None = None) -> None:
    """配架場所: a shelf location of a branch (一般書架, 児童書架, 書庫 ...)."""
    if not CODE_RE.match(code or ""):
        raise invalid("code", code, "英小文字・数字・_・- で32文字以内にしてください。",
                      "use lower-case letters, digits, '_' or '-', at most 32 characters")
    if not (name or "").strip():
        raise invalid("name", name, "名前を入力してください。", "a name is required")
    with conn.transaction():
        row = conn.execute("SELECT id FROM branch WHERE code = %s", (branch,)).fetchone()
        if row is None:
            raise not_found("branch", branch)
        if conn.execute("SELECT 1 FROM location WHERE branch_id = %s AND code = %s", (row["id"], code)).fetchone():
            raise ShokaError("location_exists", f"配架場所「{code}」は既にあります。", f"Location {code!r} exists.",
                             status=409, field="code")
        conn.execute("INSERT INTO location (branch_id, code, name, name_en) VALUES (%s, %s, %s, %s)",
                     (row["id"], code, name.strip(), name_en))
        record(conn, actor, "location.create", "location", f"{branch}/{code}", {"name": name.strip()})
