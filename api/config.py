"""Configuration from the environment, with embedded defaults.

Every process (serve, the web apps, workers, CLI commands) reads the same variables, so a
command run beside `shoka serve` finds the same data directory and services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    """A setting has a value Shoka cannot use; the message names the variable and the value."""


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a port number (1-65535), got {raw!r}") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name} must be a port number (1-65535), got {raw!r}")
    return value


def _url(name: str, schemes: tuple[str, ...]) -> str | None:
    raw = os.environ.get(name) or None
    if raw is not None and not raw.startswith(tuple(f"{s}://" for s in schemes)):
        raise ConfigError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str
    opac_port: int
    staff_port: int
    database_url: str | None
    opac_database_url: str | None
    redis_url: str | None
    opensearch_url: str | None
    library_name: str
    # The OPAC's channel to the internal API (My Library): where it is and the shared service token.
    internal_url: str = ""
    service_token: str | None = field(default=None, repr=False)

    @property
    def internal_base_url(self) -> str:
        """SHOKA_INTERNAL_URL, or the staff app on this machine."""
        return (self.internal_url or f"http://127.0.0.1:{self.staff_port}").rstrip("/")

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_valkey(self) -> bool:
        return self.redis_url is None

    @property
    def search_engine(self) -> str:
        return "opensearch" if self.opensearch_url else "tantivy"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("SHOKA_DATA_DIR") or "var").expanduser().absolute()
    staff_port = _port("SHOKA_STAFF_PORT", 8001)
    return Settings(
        data_dir=data_dir,
        host=os.environ.get("SHOKA_HOST") or "127.0.0.1",
        opac_port=_port("SHOKA_OPAC_PORT", 8000),
        staff_port=staff_port,
        database_url=_url("DATABASE_URL", ("postgresql", "postgres")),
        opac_database_url=_url("OPAC_DATABASE_URL", ("postgresql", "postgres")),
        redis_url=_url("REDIS_URL", ("redis", "rediss", "unix")),
        opensearch_url=_url("OPENSEARCH_URL", ("http", "https")) or _url("SEARCH_URL", ("http", "https")),
        library_name=os.environ.get("SHOKA_LIBRARY_NAME") or "書架市立図書館",
        internal_url=_url("SHOKA_INTERNAL_URL", ("http", "https")) or f"http://127.0.0.1:{staff_port}",
        service_token=os.environ.get("SHOKA_SERVICE_TOKEN") or None,
    )
