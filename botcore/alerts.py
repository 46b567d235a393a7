"""Alerts for the bot's owner: problems only they can fix (a refused API key, an exhausted
quota). Always logged; also sent in Telegram to ADMIN_USER_IDS, in the bot's own language
(BOT_LANGUAGE, else English), whichever user's job raised them. The same alert at most once
an hour, so an outage does not flood anyone."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

from loguru import logger

from botcore import texts
from botcore.clock import Clock
from botcore.errors import JobError
from botcore.i18n import ENGLISH, speaking
from botcore.messenger import Messenger


class Alerts:
    def __init__(
        self,
        messenger: Messenger,
        admin_ids: Iterable[int],
        *,
        clock: Clock,
        repeat_s: float = 3600.0,
        language: str = ENGLISH,
    ) -> None:
        self._messenger = messenger
        self._language = language
        self._admin_ids = tuple(sorted(admin_ids))
        self._clock = clock
        self._repeat_s = repeat_s
        self._last: dict[str, float] = {}
        self._log = logger.bind(component="alerts")

    def speaking(self) -> AbstractContextManager[None]:
        """Texts composed in this block are in the admins' language: an alert's detail."""
        return speaking(self._language)

    async def send(self, detail: str, *, repeat_guard: bool = True) -> bool:
        """Alert about ``detail`` (our own words, never a secret). False if it was sent within
        the hour (unless ``repeat_guard`` is off: the caller has its own rule, such as once a
        day) or could not be delivered to any admin."""
        now = self._clock.now()
        last = self._last.get(detail)
        if repeat_guard and last is not None and now - last < self._repeat_s:
            return False
        self._log.error("ALERT for the bot's owner: {}", detail)
        delivered = not self._admin_ids  # with no admins, the log is the alert
        for admin in self._admin_ids:
            try:
                with self.speaking():
                    text = texts.ADMIN_ALERT.format(detail=detail)
                await self._messenger.send_text(admin, text)
                delivered = True
            except JobError as exc:  # e.g. the admin never opened a chat with the bot
                self._log.warning("could not alert admin {}: {}", admin, exc)
        if delivered:  # else the next occurrence tries again
            self._last[detail] = now
        return delivered
