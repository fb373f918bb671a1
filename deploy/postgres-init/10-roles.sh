#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data volume
# (docker-entrypoint-initdb.d). It creates the database roles of the OPAC:
#
#   shoka_opac_reader  NOLOGIN group role. Migration 0001 (and later migrations) grant it SELECT on
#                      the public catalogue tables only; patron and staff tables stay closed to it.
#   $OPAC_DB_USER      the login role the internet-facing OPAC connects as (OPAC_DATABASE_URL).
#                      It is a member of shoka_opac_reader and can do nothing else.
#
# `shoka migrate` creates shoka_opac_reader too if it is missing, but it grants it to a login role
# only in the embedded mode; with compose this script does that.
#
# To change the OPAC password later (this script does not run again on an existing volume):
#   docker compose exec postgres psql -U shoka -d shoka \
#     -c "ALTER ROLE shoka_opac PASSWORD 'new-password'"     (user and database names from .env)
# then put the new password in .env as OPAC_DB_PASSWORD and run `docker compose up -d`.
set -euo pipefail

: "${OPAC_DB_USER:?OPAC_DB_USER must be set (see .env.example)}"
: "${OPAC_DB_PASSWORD:?OPAC_DB_PASSWORD must be set (see .env.example)}"
if [ "$OPAC_DB_USER" = "${POSTGRES_USER:-postgres}" ]; then
  echo "OPAC_DB_USER must differ from POSTGRES_USER: the OPAC needs its own read-only role." >&2
  exit 1
fi

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
     --dbname "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" \
     -v opac_user="$OPAC_DB_USER" -v opac_password="$OPAC_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE shoka_opac_reader NOLOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shoka_opac_reader') \gexec

SELECT format('CREATE ROLE %I LOGIN INHERIT PASSWORD %L', :'opac_user', :'opac_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'opac_user') \gexec
SELECT format('ALTER ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L',
              :'opac_user', :'opac_password') \gexec

-- Belt and braces: even a wrongly granted table cannot be written through the OPAC's connection.
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'opac_user') \gexec

GRANT shoka_opac_reader TO :"opac_user";
SQL
echo "10-roles.sh: created the OPAC login role $OPAC_DB_USER (member of shoka_opac_reader)."
