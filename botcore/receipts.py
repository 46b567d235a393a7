"""The visible receipt (REACTIONS): a 👀 reaction on a message that is still waiting a moment
after it was stored, cleared once it is answered, so a user sees their message was received
even while the AI service is down. An answer that comes within the moment costs no call at all.
Best effort: its calls are cosmetic (pacing.Lane), so they never delay an answer, and the answer
never waits for them; a chat that refuses reactions is not asked again."""

from __future__ import annotations

import asyncio

from loguru import logger

from botcore.clock import Clock
from botcore.errors import JobError
from botcore.messenger import Messenger
from botcore.pacing import Lane

SEEN = "👀"
WAIT_S = 1.0  # a message answered within this gets no receipt: it needs none
_MAX_PENDING = 1000  # receipts waiting (beyond this, new ones are skipped), and shown ones kept
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
        # message -> its receipt to come, and the lane its call waits in
        self._waiting: dict[tuple[int, int], tuple[asyncio.Task[None], Lane]] = {}
        self._shown: dict[tuple[int, int], None] = {}  # messages that show the receipt now, oldest first
        self._clearing: set[asyncio.Task[None]] = set()
        self._log = logger.bind(component="receipts")

    def wanted(self, chat_id: int, *, in_group: bool) -> bool:
        return (self._groups if in_group else self._private) and chat_id not in self._refused

    def received(self, chat_id: int, message_id: int, *, in_group: bool) -> None:
        """A message was stored: mark it if it is still waiting in a moment."""
        key = (chat_id, message_id)
        busy = len(self._waiting) >= _MAX_PENDING
        known = key in self._waiting or key in self._shown
        if self.wanted(chat_id, in_group=in_group) and not busy and not known:
            lane = Lane()
            task = asyncio.get_running_loop().create_task(self._later(key, lane))
            self._waiting[key] = (task, lane)
            task.add_done_callback(lambda _, key=key: self._waiting.pop(key, None))  # type: ignore[misc]

    async def _later(self, key: tuple[int, int], lane: Lane) -> None:
        await self._clock.wait(asyncio.Event(), self._wait_s)
        if await self._set(*key, SEEN, lane):
            self._shown[key] = None
            if len(self._shown) > _MAX_PENDING:  # messages never answered (failed for good): forgotten
                del self._shown[next(iter(self._shown))]

    def working(self, chat_id: int, message_id: int) -> None:
        """Its answer is being written (the typing indicator or the stream shows it): a receipt
        that has not left is not needed any more."""
        waiting = self._waiting.get((chat_id, message_id))
        if waiting is not None and not waiting[1].started:
            waiting[0].cancel()

    def answered(self, chat_id: int, message_id: int) -> None:
        """Its answer is delivered: the receipt to come is called off if its call has not left,
        and the one shown (or on its way) is cleared, in the background."""
        key = (chat_id, message_id)
        waiting = self._waiting.pop(key, None)
        if waiting is not None and not waiting[1].started:
            waiting[0].cancel()
        elif waiting is not None or key in self._shown:
            clearing = asyncio.get_running_loop().create_task(self._clear(key, waiting))
            self._clearing.add(clearing)
            clearing.add_done_callback(self._clearing.discard)

    async def _clear(self, key: tuple[int, int], setting: tuple[asyncio.Task[None], Lane] | None) -> None:
        if setting is not None:
            await asyncio.gather(setting[0], return_exceptions=True)  # the 👀 lands first
        if key in self._shown:
            del self._shown[key]
            await self._set(*key, None, Lane())

    async def _set(self, chat_id: int, message_id: int, emoji: str | None, lane: Lane) -> bool:
        try:
            await self._messenger.react(chat_id, message_id, emoji, lane=lane)
        except JobError as exc:
            if "reaction" in str(exc).lower() and len(self._refused) < _REFUSERS_KEPT:
                self._refused.add(chat_id)  # reactions are off in this chat: not asked again
            self._log.debug("no receipt in chat {}: {}", chat_id, exc)
            return False
        return True

    async def aclose(self) -> None:
        """Receipts still to come or being cleared are called off (the bot is stopping)."""
        pending = [task for task, _ in self._waiting.values()] + list(self._clearing)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
