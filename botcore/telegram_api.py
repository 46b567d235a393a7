"""Builds python-telegram-bot's ``Bot`` for the configured Bot API server (Telegram's, or a
self-hosted one), owns the library-wide settings that go with it, and connects it at startup."""

from __future__ import annotations

import os
from datetime import timedelta

import telegram
from loguru import logger
from telegram.ext import AIORateLimiter, ExtBot

from botcore.errors import StartupError


def make_bot(
    token: str,
    api_url: str,
    *,
    rate_per_s: float = 30.0,
    group_rate_per_min: float = 20.0,
    local_mode: bool = False,
) -> telegram.Bot:
    """Requests go to ``{api_url}/bot<token>/…`` and files come from ``{api_url}/file/bot<token>/…``,
    or, with ``local_mode`` (a self-hosted Bot API server started with ``--local``), from the
    absolute path ``getFile`` returns, read from this machine's disk: such a server does not
    serve ``/file/bot…``, and lifts the 20 MB download limit.

    Outgoing requests pass python-telegram-bot's ``AIORateLimiter``, which paces them to
    Telegram's flood limits (``rate_per_s`` overall, ``group_rate_per_min`` per group;
    ``rate_per_s=0`` turns it off). Its own retries are off: a ``RetryAfter`` that still comes
    goes to the job queue, which waits as told without holding a worker, and survives a restart."""
    # Opt in to the library's announced behaviour: durations such as RetryAfter.retry_after are
    # timedeltas. Without this, every RetryAfter raises a deprecation warning.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    limiter = (
        AIORateLimiter(
            overall_max_rate=rate_per_s,
            overall_time_period=1,
            group_max_rate=group_rate_per_min,
            group_time_period=60,
            max_retries=0,
        )
        if rate_per_s > 0
        else None
    )
    return ExtBot(
        token,
        base_url=f"{api_url}/bot",
        base_file_url=f"{api_url}/file/bot",
        rate_limiter=limiter,
        local_mode=local_mode,
    )


def retry_after_seconds(exc: telegram.error.RetryAfter) -> float:
    """Flood control's wait, whether the library hands it over as seconds or as a timedelta."""
    wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


async def connect(bot: telegram.Bot, api_url: str, commands: list[tuple[str, str]]) -> None:
    """getMe (fatal if it fails), then drop any webhook (it excludes polling) and register the
    command menu (both only worth a warning: the bot works without them)."""
    try:
        await bot.initialize()
    except telegram.error.InvalidToken:
        raise StartupError(
            "TELEGRAM_BOT_TOKEN: Telegram rejected this token (revoked or mistyped?)"
        ) from None
    except telegram.error.TelegramError as exc:
        raise StartupError(
            f"TELEGRAM_API_URL: cannot reach the Bot API at {api_url} ({type(exc).__name__})"
        ) from None
    log = logger.bind(component="telegram")
    try:
        await bot.delete_webhook()
    except telegram.error.TelegramError as exc:
        log.warning("could not remove a webhook ({}); polling fails while one is set", type(exc).__name__)
    try:
        await bot.set_my_commands(commands)
    except telegram.error.TelegramError as exc:
        log.warning("could not register the command menu ({})", type(exc).__name__)
