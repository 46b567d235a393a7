"""Periodic housekeeping that keeps the database bounded: finished jobs past their retention
and conversation memory past its TTL (expired memory is deleted, not just hidden), once a
minute. Never blocks message handling: each step is a few short, batched statements."""

from __future__ import annotations

import asyncio

from loguru import logger

from botcore.clock import DAY_S
from botcore.conversations import ConversationStore
from botcore.jobqueue import JobQueue
from botcore.models import CleanupResult


class Cleanup:
    def __init__(
        self,
        queue: JobQueue,
        conversations: ConversationStore,
        *,
        done_after_s: float,
        dead_after_s: float,
        history_ttl_days: float,
        every_s: float = 60.0,
    ) -> None:
        self._queue = queue
        self._conversations = conversations
        self._done_after_s = done_after_s
        self._dead_after_s = dead_after_s
        self._history_ttl_s = history_ttl_days * DAY_S
        self._every_s = every_s
        self._stop = asyncio.Event()
        self._log = logger.bind(component="cleanup")

    async def run_once(self) -> CleanupResult:
        jobs = await self._queue.purge(done_after_s=self._done_after_s, dead_after_s=self._dead_after_s)
        messages = await self._conversations.purge_expired(
            before=self._queue.clock.now() - self._history_ttl_s
        )
        result = CleanupResult(jobs.done, jobs.dead, messages)
        if jobs.done or jobs.dead or messages:
            self._log.info(
                "removed {} done job(s), {} dead job(s), {} expired message(s)",
                jobs.done,
                jobs.dead,
                messages,
            )
        return result

    async def run(self) -> None:
        """Clean at start, then every ``every_s`` seconds of the queue's clock, until ``stop``."""
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                self._log.opt(exception=exc).error("cleanup failed; will try again")
            await self._queue.clock.wait(self._stop, self._every_s)

    def stop(self) -> None:
        self._stop.set()
