"""The gate at intake: decides, before anything is stored, whether a Telegram update is served.
Who may talk to the bot (ALLOWED_USER_IDS, ADMIN_USER_IDS, ALLOWED_CHAT_IDS), whether a group
message is addressed to the bot, and how fast (per-user and global rate limits, in memory, per
process). A refused or rate-limited message costs no job and no upstream call; its sender gets
a short notice, at most once per window, sent in the background so intake never waits."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from loguru import logger

from botcore import texts
from botcore.errors import JobError
from botcore.incoming import sender_of, valid_id
from botcore.messenger import Messenger
from botcore.models import NewJob

Route = Callable[[dict[str, Any]], list[NewJob]]
_GROUPS = ("group", "supergroup")
_MAX_PENDING_NOTICES = 100  # beyond this, notices are dropped (a flood of strangers)
_DECISIONS_KEPT = 4096  # rate-limit verdicts remembered by update id (a batch holds at most 100)


class RateLimits:
    """Per-user and overall limits over a sliding window (one minute by default), from the
    ``limits`` library's sliding-window counter: each key is two fixed-window counters weighted
    together, and both expire with the window, so memory stays bounded however many users come
    (its moving-window strategy keeps an empty list for every key ever seen)."""

    def __init__(self, per_user: int, overall: int, notices: int = 20, *, window_s: int = 60) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._user = RateLimitItemPerSecond(per_user, window_s) if per_user else None
        self._all = RateLimitItemPerSecond(overall, window_s) if overall else None
        self._notices = RateLimitItemPerSecond(notices, window_s)

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
        self._decided: OrderedDict[int, tuple[str, float] | None] = OrderedDict()  # update id -> verdict
        self._notices: set[asyncio.Task[None]] = set()
        self._log = logger.bind(component="gate")

    def route(self, update: dict[str, Any]) -> list[NewJob]:
        """The jobs for ``update``: none when it is not for us, not allowed, or over a limit.
        Rate limits are decided once per update: an update Telegram delivers again (its batch
        was not stored) gets the decision it had, and spends no quota a second time."""
        message = update.get("message")
        if not isinstance(message, dict):
            return []
        sender = sender_of(message)
        chat = message.get("chat")
        chat_id = chat.get("id") if isinstance(chat, dict) else None
        chat_type = chat.get("type") if isinstance(chat, dict) else None
        if sender is None or not valid_id(chat_id) or chat_type == "channel":
            return []  # channel posts and the like: nobody to serve
        if not valid_id(message.get("message_id")):
            return []  # Telegram always sends one: without it this is no message to answer
        is_admin = sender.id in self._admins
        if chat_type in _GROUPS:
            if not self.addressed(message):
                return []
            if self._chats is not None and chat_id not in self._chats:
                self._notice(message, "group", texts.GROUP_NOT_ALLOWED.format(chat_id=chat_id))
                return []
        elif not is_admin and self._users is not None and sender.id not in self._users:
            self._log.info("refused user {} (not in ALLOWED_USER_IDS)", sender.id)
            self._notice(message, "refused", texts.NOT_ALLOWED.format(user_id=sender.id))
            return []
        if not (is_admin and self._exempt_admins):
            over = self._rate_decision(update.get("update_id"), sender.id)
            if over is not None:
                which, wait = over
                text = texts.RATE_LIMITED_USER if which == "user" else texts.RATE_LIMITED_GLOBAL
                self._log.info("user {} is over the {} rate limit", sender.id, which)
                self._notice(message, f"rate-{which}-{sender.id}", text.format(seconds=math.ceil(wait)))
                return []
        return self._route(update)

    def _rate_decision(self, update_id: object, user_id: int) -> tuple[str, float] | None:
        """The rate limits' verdict on this update, counted the first time it is seen only."""
        key = update_id if valid_id(update_id) else None
        if key is not None and key in self._decided:
            return self._decided[key]
        verdict = self._limits.hit(user_id)
        if key is not None:
            self._decided[key] = verdict
            if len(self._decided) > _DECISIONS_KEPT:  # a redelivery comes within a few batches
                self._decided.popitem(last=False)
        return verdict

    def addressed(self, message: dict[str, Any]) -> bool:
        """In a group: a command, a reply to one of our messages, or a mention of us. A forwarded
        message that starts with "/" is somebody's text, not a command to us."""
        text = message.get("text") or message.get("caption") or ""
        if not isinstance(text, str):
            return False
        if text.startswith("/") and "forward_origin" not in message:
            _, _, target = text.split(maxsplit=1)[0].partition("@") if text.strip() else ("", "", "")
            return not target or target.lower() == self._mention[1:]  # not a command for another bot
        replied = message.get("reply_to_message")
        replied_from = replied.get("from") if isinstance(replied, dict) else None
        if isinstance(replied_from, dict) and replied_from.get("id") == self._bot_id:
            return True
        entities = message.get("entities") or message.get("caption_entities") or []
        for entity in entities if isinstance(entities, list) else []:
            if not isinstance(entity, dict):
                continue
            user = entity.get("user")
            mentioned = isinstance(user, dict) and user.get("id") == self._bot_id
            if entity.get("type") == "text_mention" and mentioned:
                return True
            if entity.get("type") == "mention" and _utf16_slice(text, entity).lower() == self._mention:
                return True
        return False

    def _notice(self, message: dict[str, Any], what: str, text: str) -> None:
        """Tell the sender why nothing happens, at most once per window, without waiting."""
        chat_id = int(message["chat"]["id"])  # checked by route()
        now = time.monotonic()
        if now - self._told.get((chat_id, what), -math.inf) < self._notice_every_s:
            return
        if len(self._notices) >= _MAX_PENDING_NOTICES or not self._limits.notice_allowed():
            return  # a flood of strangers must not crowd real answers out of Telegram's limits
        if len(self._told) > 10_000:  # forget old entries: this must not grow without bound
            self._told = {k: t for k, t in self._told.items() if now - t < self._notice_every_s}
        self._told[(chat_id, what)] = now
        reply_to, thread_id = message.get("message_id"), message.get("message_thread_id")
        task = asyncio.get_running_loop().create_task(
            self._send(
                chat_id,
                text,
                reply_to if valid_id(reply_to) else None,
                thread_id if valid_id(thread_id) else None,
            )
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
    offset, length = entity.get("offset", 0), entity.get("length", 0)
    if not (valid_id(offset) and valid_id(length)) or offset < 0 or length < 0:
        return ""
    encoded = text.encode("utf-16-le", errors="surrogatepass")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")
