"""Where the database, Valkey and search live: an external URL from the environment, or the
embedded service in the data directory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from api.config import ConfigError, Settings
from api.runtime.datadir import DataDirError, ServeLock, prepare
from api.runtime.postgres import OPAC_ROLE, EmbeddedPostgres
from api.runtime.valkey import EmbeddedValkey


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return EmbeddedPostgres(settings.data_dir).url()


def opac_database_url(settings: Settings) -> str:
    if settings.opac_database_url:
        return settings.opac_database_url
    if settings.database_url:
        raise ConfigError("OPAC_DATABASE_URL must be set when DATABASE_URL is set: the OPAC connects "
                          "with its own read-only role (see docs/operations.md).")
    return EmbeddedPostgres(settings.data_dir).url(OPAC_ROLE)


def redis_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedValkey(settings.data_dir).url()


@contextlib.contextmanager
def database_available(settings: Settings, *, current_schema: bool = True) -> Iterator[str]:
    """For CLI commands: use the running database, or start the embedded one for the command's
    duration. A cluster this command started is stopped again unless `shoka serve` began meanwhile.

    With `current_schema`, the embedded database is migrated first (it belongs to this data
    directory); an external one must already be current.
    """
    from api import migrate

    if settings.database_url:
        if current_schema and migrate.pending(settings.database_url):
            raise DataDirError("The database schema is not current. Run `shoka migrate` first.")
        yield settings.database_url
        return
    prepare(settings.data_dir)
    pg = EmbeddedPostgres(settings.data_dir)
    started = pg.ensure_running()
    try:
        if current_schema:
            migrate.upgrade(pg.url())
            migrate.ensure_opac_login(pg.url(), OPAC_ROLE)
        yield pg.url()
    finally:
        if started and ServeLock(settings.data_dir).holder() is None:
            pg.stop()
