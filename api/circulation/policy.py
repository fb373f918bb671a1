"""The circulation policy, cached per process: loan rules, barcode ranges, branch ids and calendars.

A check-out used to read all of these on every scan. They change rarely, and every change bumps
`policy_version` (triggers, migration 0005), so one query per scan tells whether the cached copy is
still current; a change made on an admin screen applies to the very next scan at every counter.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date

from psycopg import Connection
from psycopg.rows import DictRow

from api.barcodes.nw7 import BarcodeRule
from api.barcodes.service import load_rules as load_barcode_rules
from api.calendar.days import BranchCalendar
from api.circulation.rules import LoanRule

DB = Connection[DictRow]
_MAX_CALENDARS = 512


@dataclass
class Policy:
    version: int
    rules: list[LoanRule]
    barcode_rules: list[BarcodeRule]
    branches: dict[str, int]
    _calendars: dict[tuple[int, date], BranchCalendar] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def calendar(self, conn: DB, branch_id: int, today: date) -> BranchCalendar:
        key = (branch_id, today)
        cached = self._calendars.get(key)
        if cached is None:
            from api.circulation.service import load_calendar

            cached = load_calendar(conn, branch_id, today)
            with self._lock:
                if len(self._calendars) >= _MAX_CALENDARS:
                    self._calendars.clear()
                self._calendars[key] = cached
        return cached


_cache: dict[tuple[str, str, str], Policy] = {}


def current(conn: DB) -> Policy:
    """The policy as committed now (one query when nothing changed)."""
    from api.circulation.service import load_rules

    key = (conn.info.host, str(conn.info.port), conn.info.dbname)
    row = conn.execute("SELECT version FROM policy_version").fetchone()
    version = int(row["version"]) if row else 0
    cached = _cache.get(key)
    if cached is not None and cached.version == version:
        return cached
    # Read the version first: a change committed meanwhile leaves a newer version, so the next scan reloads.
    branches = {r["code"]: int(r["id"]) for r in conn.execute("SELECT id, code FROM branch").fetchall()}
    policy = Policy(version, load_rules(conn), load_barcode_rules(conn), branches)
    _cache[key] = policy
    return policy
