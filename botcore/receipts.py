"""The visible receipt (REACTIONS): a 👀 reaction set on a message once it is stored, and
cleared once it is answered, so a user sees their message was received even while the AI service
is down. Best effort: in the background or with errors swallowed, never delaying an answer; a
chat that refuses reactions is remembered (per process) and not asked again."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from loguru import logger

from botcore.errors import JobError
from botcore.messenger import Messenger

SEEN = "👀"
_MAX_PENDING = 100  # reactions in flight; beyond this, new ones are skipped
_REFUSERS_KEPT = 10_000


class Receipts:
    def __init__(self, messenger: Messenger, *, private: bool, groups: bool) -> None:
        self._messenger = messenger
        self._private = private
        self._groups = groups
        self._refused: set[int] = set()  # chats where reactions are off
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = logger.bind(component="receipts")

    def wanted(self, chat_id: int, *, in_group: bool) -> bool:
        return (self._groups if in_group else self._private) and chat_id not in self._refused

    def received(self, chat_id: int, message_id: int, *, in_group: bool) -> None:
        """Mark a stored message, in the background."""
        if self.wanted(chat_id, in_group=in_group) and len(self._tasks) < _MAX_PENDING:
            self._soon(self._set(chat_id, message_id, SEEN))

    async def answered(self, chat_id: int, message_id: int, *, in_group: bool) -> None:
        """Clear the mark of an answered message (errors are logged, never raised)."""
        if self.wanted(chat_id, in_group=in_group):
            await self._set(chat_id, message_id, None)

    async def _set(self, chat_id: int, message_id: int, emoji: str | None) -> None:
        try:
            await self._messenger.react(chat_id, message_id, emoji)
        except JobError as exc:
            if "reaction" in str(exc).lower() and len(self._refused) < _REFUSERS_KEPT:
                self._refused.add(chat_id)  # reactions are off in this chat: not asked again
            self._log.debug("no receipt in chat {}: {}", chat_id, exc)

    def _soon(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
