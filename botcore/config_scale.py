"""The settings for running as several processes: the shared database (``DATABASE_URL``), which
part of the bot this process runs (``BOT_ROLE``) and how updates arrive (``WEBHOOK_*``, or
polling). Parsed and checked at startup like every other setting; no I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from botcore.config_reader import EnvReader
from botcore.errors import ConfigError

_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")  # Telegram's secret_token alphabet, 16 or more


class Role(StrEnum):
    ALL = "all"  # takes updates and works jobs: the single-process default
    INTAKE = "intake"  # takes updates (webhook, or polling when it leads), works no job
    WORKER = "worker"  # works jobs only


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str  # the public address Telegram posts to; its path is the one served
    secret: str = field(repr=False)  # X-Telegram-Bot-Api-Secret-Token
    listen: str  # where this process listens (behind the reverse proxy)
    port: int
    max_connections: int  # Telegram's parallel deliveries to this bot, all processes together

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"


@dataclass(frozen=True, slots=True)
class Scale:
    database_url: str | None = field(default=None, repr=False)  # None: SQLite in DATA_DIR
    database_pool: int = 10  # connections this process may open to PostgreSQL
    role: Role = Role.ALL
    webhook: Webhook | None = None  # None: long polling

    def secrets(self) -> tuple[str, ...]:
        passwords = _url_secrets(self.database_url) if self.database_url else ()
        return tuple(s for s in (*passwords, self.webhook.secret if self.webhook else None) if s)

    @property
    def takes_updates(self) -> bool:
        return self.role is not Role.WORKER

    @property
    def works_jobs(self) -> bool:
        return self.role is not Role.INTAKE


def _url_secrets(url: str) -> tuple[str, ...]:
    """The passwords in a database URL, as written and decoded: in the user part, or as a
    ``password`` or ``sslpassword`` query parameter."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() in ("password", "sslpassword"):
            found.append(value)
    return tuple(dict.fromkeys(f for v in found if v for f in (v, unquote(v))))


def parse_scale(reader: EnvReader, *, telegram_api_url: str) -> Scale:
    database_url = _database_url(reader)
    role = Role(reader.choice("BOT_ROLE", "ALL", tuple(r.value.upper() for r in Role)).lower())
    if role is not Role.ALL and database_url is None:
        raise ConfigError(
            "BOT_ROLE", "all unless DATABASE_URL is set: intake and workers apart need PostgreSQL", role.value
        )
    return Scale(
        database_url=database_url,
        database_pool=reader.number("DATABASE_POOL_SIZE", 10, int, minimum=2),
        role=role,
        webhook=_webhook(reader, telegram_api_url),
    )


def _database_url(reader: EnvReader) -> str | None:
    value = reader.get("DATABASE_URL", "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or "host=" in parts.query):
        # The value itself is not shown: it may hold a password.
        raise ConfigError(
            "DATABASE_URL", "a postgresql://user:password@host:5432/dbname URL, or unset for SQLite"
        )
    try:
        import asyncpg  # noqa: F401  # optional: requirements-postgres.txt
    except ImportError:
        raise ConfigError(
            "DATABASE_URL", "the PostgreSQL driver: pip install -r requirements-postgres.txt"
        ) from None
    return value


def _webhook(reader: EnvReader, telegram_api_url: str) -> Webhook | None:
    url = reader.get("WEBHOOK_URL", "").strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    # Telegram posts to https only; a self-hosted Bot API server (tests, a LAN) may post to http.
    schemes = ("https",) if urlsplit(telegram_api_url).hostname == "api.telegram.org" else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError("WEBHOOK_URL", "the public https:// address Telegram posts updates to", url)
    secret = reader.get("WEBHOOK_SECRET", "")
    if not _SECRET_RE.match(secret):
        raise ConfigError(
            "WEBHOOK_SECRET", "16 to 256 characters of A-Z, a-z, 0-9, _ and - (with WEBHOOK_URL)"
        )
    return Webhook(
        url=url,
        secret=secret,
        listen=reader.get("WEBHOOK_LISTEN", "127.0.0.1"),
        port=reader.number("WEBHOOK_PORT", 8080, int, minimum=1),
        max_connections=min(100, reader.number("WEBHOOK_MAX_CONNECTIONS", 40, int, minimum=1)),
    )
