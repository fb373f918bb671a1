"""The audit log's hash chain, as pure functions.

Each row's hash covers its own fields and the previous row's hash, so changing, removing or
reordering any row breaks every link after it. Retention removes the oldest rows and records an
anchor (the hash the first kept row must point to), so the chain stays verifiable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    body = {
        "id": row["id"],
        "occurred_at": canonical_time(row["occurred_at"]),
        "actor_id": row["actor_id"],
        "actor": row["actor"],
        "client_addr": row["client_addr"],
        "action": row["action"],
        "subject_type": row["subject_type"],
        "subject_id": row["subject_id"],
        "details": row["details"],
    }
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Break:
    row_id: int
    reason: str


def verify(rows: Iterable[Mapping[str, Any]], start_hash: str = GENESIS) -> tuple[int, Break | None]:
    """Walk rows in id order; return how many were checked and the first broken link, if any."""
    expected_prev = start_hash
    checked = 0
    for row in rows:
        if row["prev_hash"] != expected_prev:
            return checked, Break(row["id"], "the previous row was removed or changed "
                                             "(prev_hash does not match)")
        if row_hash(row["prev_hash"], row) != row["row_hash"]:
            return checked, Break(row["id"], "this row was changed after it was written (row_hash does not match)")
        expected_prev = row["row_hash"]
        checked += 1
    return checked, None
