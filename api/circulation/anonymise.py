"""Privacy of reading (読書の秘密): returned loans lose their patron.

Japanese libraries keep no record of who read what once an item is back (図書館の自由に関する宣言),
unless the patron asked to keep a reading history. The nightly job removes the patron from every
returned loan of patrons without that consent; what statistics need (category, age group, branch,
item type) stays on the loan and in circulation_event. Withdrawing consent later takes effect at
the next run. Work goes in batches so the counter is never held up by a long transaction.
"""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

BATCH = 5_000


def anonymise_returned_loans(conn: Connection[DictRow], batch: int = BATCH) -> int:
    """Remove the patron from returned loans of patrons who keep no history; returns how many."""
    total = 0
    while True:
        with conn.transaction():
            cur = conn.execute(
                """UPDATE loan SET patron_id = NULL, anonymised_at = now()
                   WHERE id IN (SELECT l.id FROM loan l JOIN patron p ON p.id = l.patron_id
                                WHERE l.returned_at IS NOT NULL AND NOT p.keep_history
                                LIMIT %s FOR UPDATE OF l SKIP LOCKED)""", (batch,))
        total += cur.rowcount
        if cur.rowcount < batch:
            return total
