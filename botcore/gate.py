"""The gate at intake: decides, before anything is stored, whether a message is served. Who may
talk to the bot (ALLOWED_USER_IDS, ADMIN_USER_IDS, ALLOWED_CHAT_IDS), whether a group message is
addressed to the bot, and how fast (per-user and global rate limits, in memory, per process). A
refused message costs no job and no upstream call; the refusal says what to tell its sender, at
most once per window. Decides only: it sends nothing and stores nothing."""

from __future__ import annotations

import contextlib
import math
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from loguru import logger

from botcore import texts
from botcore.clock import Clock
from botcore.incoming import ChatKind, Incoming
from botcore.storage import KeyValueStore, RateCounter, album_key

_DECISIONS_KEPT = 4096  # rate-limit verdicts remembered by update id (a batch holds at most 100)
_ALBUMS_KEPT, _ALBUM_S = 1024, 60.0  # albums let in, remembered this long for their other parts


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
                # The library keeps its windows on the system clock, so this reads that clock too.
                return name, max(1.0, reset_at - time.time())
        for item, keys in ((self._user, (key,)), (self._all, ("*",))):
            if item is not None:
                self._limiter.hit(item, "msg", *keys)
        return None


class SharedRateLimits:
    """The same limits as ``RateLimits``, counted in the database (``storage.RateCounter``), so
    they hold for all the bot's processes together. Its verdicts are found before routing
    (``Gate.prepare``), since counting is a database call."""

    def __init__(
        self,
        counter: RateCounter,
        clock: Clock,
        per_user: int,
        overall: int,
        *,
        window_s: int = 60,
        kv: KeyValueStore | None = None,  # where albums let in are noted for the other processes
    ) -> None:
        self._counter = counter
        self._kv = kv
        self._clock = clock
        self._window_s = window_s
        self._limits = [("user", per_user), ("global", overall)]

    async def hit(self, user_id: int) -> tuple[str, float] | None:
        limits = [(f"user:{user_id}" if name == "user" else "*", n) for name, n in self._limits if n]
        names = [name for name, n in self._limits if n]
        over = await self._counter.hit(limits, window_s=self._window_s, now=self._clock.now())
        return None if over is None else (names[over[0]], over[1])

    async def album_let_in(self, chat_id: int, album: str) -> None:
        """Note for every process that this album was let in: its other parts (uncaptioned in a
        group, so not addressed to the bot) may be delivered to another process."""
        if self._kv is not None:
            await self._kv.put(album_key(self._hour(), chat_id, album), repr(self._clock.now()))

    async def album_seen(self, chat_id: int, album: str) -> float | None:
        """When another process let this album in (this process's clock), if it did lately."""
        if self._kv is None:
            return None
        hour = self._hour()
        for key in (album_key(hour, chat_id, album), album_key(hour - 1, chat_id, album)):
            stored = await self._kv.get(key)
            if stored is not None:
                with contextlib.suppress(ValueError):
                    return float(stored)
        return None

    def _hour(self) -> int:
        return int(self._clock.now() // 3600)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is not served (for the log), and what to tell its sender now, if anything
    (None: nothing at all, or they were told within the window)."""

    reason: str
    notice: str | None = None


class Gate:
    def __init__(
        self,
        *,
        clock: Clock,
        bot_id: int,
        bot_username: str,
        admin_ids: Collection[int],
        allowed_user_ids: Collection[int] | None,  # None: everyone
        allowed_chat_ids: Collection[int] | None,  # None: every group
        rate_limits: RateLimits,
        exempt_admins: bool = True,
        notice_every_s: float = 60.0,
        shared: SharedRateLimits | None = None,  # several processes: the limits in the database
    ) -> None:
        self._shared = shared
        self._clock = clock
        self._bot_id = bot_id
        self._username = bot_username.lower()
        self._admins = frozenset(admin_ids)
        self._users = None if allowed_user_ids is None else frozenset(allowed_user_ids)
        self._chats = None if allowed_chat_ids is None else frozenset(allowed_chat_ids)
        self._limits = rate_limits
        self._exempt_admins = exempt_admins
        self._notice_every_s = notice_every_s
        self._told: dict[tuple[int, str], float] = {}  # (chat, notice) -> when last told
        self._decided: OrderedDict[int, tuple[str, float] | None] = OrderedDict()  # update id -> verdict
        self._albums: OrderedDict[tuple[int, str], float] = OrderedDict()  # albums let in -> when
        self._log = logger.bind(component="gate")

    def admit(self, incoming: Incoming) -> Refusal | None:
        """None when ``incoming`` is served; else why not. Rate limits are decided once per
        update: one Telegram delivers again (its batch was not stored) gets the decision it had,
        and spends no quota a second time."""
        screened = self._screen(incoming)
        if screened is not None:
            reason, what, text = screened
            return Refusal(reason, None if text is None else self._notice(incoming.chat_id, what, text))
        sender = incoming.sender
        assert sender is not None  # screened
        if self._rate_counted(incoming):
            over = self._rate_decision(incoming.update_id, sender.id)
            if over is not None:
                which, wait = over
                text = texts.RATE_LIMITED_USER if which == "user" else texts.RATE_LIMITED_GLOBAL
                self._log.info("user {} is over the {} rate limit", sender.id, which)
                notice = self._notice(
                    incoming.chat_id, f"rate-{which}-{sender.id}", text.format(seconds=math.ceil(wait))
                )
                return Refusal(f"over the {which} rate limit", notice)
        self._let_in_album(incoming)
        return None

    def _let_in_album(self, incoming: Incoming) -> None:
        if incoming.album is not None:
            self._albums[(incoming.chat_id, incoming.album)] = self._clock.monotonic()
            while len(self._albums) > _ALBUMS_KEPT:
                self._albums.popitem(last=False)

    async def prepare(self, incoming: Incoming) -> None:
        """With rate limits shared by several processes (in the database): count this update
        now, so ``admit`` finds its verdict, and share what the other processes need to know of
        an album (that it was let in: its other parts may reach them). Without shared limits,
        nothing."""
        if self._shared is None or incoming.update_id in self._decided:
            return
        if incoming.album is not None and not self._album_let_in(incoming):
            let_in_at = await self._shared.album_seen(incoming.chat_id, incoming.album)
            if let_in_at is not None and self._clock.now() - let_in_at < _ALBUM_S:
                self._albums[(incoming.chat_id, incoming.album)] = self._clock.monotonic()
        if self._screen(incoming) is not None:
            return
        assert incoming.sender is not None  # screened
        if self._rate_counted(incoming):
            verdict = await self._shared.hit(incoming.sender.id)
            self._remember(incoming.update_id, verdict)
            if verdict is not None:
                return
        elif self._album_let_in(incoming):
            return  # a part of an album already let in: noted when it was
        if incoming.album is not None:  # let in: its other parts count no more, here or elsewhere
            self._let_in_album(incoming)
            await self._shared.album_let_in(incoming.chat_id, incoming.album)

    def _screen(self, incoming: Incoming) -> tuple[str, str, str | None] | None:
        """Whether ``incoming`` is refused before any rate limit: its reason, the kind of notice
        and the notice's text (None: nothing to tell). Decides only: no notice is counted."""
        sender = incoming.sender
        if sender is None or incoming.chat_kind is ChatKind.CHANNEL:
            return "nobody to serve", "", None  # channel posts and the like
        if incoming.in_group:
            if not (self._album_let_in(incoming) or self.addressed(incoming)):
                return "not addressed to the bot", "", None
            if self._chats is not None and incoming.chat_id not in self._chats:
                return "group not allowed", "group", texts.GROUP_NOT_ALLOWED.format(chat_id=incoming.chat_id)
        elif sender.id not in self._admins and self._users is not None and sender.id not in self._users:
            self._log.info("refused user {} (not in ALLOWED_USER_IDS)", sender.id)
            return "user not allowed", "refused", texts.NOT_ALLOWED.format(user_id=sender.id)
        return None

    def _rate_counted(self, incoming: Incoming) -> bool:
        """Whether a message let in counts against the rate limits: not an exempt admin's, not
        the second part of an album (an album counts once)."""
        assert incoming.sender is not None
        is_admin = incoming.sender.id in self._admins
        return not ((is_admin and self._exempt_admins) or self._album_let_in(incoming))

    def _album_let_in(self, incoming: Incoming) -> bool:
        """A part of an album another part of which was let in lately: it is let in too (in a
        group its photos come uncaptioned, and only the captioned one names the bot)."""
        if incoming.album is None:
            return False
        seen = self._albums.get((incoming.chat_id, incoming.album))
        return seen is not None and self._clock.monotonic() - seen < _ALBUM_S

    def _rate_decision(self, update_id: int, user_id: int) -> tuple[str, float] | None:
        """The rate limits' verdict on this update, counted the first time it is seen only."""
        if update_id in self._decided:
            return self._decided[update_id]
        verdict = self._limits.hit(user_id)
        self._remember(update_id, verdict)
        return verdict

    def _remember(self, update_id: int, verdict: tuple[str, float] | None) -> None:
        self._decided[update_id] = verdict
        if len(self._decided) > _DECISIONS_KEPT:  # a redelivery comes within a few batches
            self._decided.popitem(last=False)

    def addressed(self, incoming: Incoming) -> bool:
        """In a group: a command (not another bot's), a reply to one of our messages, a mention
        of us, or a press on a button of ours. A forwarded message that starts with "/" is
        somebody's text, not a command to us."""
        if incoming.button is not None:
            return True
        if incoming.command is not None:
            return incoming.command.bot in (None, self._username)
        return (
            incoming.reply_to_author == self._bot_id
            or self._bot_id in incoming.mentioned_ids
            or self._username in incoming.mentions
        )

    def _notice(self, chat_id: int, what: str, text: str) -> str | None:
        """``text`` if the sender should hear it now: at most once per window per chat and kind,
        and within the notices' own overall limit (a flood of strangers must not crowd real
        answers out of Telegram's limits)."""
        now = self._clock.monotonic()
        if now - self._told.get((chat_id, what), -math.inf) < self._notice_every_s:
            return None
        if not self._limits.notice_allowed():
            return None
        if len(self._told) > 10_000:  # forget old entries: this must not grow without bound
            self._told = {k: t for k, t in self._told.items() if now - t < self._notice_every_s}
        self._told[(chat_id, what)] = now
        return text
