"""Work that exactly one process may do at a time (polling Telegram), run only while this
process holds the role (``storage.Leadership``). The holder checks every few seconds that it
still holds it, and stops the work at once when it does not; the others ask as often, so one
takes over within seconds of the holder's death. With SQLite the one process always holds it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger

from botcore.clock import Clock
from botcore.storage import Leadership

CHECK_S = 2.0  # how often the holder confirms, and the others ask


class Leading:
    def __init__(
        self,
        name: str,
        leadership: Leadership,
        work: Callable[[asyncio.Event], Awaitable[None]],  # runs until the event is set
        clock: Clock,
        *,
        check_s: float = CHECK_S,
    ) -> None:
        self._name = name
        self._leadership = leadership
        self._work = work
        self._clock = clock
        self._check_s = check_s
        self._stop = asyncio.Event()
        self._log = logger.bind(component="leading")
        self.leading = False  # for health: whether this process does the work now

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                if await self._leadership.hold():
                    await self._lead()
                await self._clock.wait(self._stop, self._check_s)
        finally:
            await self._leadership.release()

    async def _lead(self) -> None:
        """Run the work until stopped or the role is lost (the work ending by itself is a bug
        of the work's: it is started again on the next round)."""
        ended = asyncio.Event()
        self.leading = True
        task = asyncio.create_task(self._work(ended))
        try:
            while not self._stop.is_set() and not task.done():
                await self._clock.wait(self._stop, self._check_s)
                if not self._stop.is_set() and not await self._leadership.hold():
                    self._log.warning("this process no longer leads {}; stopping it here", self._name)
                    break
        finally:
            self.leading = False
            ended.set()
            try:
                await task
            except Exception as exc:  # logged where it happened; the next round starts it again
                self._log.opt(exception=exc).error("{} failed", self._name)
