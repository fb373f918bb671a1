"""Configuration from the environment, with embedded defaults.

Every process (serve, the web apps, workers, CLI commands) reads the same variables, so a
command run beside `shoka serve` finds the same data directory and services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

from api import clock  # noqa: F401 - every process that reads its settings counts days in the library's time


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


def process_count(name: str) -> int:
    """A number of processes from the variable `name` (1 or more); one per core when it is unset."""
    value = os.environ.get(name, "").strip()
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name} must be a whole number of processes, 1 or more (got {value!r}).")
    return int(value)


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
    # Email notices (通知メール). No SMTP host: mail is off and notices wait as pending.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)  # never in a logged repr
    smtp_tls: str = "starttls"
    mail_from: str | None = None
    # The OPAC's channel to the internal API (My Library): where it is and the shared service token.
    internal_url: str = ""
    service_token: str | None = field(default=None, repr=False)

    @property
    def internal_base_url(self) -> str:
        """SHOKA_INTERNAL_URL, or the staff app on this machine."""
        return (self.internal_url or f"http://127.0.0.1:{self.staff_port}").rstrip("/")

    @property
    def mail_enabled(self) -> bool:
        return self.smtp_host is not None

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
    smtp_host, smtp_tls, mail_from = _smtp_settings()
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
        smtp_host=smtp_host,
        smtp_port=_port("SMTP_PORT", SMTP_TLS_MODES[smtp_tls]),
        smtp_user=os.environ.get("SMTP_USER") or None,
        smtp_password=os.environ.get("SMTP_PASSWORD") or None,
        smtp_tls=smtp_tls,
        mail_from=mail_from,
        internal_url=_url("SHOKA_INTERNAL_URL", ("http", "https")) or f"http://127.0.0.1:{staff_port}",
        service_token=os.environ.get("SHOKA_SERVICE_TOKEN") or None,
    )


SMTP_TLS_MODES = {"starttls": 587, "ssl": 465, "none": 25}  # mode → its usual port


def _smtp_settings() -> tuple[str | None, str, str | None]:
    """SMTP_HOST, SMTP_TLS and SHOKA_MAIL_FROM, checked together: a host needs the library's address."""
    host = (os.environ.get("SMTP_HOST") or "").strip() or None
    tls = (os.environ.get("SMTP_TLS") or "starttls").strip().lower()
    if tls not in SMTP_TLS_MODES:
        raise ConfigError(f"SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}, got {os.environ['SMTP_TLS']!r}")
    mail_from = (os.environ.get("SHOKA_MAIL_FROM") or "").strip() or None
    if host is not None and mail_from is None:
        raise ConfigError(f"SHOKA_MAIL_FROM must be set when SMTP_HOST is set ({host!r}): the library's own address, "
                          "e.g. '書架市立図書館 <library@example.jp>'")
    if mail_from is not None and "@" not in parseaddr(mail_from)[1]:
        raise ConfigError(f"SHOKA_MAIL_FROM must be an email address such as '書架市立図書館 <library@example.jp>', "
                          f"got {mail_from!r}")
    return host, tls, mail_from
