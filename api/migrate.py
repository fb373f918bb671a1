"""Versioned schema migrations (Alembic, plain SQL) and the OPAC login role."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


logging.getLogger("alembic").setLevel(logging.WARNING)


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a '%' in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", _sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def head() -> str:
    return str(ScriptDirectory.from_config(_config("postgresql://x")).get_current_head())


def current(url: str) -> str | None:
    engine = create_engine(_sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def pending(url: str) -> bool:
    return current(url) != head()


def upgrade(url: str) -> tuple[str | None, str]:
    before = current(url)
    command.upgrade(_config(url), "head")
    return before, head()


def ensure_opac_login(url: str, role: str) -> None:
    """Let the OPAC's login role read what shoka_opac_reader may read (and nothing else)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists:
            conn.execute(psycopg.sql.SQL("GRANT shoka_opac_reader TO {}").format(psycopg.sql.Identifier(role)))
