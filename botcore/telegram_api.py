"""Builds python-telegram-bot's ``Bot`` for the configured Bot API server (Telegram's, or a
self-hosted one), and owns the library-wide settings that go with it."""

from __future__ import annotations

import os
from datetime import timedelta

import telegram


def make_bot(token: str, api_url: str) -> telegram.Bot:
    """Requests go to ``{api_url}/bot<token>/…`` and files come from ``{api_url}/file/bot<token>/…``."""
    # Opt in to the library's announced behaviour: durations such as RetryAfter.retry_after are
    # timedeltas. Without this, every RetryAfter raises a deprecation warning.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    return telegram.Bot(token, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot")


def retry_after_seconds(exc: telegram.error.RetryAfter) -> float:
    """Flood control's wait, whether the library hands it over as seconds or as a timedelta."""
    wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
