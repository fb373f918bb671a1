"""Foundation: branches, library settings, staff accounts, roles, groups, sessions, audit log.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AREAS = "('catalogue','circulation','patrons','statistics','system')"
ACTIONS = "('view','update','print','export','administer')"


def upgrade() -> None:
    op.execute(f"""
    -- 館・分館・分室・移動図書館: service points are data, not code.
    CREATE TABLE branch (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{{0,31}}$'),
        name        text NOT NULL CHECK (name <> ''),
        name_en     text,
        kind        text NOT NULL DEFAULT 'library'
                    CHECK (kind IN ('library','branch_room','bookmobile','deposit','other')),
        takes_holds boolean NOT NULL DEFAULT true,
        active      boolean NOT NULL DEFAULT true,
        created_at  timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE library_setting (
        key   text PRIMARY KEY,
        value jsonb NOT NULL
    );

    -- 職員アカウント
    CREATE TABLE staff_account (
        id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username            text NOT NULL CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}$'),
        display_name        text NOT NULL,
        password_hash       text NOT NULL,
        branch_id           bigint REFERENCES branch(id),
        active              boolean NOT NULL DEFAULT true,
        failed_logins       integer NOT NULL DEFAULT 0,
        locked_until        timestamptz,
        last_login_at       timestamptz,
        password_changed_at timestamptz NOT NULL DEFAULT now(),
        created_at          timestamptz NOT NULL DEFAULT now(),
        updated_at          timestamptz NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX staff_account_username_key ON staff_account (lower(username));

    CREATE TABLE staff_role (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_-]{{0,31}}$'),
        name        text NOT NULL,
        name_en     text NOT NULL,
        builtin     boolean NOT NULL DEFAULT false
    );
    CREATE TABLE staff_group (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9_-]{{0,31}}$'),
        name        text NOT NULL,
        name_en     text
    );
    CREATE TABLE role_permission (
        role_id bigint NOT NULL REFERENCES staff_role(id) ON DELETE CASCADE,
        area    text NOT NULL CHECK (area IN {AREAS}),
        action  text NOT NULL CHECK (action IN {ACTIONS}),
        PRIMARY KEY (role_id, area, action)
    );
    CREATE TABLE group_permission (
        group_id bigint NOT NULL REFERENCES staff_group(id) ON DELETE CASCADE,
        area     text NOT NULL CHECK (area IN {AREAS}),
        action   text NOT NULL CHECK (action IN {ACTIONS}),
        PRIMARY KEY (group_id, area, action)
    );
    CREATE TABLE staff_account_role (
        account_id bigint NOT NULL REFERENCES staff_account(id) ON DELETE CASCADE,
        role_id    bigint NOT NULL REFERENCES staff_role(id) ON DELETE CASCADE,
        PRIMARY KEY (account_id, role_id)
    );
    CREATE INDEX ON staff_account_role (role_id);
    CREATE TABLE staff_account_group (
        account_id bigint NOT NULL REFERENCES staff_account(id) ON DELETE CASCADE,
        group_id   bigint NOT NULL REFERENCES staff_group(id) ON DELETE CASCADE,
        PRIMARY KEY (account_id, group_id)
    );
    CREATE INDEX ON staff_account_group (group_id);

    -- Console sessions and API bearer tokens; only a SHA-256 of the token is stored.
    CREATE TABLE staff_session (
        token_hash   bytea PRIMARY KEY,
        account_id   bigint NOT NULL REFERENCES staff_account(id) ON DELETE CASCADE,
        kind         text NOT NULL CHECK (kind IN ('console','api')),
        csrf_token   text,
        created_at   timestamptz NOT NULL DEFAULT now(),
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL,
        client_addr  text
    );
    CREATE INDEX ON staff_session (account_id);
    CREATE INDEX ON staff_session (expires_at);

    -- 操作ログ: append-only, each row hash-chained to the one before (see api/audit/chain.py).
    CREATE SEQUENCE audit_log_id_seq;
    CREATE TABLE audit_log (
        id           bigint PRIMARY KEY,
        occurred_at  timestamptz NOT NULL,
        actor_id     bigint,
        actor        text NOT NULL,
        client_addr  text NOT NULL,
        action       text NOT NULL,
        subject_type text NOT NULL DEFAULT '',
        subject_id   text NOT NULL DEFAULT '',
        details      jsonb NOT NULL DEFAULT '{{}}',
        prev_hash    text NOT NULL,
        row_hash     text NOT NULL
    );
    CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);
    CREATE INDEX audit_log_actor ON audit_log (actor, occurred_at);
    CREATE INDEX audit_log_action ON audit_log (action, occurred_at);
    CREATE INDEX audit_log_subject ON audit_log (subject_type, subject_id);

    -- Where the chain starts after retention removed older rows.
    CREATE TABLE audit_anchor (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        created_at    timestamptz NOT NULL DEFAULT now(),
        first_kept_id bigint NOT NULL,
        prev_hash     text NOT NULL,
        purged_rows   bigint NOT NULL
    );

    CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE'
           AND current_setting('shoka.audit_retention', true) = 'on'
           AND OLD.occurred_at < now() - interval '6 years' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_guard();

    -- Built-in roles. Permissions are data and editable by administrators.
    INSERT INTO staff_role (code, name, name_en, builtin) VALUES
        ('admin', '管理者', 'Administrator', true),
        ('counter', 'カウンター', 'Counter staff', true),
        ('cataloguer', '整理担当', 'Cataloguer', true),
        ('manager', '管理職', 'Manager', true);
    INSERT INTO role_permission (role_id, area, action)
        SELECT r.id, a.area, x.action FROM staff_role r,
            unnest(ARRAY['catalogue','circulation','patrons','statistics','system']) AS a(area),
            unnest(ARRAY['view','update','print','export','administer']) AS x(action)
        WHERE r.code = 'admin';
    INSERT INTO role_permission (role_id, area, action)
        SELECT r.id, p.area, p.action FROM staff_role r, (VALUES
            ('counter','circulation','view'), ('counter','circulation','update'), ('counter','circulation','print'),
            ('counter','patrons','view'), ('counter','patrons','update'), ('counter','patrons','print'),
            ('counter','catalogue','view'),
            ('cataloguer','catalogue','view'), ('cataloguer','catalogue','update'),
            ('cataloguer','catalogue','print'), ('cataloguer','catalogue','export'),
            ('cataloguer','circulation','view'),
            ('manager','catalogue','view'), ('manager','circulation','view'), ('manager','patrons','view'),
            ('manager','statistics','view'), ('manager','statistics','print'), ('manager','statistics','export'),
            ('manager','system','view')
        ) AS p(role, area, action) WHERE r.code = p.role;

    -- The OPAC's database role reads public catalogue data only; every table a later migration
    -- adds stays closed to it unless that migration grants it explicitly.
    DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shoka_opac_reader') THEN
            CREATE ROLE shoka_opac_reader NOLOGIN;
        END IF;
    END $$;
    REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
    GRANT USAGE ON SCHEMA public TO shoka_opac_reader;
    GRANT SELECT ON branch, library_setting TO shoka_opac_reader;
    """)


def downgrade() -> None:
    raise NotImplementedError("Shoka migrations go forward only; restore a backup to go back.")
