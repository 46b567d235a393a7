"""Builds python-telegram-bot's ``Bot`` for the configured Bot API server (Telegram's, or a
self-hosted one), owns the library-wide settings that go with it, and connects it at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import timedelta

import httpx
import telegram
from loguru import logger
from telegram.ext import ExtBot

from botcore.errors import Cause, PermanentError, StartupError, TransientError, UpstreamUnavailable
from botcore.pacing import Lane, PacedLimiter

# An inline keyboard: rows of buttons, each its label and the data its press sends back.
Keyboard = Sequence[Sequence[tuple[str, str]]]


def make_bot(
    token: str,
    api_url: str,
    *,
    rate_per_s: float = 30.0,
    group_rate_per_min: float = 20.0,
    local_mode: bool = False,
) -> ExtBot[Lane]:
    """Requests go to ``{api_url}/bot<token>/…`` and files come from ``{api_url}/file/bot<token>/…``,
    or, with ``local_mode`` (a self-hosted Bot API server started with ``--local``), from the
    absolute path ``getFile`` returns, read from this machine's disk: such a server does not
    serve ``/file/bot…``, and lifts the 20 MB download limit.

    Outgoing requests pass our ``PacedLimiter``, which paces them to Telegram's flood limits
    (``rate_per_s`` overall, ``group_rate_per_min`` per group; ``rate_per_s=0`` turns pacing off)
    and lets answers go before cosmetic calls. Nothing is retried there: a ``RetryAfter`` that
    still comes goes to the job queue, which waits as told without holding a worker, and
    survives a restart."""
    # Opt in to the library's announced behaviour: durations such as RetryAfter.retry_after are
    # timedeltas. Without this, every RetryAfter raises a deprecation warning.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    limiter = PacedLimiter(rate_per_s=rate_per_s, group_rate_per_min=group_rate_per_min)
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


async def connect(
    bot: telegram.Bot, api_url: str, menus: Mapping[str | None, list[tuple[str, str]]], *, polls: bool = True
) -> None:
    """getMe (fatal if it fails), then, if this process ``polls``, drop any webhook (it excludes
    polling), and register the command menu, in each language of ``menus`` (by Telegram's
    two-letter language code; None: for everyone else). Both only worth a warning: the bot works
    without them."""
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
        if polls:
            await bot.delete_webhook()
    except telegram.error.TelegramError as exc:
        log.warning("could not remove a webhook ({}); polling fails while one is set", type(exc).__name__)
    for code, commands in menus.items():
        try:
            await bot.set_my_commands(commands, language_code=code)
        except telegram.error.TelegramError as exc:
            log.warning("could not register the command menu for {} ({})", code or "all", type(exc).__name__)


def reply_parameters(reply_to: int | None) -> telegram.ReplyParameters | None:
    return telegram.ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None


def utf16_cut(text: str, units: int) -> str:
    """At most ``units`` UTF-16 code units, as Telegram counts a caption's length."""
    encoded = text.encode("utf-16-le")
    if len(encoded) <= units * 2:
        return text
    return encoded[: (units - 1) * 2].decode("utf-16-le", errors="ignore") + "…"


def inline_markup(keyboard: Keyboard | None) -> telegram.InlineKeyboardMarkup | None:
    if not keyboard:
        return None
    return telegram.InlineKeyboardMarkup(
        [
            [telegram.InlineKeyboardButton(label, callback_data=data) for label, data in row]
            for row in keyboard
        ]
    )


def translate(exc: telegram.error.TelegramError) -> Exception:
    """BadRequest and Forbidden come before NetworkError: in python-telegram-bot they subclass it."""
    if isinstance(exc, telegram.error.RetryAfter):
        seconds = retry_after_seconds(exc)
        # Waiting is all flood control asks: it spends no attempt, so a long answer in a busy
        # group is not given up halfway.
        return UpstreamUnavailable("Telegram flood control", retry_after=seconds, cause=Cause.TELEGRAM)
    if isinstance(exc, telegram.error.ChatMigrated):
        return PermanentError(
            "Telegram: this group became a supergroup with a new chat id", cause=Cause.BLOCKED
        )
    if isinstance(exc, telegram.error.Forbidden):
        return PermanentError(
            "Telegram: the bot may not write to this chat (blocked or removed)", cause=Cause.BLOCKED
        )
    if isinstance(exc, telegram.error.BadRequest):
        return PermanentError(f"Telegram rejected the message: {exc.message[:200]}")
    if isinstance(exc, telegram.error.InvalidToken):
        return PermanentError("Telegram rejected the bot token")
    if isinstance(exc, telegram.error.TimedOut):
        # Telegram may have taken the message and only answered late: sending again could
        # duplicate it, so this spends attempts (at most JOB_MAX_ATTEMPTS copies, not one every
        # few seconds for as long as an outage may last).
        return TransientError("Telegram timed out", cause=Cause.TELEGRAM)
    if isinstance(exc, telegram.error.NetworkError) and isinstance(exc.__cause__, httpx.ConnectError):
        # Telegram unreachable (connection refused, no route, DNS): the request never left, the
        # reply is kept, and the job waits for Telegram without spending attempts.
        return UpstreamUnavailable("Telegram unreachable (could not connect)", cause=Cause.TELEGRAM)
    if isinstance(exc, telegram.error.NetworkError):
        # A 5xx, or a connection reset after the request was written: like a timeout, Telegram
        # may have acted on it, so this spends attempts rather than resend for as long as it lasts.
        return TransientError(f"Telegram failed: {type(exc).__name__}", cause=Cause.TELEGRAM)
    return TransientError(f"Telegram error: {type(exc).__name__}", cause=Cause.TELEGRAM)
