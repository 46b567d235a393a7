"""The gate at intake: decides, before anything is stored, whether a Telegram update is served.
Who may talk to the bot (ALLOWED_USER_IDS, ADMIN_USER_IDS, ALLOWED_CHAT_IDS), whether a group
message is addressed to the bot, and how fast (per-user and global rate limits, in memory, per
process). A refused or rate-limited message costs no job and no upstream call; its sender gets
a short notice, at most once per window, sent in the background so intake never waits."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection
from typing import Any

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from loguru import logger

from botcore import texts
from botcore.errors import JobError
from botcore.messenger import Messenger
from botcore.models import NewJob

Route = Callable[[dict[str, Any]], list[NewJob]]
_GROUPS = ("group", "supergroup")
_MAX_PENDING_NOTICES = 100  # beyond this, notices are dropped (a flood of strangers)


class RateLimits:
    """Sliding (moving) windows of one minute, per user and for everyone (``limits``)."""

    def __init__(self, per_user: int, overall: int, notices: int = 20) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._user = RateLimitItemPerMinute(per_user) if per_user else None
        self._all = RateLimitItemPerMinute(overall) if overall else None
        self._notices = RateLimitItemPerMinute(notices)

    def notice_allowed(self) -> bool:
        """Refusal and wait notices, all chats together, are limited too (20 a minute)."""
        return self._limiter.hit(self._notices, "notice")

    def hit(self, user_id: int) -> tuple[str, float] | None:
        """Count one message. None if allowed; else which limit refused it and the seconds until
        the window has room again."""
        key = str(user_id)
        for name, item, keys in (("user", self._user, (key,)), ("global", self._all, ("*",))):
            if item is not None and not self._limiter.test(item, "msg", *keys):
                reset_at = self._limiter.get_window_stats(item, "msg", *keys).reset_time
                return name, max(1.0, reset_at - time.time())
        for item, keys in ((self._user, (key,)), (self._all, ("*",))):
            if item is not None:
                self._limiter.hit(item, "msg", *keys)
        return None


class Gate:
    def __init__(
        self,
        route: Route,
        messenger: Messenger,
        *,
        bot_id: int,
        bot_username: str,
        admin_ids: Collection[int],
        allowed_user_ids: Collection[int] | None,  # None: everyone
        allowed_chat_ids: Collection[int] | None,  # None: every group
        rate_limits: RateLimits,
        exempt_admins: bool = True,
        notice_every_s: float = 60.0,
    ) -> None:
        self._route = route
        self._messenger = messenger
        self._bot_id = bot_id
        self._mention = "@" + bot_username.lower()
        self._admins = frozenset(admin_ids)
        self._users = None if allowed_user_ids is None else frozenset(allowed_user_ids)
        self._chats = None if allowed_chat_ids is None else frozenset(allowed_chat_ids)
        self._limits = rate_limits
        self._exempt_admins = exempt_admins
        self._notice_every_s = notice_every_s
        self._told: dict[tuple[int, str], float] = {}  # (chat, notice) -> when last told
        self._notices: set[asyncio.Task[None]] = set()
        self._log = logger.bind(component="gate")

    def route(self, update: dict[str, Any]) -> list[NewJob]:
        """The jobs for ``update``: none when it is not for us, not allowed, or over a limit."""
        message = update.get("message")
        if not isinstance(message, dict):
            return []
        # An anonymous group admin or a channel writing in a group comes with a stand-in "from"
        # (shared by all of them): the chat they speak as is who counts.
        sender = message.get("sender_chat") or message.get("from") or {}
        user_id = sender.get("id")
        chat = message.get("chat") or {}
        chat_id, chat_type = chat.get("id"), chat.get("type")
        if not isinstance(user_id, int) or not isinstance(chat_id, int) or chat_type == "channel":
            return []  # channel posts and the like: nobody to serve
        is_admin = user_id in self._admins
        if chat_type in _GROUPS:
            if not self.addressed(message):
                return []
            if self._chats is not None and chat_id not in self._chats:
                self._notice(message, "group", texts.GROUP_NOT_ALLOWED.format(chat_id=chat_id))
                return []
        elif not is_admin and self._users is not None and user_id not in self._users:
            self._log.info("refused user {} (not in ALLOWED_USER_IDS)", user_id)
            self._notice(message, "refused", texts.NOT_ALLOWED.format(user_id=user_id))
            return []
        if not (is_admin and self._exempt_admins):
            over = self._limits.hit(user_id)
            if over is not None:
                which, wait = over
                text = texts.RATE_LIMITED_USER if which == "user" else texts.RATE_LIMITED_GLOBAL
                self._log.info("user {} is over the {} rate limit", user_id, which)
                self._notice(message, f"rate-{which}-{user_id}", text.format(seconds=math.ceil(wait)))
                return []
        return self._route(update)

    def addressed(self, message: dict[str, Any]) -> bool:
        """In a group: a command, a reply to one of our messages, or a mention of us."""
        text = message.get("text") or message.get("caption") or ""
        if text.startswith("/"):
            _, _, target = text.split(maxsplit=1)[0].partition("@")
            return not target or target.lower() == self._mention[1:]  # not a command for another bot
        replied = message.get("reply_to_message") or {}
        if (replied.get("from") or {}).get("id") == self._bot_id:
            return True
        entities = message.get("entities") or message.get("caption_entities") or []
        for entity in entities:
            if entity.get("type") == "text_mention" and (entity.get("user") or {}).get("id") == self._bot_id:
                return True
            if entity.get("type") == "mention" and _utf16_slice(text, entity).lower() == self._mention:
                return True
        return False

    def _notice(self, message: dict[str, Any], what: str, text: str) -> None:
        """Tell the sender why nothing happens, at most once per window, without waiting."""
        chat_id = int(message["chat"]["id"])
        now = time.monotonic()
        if now - self._told.get((chat_id, what), -math.inf) < self._notice_every_s:
            return
        if len(self._notices) >= _MAX_PENDING_NOTICES or not self._limits.notice_allowed():
            return  # a flood of strangers must not crowd real answers out of Telegram's limits
        if len(self._told) > 10_000:  # forget old entries: this must not grow without bound
            self._told = {k: t for k, t in self._told.items() if now - t < self._notice_every_s}
        self._told[(chat_id, what)] = now
        task = asyncio.get_running_loop().create_task(
            self._send(chat_id, text, message.get("message_id"), message.get("message_thread_id"))
        )
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _send(self, chat_id: int, text: str, reply_to: int | None, thread_id: int | None) -> None:
        try:
            await self._messenger.send_text(chat_id, text, reply_to=reply_to, thread_id=thread_id)
        except JobError as exc:
            self._log.warning("could not send a notice to chat {}: {}", chat_id, exc)

    async def aclose(self) -> None:
        """Let notices in flight finish briefly, then drop the rest (they are courtesy only)."""
        if self._notices:
            _, pending = await asyncio.wait(set(self._notices), timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _utf16_slice(text: str, entity: dict[str, Any]) -> str:
    """Telegram's entity offsets count UTF-16 code units."""
    encoded = text.encode("utf-16-le")
    start, length = int(entity.get("offset", 0)) * 2, int(entity.get("length", 0)) * 2
    return encoded[start : start + length].decode("utf-16-le", errors="replace")
