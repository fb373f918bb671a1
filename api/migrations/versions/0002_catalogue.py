"""Catalogue: bibliographic records (書誌), items (所蔵), item types, shelf locations, search outbox.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ITEM_STATUSES = ("'available','on_loan','in_transit','on_hold_shelf','in_processing','missing','lost',"
                 "'damaged','withdrawn'")


def upgrade() -> None:
    op.execute(f"""
    -- 資料区分: what kind of item, for loan rules and statistics. Data, not code.
    CREATE TABLE item_type (
        code     text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{{0,31}}$'),
        name     text NOT NULL CHECK (name <> ''),
        name_en  text,
        loanable boolean NOT NULL DEFAULT true
    );
    INSERT INTO item_type (code, name, name_en, loanable) VALUES
        ('book', '一般図書', 'Book', true),
        ('children', '児童書', 'Children''s book', true),
        ('magazine', '雑誌', 'Magazine', true),
        ('av', '視聴覚資料', 'Audiovisual', true),
        ('reference', '参考図書（禁帯出）', 'Reference (not for loan)', false);

    -- 配架場所: shelf locations within a branch.
    CREATE TABLE location (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        branch_id bigint NOT NULL REFERENCES branch(id),
        code      text NOT NULL CHECK (code ~ '^[a-z0-9][a-z0-9_-]{{0,31}}$'),
        name      text NOT NULL CHECK (name <> ''),
        name_en   text,
        UNIQUE (branch_id, code)
    );

    -- 書誌. The normalised record is `data` (api/catalog/bib.py); the columns beside it are what
    -- queries and constraints need. The original MARC is kept verbatim in `raw`.
    CREATE TABLE bib_record (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source         text NOT NULL,
        control_number text NOT NULL,
        title          text NOT NULL,
        title_reading  text,
        material_type  text NOT NULL DEFAULT 'book',
        pub_year       integer,
        ndc            text,
        isbns          text[] NOT NULL DEFAULT '{{}}',
        data           jsonb NOT NULL,
        raw_format     text,
        raw            bytea,
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now(),
        UNIQUE (source, control_number)
    );
    CREATE INDEX bib_record_isbns ON bib_record USING gin (isbns);
    CREATE INDEX bib_record_created_at ON bib_record (created_at);

    -- 所蔵
    CREATE TABLE item (
        id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        record_id         bigint NOT NULL REFERENCES bib_record(id),
        barcode           text NOT NULL UNIQUE CHECK (barcode ~ '^[0-9A-Za-z-]{{1,32}}$'),
        branch_id         bigint NOT NULL REFERENCES branch(id),
        current_branch_id bigint NOT NULL REFERENCES branch(id),
        location_id       bigint REFERENCES location(id),
        call_number       text,
        item_type         text NOT NULL REFERENCES item_type(code),
        status            text NOT NULL DEFAULT 'available' CHECK (status IN ({ITEM_STATUSES})),
        acquired_on       date,
        price             integer CHECK (price >= 0),
        notes             text,
        withdrawn_on      date,
        withdrawal_reason text,
        created_at        timestamptz NOT NULL DEFAULT now(),
        updated_at        timestamptz NOT NULL DEFAULT now(),
        CHECK ((status = 'withdrawn') = (withdrawn_on IS NOT NULL))
    );
    CREATE INDEX item_record ON item (record_id);
    CREATE INDEX item_call_number ON item (call_number);

    -- Transactional outbox: written in the same transaction as a change to a record or item,
    -- applied to the search engine by a worker (so the index never misses a committed change).
    -- Applied rows are kept for a day so a full rebuild can replay what changed while it ran.
    CREATE TABLE search_outbox (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        record_id  bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        applied_at timestamptz
    );
    CREATE INDEX search_outbox_pending ON search_outbox (id) WHERE applied_at IS NULL;
    CREATE INDEX search_outbox_created ON search_outbox (created_at);

    -- What the OPAC may see of items: no price, notes or internal dates. A view runs with its
    -- owner's rights, so the OPAC reads it without any right on the item table itself.
    -- The circulation migration replaces it to add the due date of loaned items.
    CREATE VIEW opac_holding AS
        SELECT i.record_id, b.code AS branch, b.name AS branch_name, b.name_en AS branch_name_en,
               l.name AS location, l.name_en AS location_en, i.call_number, i.item_type, i.status,
               NULL::date AS due_date
        FROM item i
        JOIN branch b ON b.id = i.branch_id
        LEFT JOIN location l ON l.id = i.location_id
        WHERE i.status <> 'withdrawn';

    GRANT SELECT ON bib_record, item_type, location, opac_holding TO shoka_opac_reader;
    """)


def downgrade() -> None:
    raise NotImplementedError("Shoka migrations go forward only; restore a backup to go back.")
