"""Words sent in the background, never waited for: a refused sender's courtesy reply and the
answers to button presses (Telegram's spinner must stop at once). Bounded: in a flood of
strangers the surplus is dropped, never queued. Not for anything that must arrive (jobs are)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from loguru import logger

from botcore.errors import JobError
from botcore.incoming import ReplyTarget
from botcore.messenger import Messenger

_MAX_PENDING = 100  # sends in flight; beyond this, new ones are dropped


class Courtesy:
    def __init__(self, messenger: Messenger | None) -> None:
        self._messenger = messenger  # None: nothing is sent (a bare intake in tests)
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = logger.bind(component="intake")

    def reply(self, where: ReplyTarget, text: str) -> None:
        """Send ``text`` in reply to ``where``."""
        if self._messenger is not None:
            send = self._messenger.send_text(
                where.chat_id, text, reply_to=where.message_id, thread_id=where.thread_id
            )
            self._soon(send, f"a notice to chat {where.chat_id}")

    def answer(self, query_id: str, text: str | None = None) -> None:
        """Answer a button press, with a short note if ``text``."""
        if self._messenger is not None:
            self._soon(self._messenger.answer_press(query_id, text), "a button press's answer")

    def _soon(self, send: Coroutine[Any, Any, Any], what: str) -> None:
        if len(self._tasks) >= _MAX_PENDING:
            send.close()
            return
        task = asyncio.get_running_loop().create_task(self._guarded(send, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, send: Coroutine[Any, Any, Any], what: str) -> None:
        try:
            await send
        except JobError as exc:  # a courtesy: logged, never retried
            self._log.warning("could not send {}: {}", what, exc)

    async def aclose(self) -> None:
        """Let sends in flight finish briefly, then drop the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
