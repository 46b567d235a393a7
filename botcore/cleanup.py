"""Housekeeping that keeps the database bounded, in the bot's own process: finished jobs past
their retention every minute (cheap); and, at start and then every ``CLEANUP_INTERVAL_HOURS``,
conversation memory past its TTL (deleted, not hidden), usage rows past their retention, then
``PRAGMA optimize`` and a WAL checkpoint so the files do not grow without bound. Never blocks
message handling: each step is a few short, batched statements."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from botcore import spool
from botcore.clock import DAY_S, utc_date
from botcore.errors import StorageUnavailable
from botcore.jobqueue import JobQueue
from botcore.models import CleanupResult
from botcore.storage import ALBUM_PREFIX, COST_ALERT_PREFIX, Leadership, Storage, album_key, cost_alert_key


class Cleanup:
    def __init__(
        self,
        storage: Storage,
        queue: JobQueue,
        *,
        done_after_s: float,
        dead_after_s: float,
        history_ttl_days: float,
        usage_retention_days: float,
        every_s: float = 60.0,
        full_every_s: float = DAY_S,
        spools: Sequence[Path] = (),  # folders of files kept between paying and sending
        leadership: Leadership | None = None,  # with several processes: the one that cleans up
    ) -> None:
        self._spools = tuple(spools)
        self._leadership = leadership
        self._storage = storage
        self._queue = queue
        self._done_after_s = done_after_s
        self._dead_after_s = dead_after_s
        self._history_ttl_s = history_ttl_days * DAY_S
        self._usage_retention_s = usage_retention_days * DAY_S
        self._every_s = every_s
        self._full_every_s = full_every_s
        self._stop = asyncio.Event()
        self._log = logger.bind(component="cleanup")

    async def run_once(self, *, full: bool = True, database: bool = True) -> CleanupResult:
        """The job purge; with ``full``, also expired memory, old usage and file maintenance.
        Without ``database`` (another process leads the cleanup), only this machine's files."""
        if not database:
            if full:
                await self._sweep_spools()
            return CleanupResult(0, 0)
        jobs = await self._queue.purge(done_after_s=self._done_after_s, dead_after_s=self._dead_after_s)
        messages = usage = 0
        if full:
            now = self._queue.clock.now()
            messages = await self._storage.conversations.purge_expired(before=now - self._history_ttl_s)
            usage = await self._storage.usage.purge(before=now - self._usage_retention_s)
            week_ago = cost_alert_key(utc_date(now - 7 * DAY_S))
            await self._storage.kv.delete_before(COST_ALERT_PREFIX, week_ago)
            two_hours_ago = album_key(int(now // 3600) - 2, 0, "")  # albums' notes: an hour is plenty
            await self._storage.kv.delete_before(ALBUM_PREFIX, two_hours_ago)
            await self._sweep_spools()
            await self._storage.maintain()
        result = CleanupResult(jobs.done, jobs.dead, messages, usage)
        if full or jobs.done or jobs.dead:
            self._log.info(
                "{} cleanup removed {} done job(s), {} dead job(s), {} expired message(s), {} usage row(s)",
                "full" if full else "job",
                jobs.done,
                jobs.dead,
                messages,
                usage,
            )
        return result

    async def run(self) -> None:
        """A full cleanup at start, then the job purge every ``every_s`` and a full one every
        ``full_every_s`` seconds of the queue's clock, until ``stop``."""
        clock = self._queue.clock
        next_full = clock.now()
        while not self._stop.is_set():
            full = clock.now() >= next_full
            try:
                leading = self._leadership is None or await self._leadership.hold()
                await self.run_once(full=full, database=leading)
                if full and leading:  # one that took over runs the full cleanup at once
                    next_full = clock.now() + self._full_every_s
            except Exception as exc:
                if isinstance(exc, StorageUnavailable):  # locked by another program, a full disk
                    self._log.warning("cleanup failed: {}; will try again in {:g} s", exc, self._every_s)
                else:
                    self._log.opt(exception=exc).error("cleanup failed; will try again")
            await clock.wait(self._stop, self._every_s)
        if self._leadership is not None:
            await self._leadership.release()

    def stop(self) -> None:
        self._stop.set()

    async def _sweep_spools(self) -> None:
        """This machine's files kept between paying and sending, left by a job dead after paying
        or a write cut short: a day is plenty."""
        for folder in self._spools:
            await spool.sweep(folder, older_than_s=DAY_S)
