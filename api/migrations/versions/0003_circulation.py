"""Circulation: patrons (利用者), blocks and lending suspensions (貸出停止), loan rules (貸出規則),
branch calendars (開館日カレンダー), barcode rules, loans (貸出), transits (回送), circulation statistics,
counter workstations and receipts.

None of these tables is granted to the OPAC role: patron data never reaches the public side. The
OPAC sees due dates only through the `opac_holding` view, which runs with its owner's rights.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- 利用者区分. Data, not code; `is_group` marks categories for 団体貸出.
    CREATE TABLE patron_category (
        code       text PRIMARY KEY CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
        name       text NOT NULL CHECK (name <> ''),
        name_en    text,
        is_group   boolean NOT NULL DEFAULT false,
        card_years integer NOT NULL DEFAULT 3 CHECK (card_years BETWEEN 1 AND 20)
    );
    INSERT INTO patron_category (code, name, name_en, is_group, card_years) VALUES
        ('general', '一般', 'General', false, 3),
        ('child', '児童', 'Child', false, 3),
        ('nonresident', '市外', 'Non-resident', false, 1),
        ('group', '団体', 'Group', true, 1);

    -- 利用者. Existing card numbers from the previous system are kept as they are.
    CREATE TABLE patron (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        card           text NOT NULL UNIQUE CHECK (card ~ '^[0-9A-Za-z-]{1,32}$'),
        name           text NOT NULL CHECK (name <> ''),
        name_reading   text NOT NULL CHECK (name_reading <> ''),
        reading_key    text NOT NULL,          -- folded reading without spaces: search and duplicates
        birth_date     date,
        postal_code    text,
        address        text,
        phone          text,
        phone_digits   text GENERATED ALWAYS AS (nullif(regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'), ''))
                       STORED,
        email          text,
        category       text NOT NULL REFERENCES patron_category(code),
        home_branch_id bigint NOT NULL REFERENCES branch(id),
        expires_on     date,
        notes          text,
        keep_history   boolean NOT NULL DEFAULT false,   -- consent to keep reading history
        contact_name   text,                             -- 団体: the person responsible
        created_at     timestamptz NOT NULL DEFAULT now(),
        updated_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX patron_reading_key ON patron (reading_key text_pattern_ops);
    CREATE INDEX patron_name ON patron (name text_pattern_ops);
    CREATE INDEX patron_phone_digits ON patron (phone_digits);
    CREATE INDEX patron_duplicate ON patron (reading_key, birth_date);

    -- Blocks set by staff (manual) and lending suspensions (貸出停止, instead of fines). Expired cards
    -- and overdue items block too, but those are derived from other rows, not stored.
    CREATE TABLE patron_block (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        patron_id  bigint NOT NULL REFERENCES patron(id),
        kind       text NOT NULL CHECK (kind IN ('manual', 'suspension')),
        reason     text NOT NULL CHECK (reason <> ''),
        starts_on  date NOT NULL DEFAULT current_date,
        ends_on    date,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        lifted_at  timestamptz,
        lifted_by  text,
        CHECK (ends_on IS NULL OR ends_on >= starts_on)
    );
    CREATE INDEX patron_block_patron ON patron_block (patron_id) WHERE lifted_at IS NULL;

    -- 貸出規則: patron category × item type × branch; NULL means "any". The most specific rule wins
    -- (api/circulation/rules.py); the all-NULL row is the fallback.
    CREATE TABLE loan_rule (
        id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        patron_category   text REFERENCES patron_category(code),
        item_type         text REFERENCES item_type(code),
        branch_id         bigint REFERENCES branch(id),
        loan_days         integer NOT NULL CHECK (loan_days BETWEEN 1 AND 366),
        max_loans         integer NOT NULL CHECK (max_loans >= 0),
        max_loans_of_type integer CHECK (max_loans_of_type >= 0),
        renewals          integer NOT NULL DEFAULT 1 CHECK (renewals >= 0),
        renewal_days      integer NOT NULL DEFAULT 14 CHECK (renewal_days BETWEEN 1 AND 366),
        max_holds         integer NOT NULL DEFAULT 10 CHECK (max_holds >= 0),
        fixed_due_date    date,
        loanable          boolean NOT NULL DEFAULT true,
        UNIQUE NULLS NOT DISTINCT (patron_category, item_type, branch_id)
    );
    INSERT INTO loan_rule (patron_category, item_type, branch_id, loan_days, max_loans, renewals, renewal_days,
                           max_holds)
        VALUES (NULL, NULL, NULL, 14, 10, 1, 14, 10);

    -- 開館日カレンダー: the weekly and monthly pattern per branch, plus dated exceptions
    -- (holidays, 年末年始, special closures; or days opened despite the pattern).
    CREATE TABLE branch_calendar (
        branch_id      bigint PRIMARY KEY REFERENCES branch(id),
        weekly_closed  integer[] NOT NULL DEFAULT '{}',       -- date.weekday(): 0 = Monday
        monthly_closed jsonb NOT NULL DEFAULT '[]'             -- [[nth, weekday], ...]; nth -1 = last
    );
    CREATE TABLE calendar_day (
        branch_id bigint NOT NULL REFERENCES branch(id),
        day       date NOT NULL,
        closed    boolean NOT NULL,
        reason    text NOT NULL DEFAULT '',
        PRIMARY KEY (branch_id, day)
    );

    -- NW-7 number ranges with their length and check-digit scheme (api/barcodes/nw7.py).
    CREATE TABLE barcode_rule (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind         text NOT NULL CHECK (kind IN ('item', 'patron')),
        name         text NOT NULL DEFAULT '',
        prefix       text NOT NULL DEFAULT '' CHECK (prefix ~ '^[0-9A-Za-z-]{0,31}$'),
        length       integer CHECK (length BETWEEN 1 AND 32),
        check_scheme text NOT NULL DEFAULT 'none',
        branch_id    bigint REFERENCES branch(id),
        UNIQUE (kind, prefix)
    );

    -- 貸出. Exactly one open loan per item (the partial unique index is the last line of defence
    -- behind the row locks in api/circulation/service.py). Returned loans lose their patron when
    -- anonymised unless the patron keeps a reading history; the snapshot columns are what statistics
    -- need without the patron.
    CREATE TABLE loan (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        item_id          bigint NOT NULL REFERENCES item(id),
        patron_id        bigint REFERENCES patron(id),
        branch_id        bigint NOT NULL REFERENCES branch(id),
        checked_out_at   timestamptz NOT NULL DEFAULT now(),
        due_date         date NOT NULL,
        renewals         integer NOT NULL DEFAULT 0,
        last_renewed_at  timestamptz,
        returned_at      timestamptz,
        return_branch_id bigint REFERENCES branch(id),
        patron_category  text NOT NULL,
        age_group        text NOT NULL,
        item_type        text NOT NULL,
        anonymised_at    timestamptz,
        CHECK (returned_at IS NOT NULL OR patron_id IS NOT NULL),
        CHECK (anonymised_at IS NULL OR (patron_id IS NULL AND returned_at IS NOT NULL))
    );
    CREATE UNIQUE INDEX loan_open_item ON loan (item_id) WHERE returned_at IS NULL;
    CREATE INDEX loan_open_patron ON loan (patron_id) WHERE returned_at IS NULL;
    CREATE INDEX loan_patron ON loan (patron_id, checked_out_at);
    CREATE INDEX loan_open_due ON loan (due_date) WHERE returned_at IS NULL;
    CREATE INDEX loan_to_anonymise ON loan (returned_at) WHERE patron_id IS NOT NULL AND returned_at IS NOT NULL;

    -- 回送: an item travelling between branches (returned elsewhere; later also for holds).
    CREATE TABLE item_transit (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        item_id        bigint NOT NULL REFERENCES item(id),
        from_branch_id bigint NOT NULL REFERENCES branch(id),
        to_branch_id   bigint NOT NULL REFERENCES branch(id),
        reason         text NOT NULL CHECK (reason IN ('return', 'hold', 'transfer')),
        sent_at        timestamptz NOT NULL DEFAULT now(),
        received_at    timestamptz
    );
    CREATE UNIQUE INDEX item_transit_open ON item_transit (item_id) WHERE received_at IS NULL;

    -- One row per check-out, check-in and renewal, without the patron: the statistics source.
    CREATE TABLE circulation_event (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind            text NOT NULL CHECK (kind IN ('checkout', 'checkin', 'renew')),
        at              timestamptz NOT NULL DEFAULT now(),
        branch_id       bigint NOT NULL REFERENCES branch(id),
        patron_category text,
        age_group       text,
        item_type       text NOT NULL,
        ndc             text,
        is_group        boolean NOT NULL DEFAULT false
    );
    CREATE INDEX circulation_event_at ON circulation_event (at);

    -- カウンター端末: a counter PC with its receipt printer settings (devices/printers).
    CREATE TABLE workstation (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        code      text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
        name      text NOT NULL CHECK (name <> ''),
        branch_id bigint NOT NULL REFERENCES branch(id),
        printer   jsonb NOT NULL DEFAULT '{"connection": "none"}'
    );
    -- The last receipts per workstation, for reprinting; no patron identity beyond a masked card.
    CREATE TABLE receipt (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        workstation_id bigint REFERENCES workstation(id),
        staff_username text NOT NULL,
        kind           text NOT NULL CHECK (kind IN ('checkout', 'checkin', 'renew')),
        content        jsonb NOT NULL,
        created_at     timestamptz NOT NULL DEFAULT now(),
        printed_at     timestamptz,
        error          text
    );
    CREATE INDEX receipt_workstation ON receipt (workstation_id, id);

    -- Due dates reach the OPAC through the view; the OPAC has no right on loan itself.
    CREATE OR REPLACE VIEW opac_holding AS
        SELECT i.record_id, b.code AS branch, b.name AS branch_name, b.name_en AS branch_name_en,
               l.name AS location, l.name_en AS location_en, i.call_number, i.item_type, i.status,
               lo.due_date
        FROM item i
        JOIN branch b ON b.id = i.branch_id
        LEFT JOIN location l ON l.id = i.location_id
        LEFT JOIN loan lo ON lo.item_id = i.id AND lo.returned_at IS NULL
        WHERE i.status <> 'withdrawn';
    """)


def downgrade() -> None:
    raise NotImplementedError("Shoka migrations go forward only; restore a backup to go back.")
