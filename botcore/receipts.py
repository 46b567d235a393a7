"""The visible receipt (REACTIONS): a 👀 reaction on a message that is still waiting a moment
after it was stored, cleared once it is answered, so a user sees their message was received
even while the AI service is down. An answer that comes within the moment costs no call at all.
Best effort: never delays an answer; a chat that refuses reactions is not asked again."""

from __future__ import annotations

import asyncio

from loguru import logger

from botcore.clock import Clock
from botcore.errors import JobError
from botcore.messenger import Messenger

SEEN = "👀"
WAIT_S = 1.0  # a message answered within this gets no receipt: it needs none
_MAX_PENDING = 1000  # receipts waiting or shown; beyond this, new ones are skipped
_REFUSERS_KEPT = 10_000


class Receipts:
    def __init__(
        self, messenger: Messenger, clock: Clock, *, private: bool, groups: bool, wait_s: float = WAIT_S
    ) -> None:
        self._messenger = messenger
        self._clock = clock
        self._private = private
        self._groups = groups
        self._wait_s = wait_s
        self._refused: set[int] = set()  # chats where reactions are off
        self._waiting: dict[tuple[int, int], asyncio.Task[None]] = {}  # message -> its receipt to come
        self._shown: set[tuple[int, int]] = set()  # messages that show the receipt now
        self._log = logger.bind(component="receipts")

    def wanted(self, chat_id: int, *, in_group: bool) -> bool:
        return (self._groups if in_group else self._private) and chat_id not in self._refused

    def received(self, chat_id: int, message_id: int, *, in_group: bool) -> None:
        """A message was stored: mark it if it is still waiting in a moment."""
        key = (chat_id, message_id)
        busy = len(self._waiting) + len(self._shown) >= _MAX_PENDING
        if self.wanted(chat_id, in_group=in_group) and not busy and key not in self._waiting:
            task = asyncio.get_running_loop().create_task(self._later(key))
            self._waiting[key] = task
            task.add_done_callback(lambda _, key=key: self._waiting.pop(key, None))  # type: ignore[misc]

    async def _later(self, key: tuple[int, int]) -> None:
        await self._clock.wait(asyncio.Event(), self._wait_s)
        if await self._set(*key, SEEN):
            self._shown.add(key)

    async def answered(self, chat_id: int, message_id: int, *, in_group: bool) -> None:
        """Its answer is delivered: the receipt to come is called off, or the one shown cleared
        (errors are logged, never raised)."""
        key = (chat_id, message_id)
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting.cancel()
        if key in self._shown:
            self._shown.discard(key)
            await self._set(chat_id, message_id, None)

    async def _set(self, chat_id: int, message_id: int, emoji: str | None) -> bool:
        try:
            await self._messenger.react(chat_id, message_id, emoji)
        except JobError as exc:
            if "reaction" in str(exc).lower() and len(self._refused) < _REFUSERS_KEPT:
                self._refused.add(chat_id)  # reactions are off in this chat: not asked again
            self._log.debug("no receipt in chat {}: {}", chat_id, exc)
            return False
        return True

    async def aclose(self) -> None:
        """Receipts still to come are called off (the bot is stopping)."""
        pending = list(self._waiting.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
