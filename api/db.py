"""PostgreSQL access: one psycopg connection pool per process, explicit transactions, dict rows."""

from __future__ import annotations

import threading

from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from api.clock import SESSION_OPTIONS  # importing it also sets the process's clock to the library's

_pools: dict[str, ConnectionPool[Connection[DictRow]]] = {}
_lock = threading.Lock()


def pool(url: str, *, min_size: int = 1, max_size: int = 20) -> ConnectionPool[Connection[DictRow]]:
    """The process's pool for `url`, created on first use."""
    with _lock:
        existing = _pools.get(url)
        if existing is None:
            existing = ConnectionPool(
                url,
                min_size=min_size,
                max_size=max_size,
                kwargs={"row_factory": dict_row, "application_name": "shoka", "autocommit": True,
                        "options": SESSION_OPTIONS},
                connection_class=Connection[DictRow],
                open=True,
                timeout=10,
                name="shoka",
            )
            _pools[url] = existing
        return existing


def close(url: str) -> None:
    with _lock:
        existing = _pools.pop(url, None)
    if existing is not None:
        existing.close()


def close_all() -> None:
    with _lock:
        for p in _pools.values():
            p.close()
        _pools.clear()


def connect(url: str) -> Connection[DictRow]:
    """A single connection for CLI commands and jobs that run once."""
    return Connection.connect(url, row_factory=dict_row, application_name="shoka-cli", autocommit=True,
                              options=SESSION_OPTIONS)
