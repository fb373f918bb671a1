"""The ISBN index without GIN's pending list: an import looks up every incoming ISBN (matching a
re-imported record), and with `fastupdate` each lookup also scans the list of recent insertions not
yet merged into the index. Measured on 300,000 records: the ISBN lookups 17 s → 2 s, the import
50 → 45 s (inserting into the index directly costs a little more than the list).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT gin_clean_pending_list('bib_record_isbns'::regclass)")
    op.execute("ALTER INDEX bib_record_isbns SET (fastupdate = off)")


def downgrade() -> None:
    op.execute("ALTER INDEX bib_record_isbns SET (fastupdate = on)")
