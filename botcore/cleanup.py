"""Periodic housekeeping that keeps the database bounded. For now: the job purge (done and dead
jobs past their retention), once a minute. Never blocks message handling: each step is a few
short statements."""

from __future__ import annotations

import asyncio

from loguru import logger

from botcore.jobqueue import JobQueue
from botcore.models import PurgeResult


class JobPurger:
    def __init__(
        self, queue: JobQueue, *, done_after_s: float, dead_after_s: float, every_s: float = 60.0
    ) -> None:
        self._queue = queue
        self._done_after_s = done_after_s
        self._dead_after_s = dead_after_s
        self._every_s = every_s
        self._stop = asyncio.Event()
        self._log = logger.bind(component="cleanup")

    async def run_once(self) -> PurgeResult:
        result = await self._queue.purge(done_after_s=self._done_after_s, dead_after_s=self._dead_after_s)
        if result.done or result.dead:
            self._log.info("purged {} done and {} dead job(s)", result.done, result.dead)
        return result

    async def run(self) -> None:
        """Purge at start, then every ``every_s`` seconds of the queue's clock, until ``stop``."""
        clock = self._queue.clock
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                self._log.opt(exception=exc).error("job purge failed; will try again")
            await clock.wait(self._stop, self._every_s)

    def stop(self) -> None:
        self._stop.set()
