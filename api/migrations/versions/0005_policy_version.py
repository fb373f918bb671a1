"""Barcode ranges keyed by (kind, prefix, branch, length); a version number for the circulation
policy (rules, calendars, barcode ranges, branches, settings), bumped by triggers on every change,
so each process can cache the policy and notice a change with one cheap query per scan
(api/circulation/policy.py).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("loan_rule", "barcode_rule", "branch_calendar", "calendar_day", "branch", "item_type", "patron_category",
          "library_setting")


def upgrade() -> None:
    op.execute("""
    CREATE TABLE policy_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version   bigint NOT NULL
    );
    INSERT INTO policy_version VALUES (true, 1);

    -- Number ranges may share a prefix when they differ by branch or length (old and new card lengths).
    ALTER TABLE barcode_rule DROP CONSTRAINT barcode_rule_kind_prefix_key;
    ALTER TABLE barcode_rule
        ADD CONSTRAINT barcode_rule_key UNIQUE NULLS NOT DISTINCT (kind, prefix, branch_id, length);
    CREATE FUNCTION bump_policy_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE policy_version SET version = version + 1;
        RETURN NULL;
    END $$;
    """)
    for table in TABLES:
        op.execute(f"""CREATE TRIGGER {table}_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
                       FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_version()""")


def downgrade() -> None:
    raise NotImplementedError("Shoka migrations go forward only; restore a backup to go back.")
