"""Telegram intake: long-polls ``getUpdates`` and stores each batch as queue jobs *before* the
next call confirms it to Telegram, so an update Telegram considers delivered is always on disk.
It does not handle updates; the ``tg-update`` job does."""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import telegram
from loguru import logger
from telegram.warnings import PTBUserWarning

from botcore.clock import Clock
from botcore.conversations import KeyValueStore
from botcore.jobqueue import JobQueue
from botcore.models import NewJob
from botcore.telegram_api import retry_after_seconds

UPDATE_KIND = "tg-update"
_OFFSET = "intake.offset"  # where polling resumes after a restart
ALLOWED_UPDATES = ("message",)  # edits are not answered again
# Commands that neither change nor read the conversation run at once, not in the chat's order
# (/retry with a job id is the admin's; /retry alone and /reset must wait their turn).
_UNORDERED = re.compile(
    r"/(?:cancel|start|help|usage|status|dead|cleanup)(?:@\w+)?(?:\s|$)|/retry(?:@\w+)?\s+#?\d", re.IGNORECASE
)


def route_to_update_job(update: dict[str, Any]) -> list[NewJob]:
    """One ``tg-update`` job per update, in its chat's order, de-duplicated on the update id."""
    message = update.get("message")
    chat = message.get("chat") if isinstance(message, dict) else None
    group = f"chat:{chat['id']}" if isinstance(chat, dict) else None
    text = message.get("text") if isinstance(message, dict) else None
    forwarded = isinstance(message, dict) and "forward_origin" in message
    if isinstance(text, str) and not forwarded and _UNORDERED.match(text):
        group = None  # not behind the chat's answers: /cancel stops them, /status reports on them
    return [NewJob(UPDATE_KIND, update, dedup_key=f"tg-update:{update['update_id']}", group_key=group)]


class UpdatePoller:
    """Why not python-telegram-bot's Updater: it confirms a batch with its next ``getUpdates``,
    which may come before the handlers of that batch ran, so a ``kill -9`` then loses updates.
    Here the next call is made only after the batch is committed to SQLite.

    Telegram redelivers unconfirmed updates; the job's dedup key drops the repeats. The offset
    is stored, so after a restart polling resumes there and Telegram forgets what was already
    stored, instead of sending it again. (No update is dropped for having a lower id than one
    seen before: after a week without updates, Telegram may restart ids at random.)"""

    def __init__(
        self,
        bot: telegram.Bot,
        queue: JobQueue,
        kv: KeyValueStore,
        *,
        clock: Clock,
        poll_timeout_s: float = 30.0,
        error_pause_s: float = 2.0,
        route: Callable[[dict[str, Any]], list[NewJob]] = route_to_update_job,
    ) -> None:
        self._bot = bot
        self._queue = queue
        self._kv = kv
        self._clock = clock
        self._poll_timeout_s = poll_timeout_s
        self._error_pause_s = error_pause_s
        self._route = route  # which jobs an update becomes: services decide, the intake stores
        self._stop = asyncio.Event()
        self._log = logger.bind(component="intake")
        self.last_poll_at: float | None = None  # for health checks
        self.received = 0  # updates taken from Telegram, for metrics

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        stored = await self._kv.get(_OFFSET)
        offset: int | None = int(stored) if stored is not None else None
        unreadable = False  # the last batch broke python-telegram-bot's parser
        while not self._stop.is_set():
            try:
                updates = await (self._poll_raw(offset) if unreadable else self._poll(offset))
                unreadable = False
                if updates is None:  # stopped while waiting
                    return
                self.last_poll_at = self._clock.now()
                if updates:
                    self.received += len(updates)
                    await self._persist(updates)
                    offset = int(updates[-1]["update_id"]) + 1  # confirmed by the next getUpdates
                    await self._kv.put(_OFFSET, str(offset))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                # An update the library cannot parse (Telegram's API ahead of it): fetch this
                # batch as plain JSON once, so one odd update cannot stop all intake.
                self._log.warning("an update could not be parsed ({}); reading the batch as JSON", exc)
                unreadable = True
            except Exception as exc:
                # Telegram trouble (network, 5xx, flood control, a second poller), or the database
                # refusing the batch: nothing was confirmed, so nothing is lost. Pause, try again.
                pause = self._pause_after(exc)
                self._log.warning("intake failed: {}; retrying in {:g} s", _describe(exc), pause)
                await self._clock.wait(self._stop, pause)

    def _pause_after(self, exc: Exception) -> float:
        if isinstance(exc, telegram.error.RetryAfter):
            return max(self._error_pause_s, retry_after_seconds(exc))
        return self._error_pause_s

    async def _poll(self, offset: int | None) -> list[dict[str, Any]] | None:
        """getUpdates, abandoned (not confirmed) as soon as stop is requested."""
        updates = await self._unless_stopped(
            self._bot.get_updates(
                offset=offset, timeout=int(self._poll_timeout_s), allowed_updates=list(ALLOWED_UPDATES)
            )
        )
        return None if updates is None else [json.loads(update.to_json()) for update in updates]

    async def _poll_raw(self, offset: int | None) -> list[dict[str, Any]]:
        """The same call, its result as Telegram sent it (no long poll: there are updates)."""
        kwargs = {"offset": offset, "timeout": 0, "allowed_updates": list(ALLOWED_UPDATES)}
        # The library warns "use get_updates instead", which is what failed. The filter covers
        # only this short call (no long poll) and only that category.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PTBUserWarning)
            result = await self._bot.do_api_request("getUpdates", api_kwargs=kwargs)
        return [u for u in result if isinstance(u, dict) and "update_id" in u]

    async def _unless_stopped(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        call = asyncio.ensure_future(coroutine)
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

    async def _persist(self, updates: Sequence[dict[str, Any]]) -> None:
        jobs = [job for update in updates for job in self._route(update)]
        results = await self._queue.enqueue_many(jobs)
        self._log.debug(
            "stored {} update(s) as {} job(s), {} new",
            len(updates),
            len(results),
            sum(r.created for r in results),
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, telegram.error.Conflict):
        return "409 Conflict: another process is polling with this bot token"
    # The class name only: a network error's text can carry the request URL, and so the token.
    return type(exc).__name__
