"""Telegram intake: long-polls ``getUpdates`` and stores each batch as queue jobs *before* the
next call confirms it to Telegram, so an update Telegram considers delivered is always on disk.
It does not handle updates; the ``tg-update`` job does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import timedelta

import telegram
from loguru import logger

from botcore.clock import Clock
from botcore.conversations import KeyValueStore
from botcore.jobqueue import JobQueue
from botcore.models import NewJob

UPDATE_KIND = "tg-update"
_HIGH_WATER = "intake.last_update_id"
ALLOWED_UPDATES = ("message",)  # edits are not answered again


class UpdatePoller:
    """Why not python-telegram-bot's Updater: it confirms a batch with its next ``getUpdates``,
    which may come before the handlers of that batch ran, so a ``kill -9`` then loses updates.
    Here the next call is made only after the batch is committed to SQLite.

    Telegram redelivers unconfirmed updates; the job's dedup key drops the repeats, and the
    persisted highest ``update_id`` drops repeats whose jobs were already purged."""

    def __init__(
        self,
        bot: telegram.Bot,
        queue: JobQueue,
        kv: KeyValueStore,
        *,
        clock: Clock,
        poll_timeout_s: float = 30.0,
        error_pause_s: float = 2.0,
    ) -> None:
        self._bot = bot
        self._queue = queue
        self._kv = kv
        self._clock = clock
        self._poll_timeout_s = poll_timeout_s
        self._error_pause_s = error_pause_s
        self._stop = asyncio.Event()
        self._log = logger.bind(component="intake")
        self.last_poll_at: float | None = None  # for health checks

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        stored = await self._kv.get(_HIGH_WATER)
        high_water = int(stored) if stored is not None else 0
        offset: int | None = high_water + 1 if high_water else None
        while not self._stop.is_set():
            try:
                updates = await self._poll(offset)
            except telegram.error.TelegramError as exc:
                # Network trouble, a 5xx, flood control, or a second poller on the same token.
                pause = self._pause_after(exc)
                self._log.warning("getUpdates failed: {}; retrying in {:g} s", _describe(exc), pause)
                await self._clock.wait(self._stop, pause)
                continue
            if updates is None:  # stopped while waiting
                return
            self.last_poll_at = self._clock.now()
            if not updates:
                continue
            fresh = [u for u in updates if u.update_id > high_water]
            if fresh:
                await self._persist(fresh)
            high_water = max(high_water, updates[-1].update_id)
            await self._kv.put(_HIGH_WATER, str(high_water))
            offset = high_water + 1  # confirmed by the next getUpdates, after the commit above

    def _pause_after(self, exc: telegram.error.TelegramError) -> float:
        if isinstance(exc, telegram.error.RetryAfter):
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            return max(self._error_pause_s, seconds)
        return self._error_pause_s

    async def _poll(self, offset: int | None) -> Sequence[telegram.Update] | None:
        """getUpdates, abandoned (not confirmed) as soon as stop is requested."""
        call = asyncio.ensure_future(
            self._bot.get_updates(
                offset=offset, timeout=int(self._poll_timeout_s), allowed_updates=list(ALLOWED_UPDATES)
            )
        )
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({call, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            return None
        return call.result()

    async def _persist(self, updates: Sequence[telegram.Update]) -> None:
        jobs = []
        for update in updates:
            chat = update.effective_chat
            jobs.append(
                NewJob(
                    UPDATE_KIND,
                    json.loads(update.to_json()),
                    dedup_key=f"tg-update:{update.update_id}",
                    group_key=f"chat:{chat.id}" if chat else None,
                )
            )
        results = await self._queue.enqueue_many(jobs)
        new = sum(r.created for r in results)
        self._log.debug("stored {} update(s), {} new", len(results), new)


def _describe(exc: telegram.error.TelegramError) -> str:
    if isinstance(exc, telegram.error.Conflict):
        return "409 Conflict: another process is polling with this bot token"
    # The class name only: a network error's text can carry the request URL, and so the token.
    return type(exc).__name__
