"""Reads one environment variable as a typed value, or raises ``ConfigError`` naming it and
what was expected. ``config`` says which variables there are; this says how each kind is read."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from botcore.errors import ConfigError
from botcore.i18n import SHIPPED, shipped

T = TypeVar("T")


class EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: str) -> str:
        value = self._env.get(name, "").strip()
        return value or default

    def text(self, name: str, default: str) -> str:
        """Like ``get``, but a variable that is set and empty stays empty."""
        return self._env[name].strip() if name in self._env else default

    def url(self, name: str, default: str) -> str:
        value = self.get(name, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(name, "an http:// or https:// URL", value)
        return value

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

    def language(self, name: str) -> str | None:
        """A shipped catalog by its language tag ("es", "pt-BR"), or None when not set."""
        value = self.get(name, "")
        if not value:
            return None
        language = shipped(value)
        if language is None:
            tags = ", ".join(name.replace("_", "-") for name in SHIPPED)
            raise ConfigError(name, f"one of {tags} (or empty: each user's own language)", value)
        return language

    def ids(self, name: str) -> frozenset[int]:
        """Telegram ids separated by commas or spaces (group chat ids are negative)."""
        raw = self._env.get(name, "").replace(",", " ").split()
        try:
            return frozenset(int(item) for item in raw)
        except ValueError:
            raise ConfigError(
                name, "Telegram ids separated by commas, like 12345,67890", self._env.get(name)
            ) from None

    def ids_or_all(self, name: str) -> frozenset[int] | None:
        """``*`` for everyone (None), else ids as for ``ids``; unset is nobody (empty)."""
        return None if self._env.get(name, "").strip() == "*" else self.ids(name)

    def models(self, name: str, default: str) -> tuple[str, ...]:
        """Model names separated by commas, each once; ``default`` leads unless listed. Unset: ()."""
        items = tuple(dict.fromkeys(i.strip() for i in self._env.get(name, "").split(",") if i.strip()))
        if bad := [item for item in items if len(item) > 200 or re.search(r"\s", item)]:
            raise ConfigError(name, "model names (≤ 200 characters, no spaces) separated by commas", bad[0])
        return items if not items or default in items else (default, *items)

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, "true" if default else "false").lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, "true or false", self._env.get(name))

    def optional_number(self, name: str, default: float | None = None) -> float | None:
        """A money amount; unset (or ``off``) means no limit."""
        if self._env.get(name, "").strip().lower() in ("off", "none"):
            return None
        value = self.number(name, -1.0, float, minimum=0)
        return default if value < 0 else value

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
