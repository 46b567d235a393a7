"""Settings: read once from the environment (and ``.env``), validated, frozen.
Every variable the bot reads is parsed here and nowhere else."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

from botcore.errors import ConfigError, StartupError

T = TypeVar("T")

_TOKEN_RE = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{20,}$")
_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class Settings:
    telegram_bot_token: str = field(repr=False)
    data_dir: Path
    sqlite_synchronous: str  # NORMAL or FULL
    log_level: str
    worker_concurrency: int
    transcription_concurrency: int
    job_lease_s: float
    job_max_attempts: int
    outage_max_wait_s: float
    shutdown_grace_s: float
    job_retention_done_s: float
    job_retention_dead_s: float

    @property
    def db_path(self) -> Path:
        return self.data_dir / "bot.db"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        return tuple(s for s in (self.telegram_bot_token,) if s)


def load_settings(env_file: str | os.PathLike[str] | None = ".env") -> Settings:
    """Process environment over ``.env`` (the environment wins), then parse."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        try:
            values = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise StartupError(f"{env_file}: cannot read it ({exc})") from None
        merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(os.environ)
    return parse_settings(merged)


def parse_settings(env: Mapping[str, str]) -> Settings:
    reader = _Reader(env)
    token = reader.required("TELEGRAM_BOT_TOKEN")
    if not _TOKEN_RE.match(token):
        raise ConfigError("TELEGRAM_BOT_TOKEN", "a bot token from @BotFather, like 123456:ABC-DEF…")
    return Settings(
        telegram_bot_token=token,
        data_dir=Path(reader.get("DATA_DIR", "./data")),
        sqlite_synchronous=reader.choice("SQLITE_SYNCHRONOUS", "NORMAL", ("NORMAL", "FULL")),
        log_level=reader.choice("LOG_LEVEL", "INFO", _LOG_LEVELS),
        worker_concurrency=reader.number("WORKER_CONCURRENCY", 32, int, minimum=1),
        transcription_concurrency=reader.number("TRANSCRIPTION_CONCURRENCY", 3, int, minimum=1),
        job_lease_s=reader.number("JOB_LEASE_S", 60.0, float, minimum=3),
        job_max_attempts=reader.number("JOB_MAX_ATTEMPTS", 4, int, minimum=1),
        outage_max_wait_s=reader.number("OUTAGE_MAX_WAIT_S", 600.0, float, minimum=0),
        shutdown_grace_s=reader.number("SHUTDOWN_GRACE_S", 10.0, float, minimum=0),
        job_retention_done_s=reader.number("JOB_RETENTION_DONE_S", 300.0, float, minimum=0),
        job_retention_dead_s=reader.number("JOB_RETENTION_DEAD_S", 3600.0, float, minimum=0),
    )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: str) -> str:
        value = self._env.get(name, "").strip()
        return value or default

    def required(self, name: str) -> str:
        value = self._env.get(name, "").strip()
        if not value:
            raise ConfigError(name, "to be set (see .env.example)")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.get(name, default).upper()
        if value not in allowed:
            raise ConfigError(name, "one of " + ", ".join(allowed), self._env.get(name))
        return value

    def number(self, name: str, default: T, kind: Callable[[str], T], *, minimum: float) -> T:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        noun = "a whole number" if kind is int else "a number"
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(name, f"{noun} ≥ {minimum:g}", raw) from None
        if not math.isfinite(value) or value < minimum:  # type: ignore[arg-type, operator]
            raise ConfigError(name, f"{noun} ≥ {minimum:g}", raw)
        return value
