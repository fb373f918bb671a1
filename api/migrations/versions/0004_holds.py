"""Holds (予約), pickup lockers (予約本受取ロッカー), purchase requests (リクエスト), email notices,
and patrons' My Library credentials and sessions.

None of these tables is granted to the OPAC role: My Library reaches them only through the internal
API (docs/architecture.md, "Personal data and the OPAC").

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    -- My Library (OPAC) sign-in: card number + password (argon2id), with lockout.
    ALTER TABLE patron
        ADD COLUMN password_hash       text,
        ADD COLUMN password_changed_at timestamptz,
        ADD COLUMN failed_logins       integer NOT NULL DEFAULT 0,
        ADD COLUMN locked_until        timestamptz,
        ADD COLUMN last_login_at       timestamptz;

    -- The OPAC holds only the opaque token; the hash lives here, in the main database.
    CREATE TABLE patron_session (
        token_hash   bytea PRIMARY KEY,
        patron_id    bigint NOT NULL REFERENCES patron(id) ON DELETE CASCADE,
        created_at   timestamptz NOT NULL DEFAULT now(),
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL
    );
    CREATE INDEX patron_session_patron ON patron_session (patron_id);

    -- 予約. Title-level (item_id NULL) or item-level. The queue is the order of placement.
    -- placed → in_transit (回送) → on_shelf (確保) → collected, or in_locker → collected;
    -- cancelled and expired end a hold. `trapped_item_id` is the copy set aside for it.
    CREATE TABLE hold (
        id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        patron_id             bigint NOT NULL REFERENCES patron(id),
        record_id             bigint NOT NULL REFERENCES bib_record(id),
        item_id               bigint REFERENCES item(id),
        pickup_branch_id      bigint NOT NULL REFERENCES branch(id),
        status                text NOT NULL DEFAULT 'placed'
                              CHECK (status IN ('placed', 'in_transit', 'on_shelf', 'in_locker', 'collected',
                                                'cancelled', 'expired')),
        placed_at             timestamptz NOT NULL DEFAULT now(),
        placed_by             text NOT NULL,                 -- 'opac' or a staff username
        suspended_until       date,                          -- 保留: skipped by trapping until then
        trapped_item_id       bigint REFERENCES item(id),
        trapped_at            timestamptz,
        shelved_at            timestamptz,
        pickup_deadline       date,
        locker_compartment_id bigint,
        unlock_code           text,
        ended_at              timestamptz,
        end_reason            text,
        series_key            text,                           -- 巻数順予約: one series request
        series_seq            integer,                        -- its volume order
        request_id            bigint,
        updated_at            timestamptz NOT NULL DEFAULT now(),
        CHECK ((series_key IS NULL) = (series_seq IS NULL)),
        CHECK (status NOT IN ('in_transit', 'on_shelf', 'in_locker') OR trapped_item_id IS NOT NULL)
    );
    CREATE INDEX hold_queue ON hold (record_id, placed_at, id) WHERE status = 'placed';
    CREATE INDEX hold_item_queue ON hold (item_id) WHERE status = 'placed' AND item_id IS NOT NULL;
    CREATE INDEX hold_patron_active ON hold (patron_id)
        WHERE status IN ('placed', 'in_transit', 'on_shelf', 'in_locker');
    CREATE INDEX hold_shelf ON hold (pickup_branch_id, pickup_deadline) WHERE status = 'on_shelf';
    CREATE INDEX hold_series ON hold (series_key, series_seq) WHERE series_key IS NOT NULL;
    -- One copy fills one hold; one patron has one active hold per title.
    CREATE UNIQUE INDEX hold_trapped_item ON hold (trapped_item_id)
        WHERE status IN ('in_transit', 'on_shelf', 'in_locker');
    CREATE UNIQUE INDEX hold_patron_record ON hold (patron_id, record_id)
        WHERE status IN ('placed', 'in_transit', 'on_shelf', 'in_locker');

    -- 予約本受取ロッカー: banks and compartments are data. A compartment is free when hold_id is NULL.
    CREATE TABLE locker_bank (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        code      text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
        name      text NOT NULL CHECK (name <> ''),
        branch_id bigint NOT NULL REFERENCES branch(id),
        location  text
    );
    CREATE TABLE locker_compartment (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        bank_id   bigint NOT NULL REFERENCES locker_bank(id),
        label     text NOT NULL CHECK (label <> ''),
        hold_id   bigint UNIQUE REFERENCES hold(id),
        loaded_at timestamptz,
        out_of_service boolean NOT NULL DEFAULT false,
        UNIQUE (bank_id, label)
    );
    ALTER TABLE hold ADD CONSTRAINT hold_locker_fk
        FOREIGN KEY (locker_compartment_id) REFERENCES locker_compartment(id);

    -- リクエスト: titles the library lacks, asked for by patrons.
    CREATE TABLE purchase_request (
        id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        patron_id        bigint NOT NULL REFERENCES patron(id),
        title            text NOT NULL CHECK (title <> ''),
        author           text,
        publisher        text,
        isbn             text,
        note             text,
        pickup_branch_id bigint NOT NULL REFERENCES branch(id),
        status           text NOT NULL DEFAULT 'received'
                         CHECK (status IN ('received', 'ordering', 'borrowing', 'declined', 'arrived', 'cancelled')),
        decline_reason   text,
        record_id        bigint REFERENCES bib_record(id),
        hold_id          bigint REFERENCES hold(id),
        created_at       timestamptz NOT NULL DEFAULT now(),
        updated_at       timestamptz NOT NULL DEFAULT now(),
        decided_by       text,
        CHECK (status <> 'declined' OR decline_reason IS NOT NULL)
    );
    CREATE INDEX purchase_request_open ON purchase_request (status, created_at);
    ALTER TABLE hold ADD CONSTRAINT hold_request_fk FOREIGN KEY (request_id) REFERENCES purchase_request(id);

    -- Email notices. `dedupe_key` makes each notice exist once however often it is asked for; the
    -- sender claims a row before sending and marks it sent after, so a retried job never sends twice.
    -- The address is read from the patron at sending time and never stored here.
    CREATE TABLE notice (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind            text NOT NULL CHECK (kind IN ('hold_ready', 'pickup_reminder', 'due_reminder', 'overdue',
                                                      'locker_code', 'request_decided')),
        patron_id       bigint NOT NULL REFERENCES patron(id),
        dedupe_key      text NOT NULL UNIQUE,
        data            jsonb NOT NULL DEFAULT '{}',
        status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        last_error      text,
        message_id      text,
        created_at      timestamptz NOT NULL DEFAULT now(),
        sent_at         timestamptz
    );
    CREATE INDEX notice_due ON notice (next_attempt_at) WHERE status IN ('pending', 'sending');
    CREATE INDEX notice_patron ON notice (patron_id, created_at);
    """)


def downgrade() -> None:
    raise NotImplementedError("Shoka migrations go forward only; restore a backup to go back.")
