"""Telegram intake: long-polls ``getUpdates``, parses each update once into an ``Incoming``,
has it routed, and stores each batch's jobs *before* the next call confirms it to Telegram, so
an update Telegram considers delivered is always on disk. Sends a refused sender's courtesy
reply in the background. It handles no message; the jobs do."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from enum import StrEnum
from typing import Any

import telegram
from loguru import logger
from telegram.warnings import PTBUserWarning

from botcore.attachments import valid_id
from botcore.clock import Clock
from botcore.courtesy import Courtesy
from botcore.errors import StorageUnavailable
from botcore.i18n import Languages, speaking
from botcore.incoming import Incoming, clean, language_of, parse_update
from botcore.jobqueue import JobQueue, describe_error
from botcore.messenger import Messenger
from botcore.models import Enqueued, NewJob
from botcore.receipts import Receipts
from botcore.routing import UPDATE_KIND, Decision
from botcore.storage import OFFSET_KEY, KeyValueStore
from botcore.telegram_api import retry_after_seconds

ALLOWED_UPDATES = ("message", "callback_query")  # edits are not answered again
_PAUSE_FIRST_S, _PAUSE_MAX_S = 1.0, 30.0  # after a failure: 1 s, doubling to 30 s
_MAX_RAW_CHARS = 20_000  # of an update kept in its dead letter


class Outcome(StrEnum):
    """What became of one update at intake: exactly one of these, whatever it holds."""

    STORED = "stored"  # one or more jobs (new, or already there: a redelivery)
    REFUSED = "refused"  # not for us, not allowed or over a limit: no job (the gate told the sender)
    DEAD = "dead"  # could not be routed or stored: kept as a dead letter with its reason


def dead_letter(update: dict[str, Any], reason: str) -> NewJob:
    """An update that could not be routed or stored, kept for ``/dead`` with its reason. Its raw
    form is kept as escaped JSON text, so whatever broke storing it cannot break this."""
    raw = json.dumps(update, ensure_ascii=True, default=repr)[:_MAX_RAW_CHARS]
    update_id = update.get("update_id")
    return NewJob(
        UPDATE_KIND,
        {"update_id": update_id, "unreadable": raw},
        dedup_key=f"tg-update:{update_id}",
        dead_reason=reason,
    )


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
        route: Callable[[Incoming], Decision],
        clock: Clock,
        messenger: Messenger | None = None,
        poll_timeout_s: float = 30.0,
        error_pause_s: float = _PAUSE_FIRST_S,
        max_pause_s: float = _PAUSE_MAX_S,
        unstorable_notice: Callable[[Incoming], NewJob] | None = None,
        receipts: Receipts | None = None,  # the 👀 on a message once it is stored (REACTIONS)
        languages: Languages | None = None,  # who is answered in which language (BOT_LANGUAGE)
        prepare: Callable[[Incoming], Awaitable[None]] | None = None,  # before routing (shared limits)
    ) -> None:
        self._prepare = prepare
        self._languages = languages or Languages()
        self._bot = bot
        self._queue = queue
        self._kv = kv
        self._clock = clock
        self._poll_timeout_s = poll_timeout_s
        self._first_pause_s = error_pause_s
        self._max_pause_s = max_pause_s
        self._route = route  # which jobs a message becomes: routing decides, the intake stores
        self._courtesy = Courtesy(messenger)  # refusals' replies, button presses' answers
        self._receipts = receipts
        # The notice (a job) that tells a sender their message could not be kept, if any.
        self._unstorable_notice = unstorable_notice
        self._stop = asyncio.Event()
        self._halt = self._stop  # what ends the current run: stop, or its leadership lost
        self._log = logger.bind(component="intake")
        self.last_poll_at: float | None = None  # for health checks
        # Since when batches that came could not be stored (None: the last one was), for health.
        self.store_failing_since: float | None = None
        self.received = 0  # updates taken from Telegram, for metrics

    def stop(self) -> None:
        self._stop.set()
        self._halt.set()

    async def aclose(self) -> None:
        """Let courtesy replies in flight finish briefly, then drop the rest."""
        await self._courtesy.aclose()
        if self._receipts is not None:
            await self._receipts.aclose()

    async def run(self, until: asyncio.Event | None = None) -> None:
        """Poll until ``stop``, or until ``until`` is set (this process no longer leads polling).
        Each run reads the stored offset afresh: another process may have polled meanwhile."""
        self._halt = until if until is not None else self._stop
        if self._stop.is_set():
            self._halt.set()
        stored = await self._read_offset()
        offset: int | None = int(stored) if stored is not None else None
        unreadable = False  # the last batch broke python-telegram-bot's parser
        pause = self._first_pause_s
        while not self._halt.is_set():
            storing = False
            try:
                updates = await (self._poll_raw(offset) if unreadable else self._poll(offset))
                unreadable = False
                if updates is None:  # stopped while waiting
                    return
                self.last_poll_at = self._clock.now()
                if updates:
                    storing = True
                    self.received += len(updates)
                    await self.persist(updates)
                    offset = _next_offset(updates, offset)  # confirmed by the next getUpdates
                    await self._kv.put(OFFSET_KEY, str(offset))
                    self.store_failing_since = None
                pause = self._first_pause_s
            except _UnparsableBatch as exc:
                # An update the library cannot parse (Telegram's API ahead of it): fetch this
                # batch as plain JSON once, so one odd update cannot stop all intake.
                self._log.warning("an update could not be parsed ({}); reading the batch as JSON", exc)
                unreadable = True
            except Exception as exc:
                if storing and self.store_failing_since is None:
                    self.store_failing_since = self._clock.now()
                pause = await self._failed(exc, pause)

    async def _read_offset(self) -> str | None:
        """The stored offset; a database that refuses even this is waited for, not fatal."""
        pause = self._first_pause_s
        while not self._halt.is_set():
            try:
                return await self._kv.get(OFFSET_KEY)
            except Exception as exc:
                pause = await self._failed(exc, pause)
        return None

    async def _failed(self, exc: Exception, pause: float) -> float:
        """Telegram trouble (network, 5xx, flood control, a second poller), or the database
        refusing the batch: nothing was confirmed, so nothing is lost. Back off (1 s doubling to
        30 s, or as long as Telegram asked), never re-poll at once. Returns the next pause."""
        wait = self._pause_after(exc, pause)
        self._log.warning("intake failed: {}; retrying in {:g} s", _describe(exc), wait)
        await self._clock.wait(self._halt, wait)
        return min(pause * 2, self._max_pause_s)

    @staticmethod
    def _pause_after(exc: Exception, pause: float) -> float:
        if isinstance(exc, telegram.error.RetryAfter):
            return max(pause, retry_after_seconds(exc))
        return pause

    async def _poll(self, offset: int | None) -> list[dict[str, Any]] | None:
        """getUpdates, abandoned (not confirmed) as soon as stop is requested."""
        try:
            updates = await self._unless_stopped(
                self._bot.get_updates(
                    offset=offset, timeout=int(self._poll_timeout_s), allowed_updates=list(ALLOWED_UPDATES)
                )
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise _UnparsableBatch(str(exc)) from exc
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
        stopping = asyncio.ensure_future(self._halt.wait())
        try:
            await asyncio.wait({call, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not call.done():
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            return None
        return call.result()

    async def persist(self, updates: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Store a batch: each update's text made valid, parsed and routed once, and all the
        jobs written in one transaction. If that fails for one update's sake (its routing
        raised, or storing it did), that update alone becomes a dead letter and the rest are
        stored normally. Raises only when the database itself refuses (locked, full): then
        nothing is confirmed. A button press is answered at once if refused, else once stored."""
        routed: list[_Routed] = []
        dead: list[NewJob] = []
        outcomes: list[Outcome] = []
        presses: list[str] = []  # the queries of the presses let in, answered once they are stored
        cleaned = [clean(raw) for raw in updates]
        if self._prepare is not None:
            await self._prepared(cleaned)
        for position, update in enumerate(cleaned):
            with speaking(self._languages.of(language_of(update))):  # what is said at once, in theirs
                routed_update = self._decide(update, outcomes, dead, presses)
            if routed_update is not None:
                routed.append((position, *routed_update))
        jobs = [job for *_, update_jobs in routed for job in update_jobs] + dead
        try:
            results = await self._queue.enqueue_many(jobs)
        except Exception as exc:
            if isinstance(exc, StorageUnavailable):
                raise
            results = await self._isolate(routed, dead, outcomes)
        for query_id in presses:
            self._courtesy.answer(query_id)
        if self._receipts is not None:  # stored: the sender sees it was received
            for _, _, incoming, jobs in routed:
                if incoming is not None and jobs and incoming.button is None and incoming.command is None:
                    self._receipts.received(incoming.chat_id, incoming.message_id, in_group=incoming.in_group)
        self._log.debug(
            "stored {} update(s) as {} job(s), {} new",
            len(updates),
            len(results),
            sum(r.created for r in results),
        )
        return outcomes

    async def _prepared(self, updates: Sequence[dict[str, Any]]) -> None:
        """What routing needs from the database first (rate limits shared by several processes).
        An update that cannot be parsed is left to ``_decide``, which makes it a dead letter."""
        assert self._prepare is not None
        for update in updates:
            try:
                incoming = parse_update(update)
                if incoming is not None:
                    await self._prepare(incoming)
            except StorageUnavailable:
                raise  # the batch is not stored now: Telegram delivers it again
            except Exception as exc:  # this update alone: routing falls back to this process's limits
                self._log.opt(exception=exc).error("update {} could not be prepared", update.get("update_id"))

    def _decide(
        self, update: dict[str, Any], outcomes: list[Outcome], dead: list[NewJob], presses: list[str]
    ) -> tuple[dict[str, Any], Incoming | None, list[NewJob]] | None:
        """One update parsed and routed: its jobs (None if it became a dead letter instead); a
        refusal's reply sent at once; a press noted, to be answered once stored."""
        try:
            incoming = parse_update(update)
            decision = self._route(incoming) if incoming is not None else Decision(refused="no message")
        except Exception as exc:  # a bug: this update must not hold up the others
            self._log.opt(exception=exc).error("update {} could not be routed", update.get("update_id"))
            dead.append(dead_letter(update, f"could not be routed: {describe_error(exc)}"))
            outcomes.append(Outcome.DEAD)
            return None
        if decision.refused is not None:
            self._log.debug("update {} stored no job: {}", update.get("update_id"), decision.refused)
        if incoming is not None and incoming.button is not None:
            if decision.jobs:
                presses.append(incoming.button.query_id)
            else:
                self._courtesy.answer(incoming.button.query_id, decision.reply)
        elif incoming is not None and decision.reply is not None:
            self._courtesy.reply(incoming.target, decision.reply)
        elif incoming is None and (query_id := _query_id(update)) is not None:
            self._courtesy.answer(query_id)  # a press we cannot act on: its spinner stops all the same
        jobs = [
            NewJob(p.kind, update, dedup_key=p.dedup_key, group_key=p.group_key, delay_s=p.delay_s)
            for p in decision.jobs
        ]
        outcomes.append(Outcome.STORED if jobs else Outcome.REFUSED)
        return update, incoming, jobs

    async def _isolate(
        self, routed: list[_Routed], dead: list[NewJob], outcomes: list[Outcome]
    ) -> list[Enqueued]:
        """The batch could not be stored whole: store each update on its own, and the ones that
        still fail as dead letters (with a notice to their sender, who was let in)."""
        results: list[Enqueued] = []
        for position, update, incoming, jobs in routed:
            if not jobs:
                continue
            try:
                results += await self._queue.enqueue_many(jobs)
            except Exception as exc:
                if isinstance(exc, StorageUnavailable):
                    raise
                self._log.opt(exception=exc).error("update {} could not be stored", update.get("update_id"))
                dead.append(dead_letter(update, f"could not be stored: {describe_error(exc)}"))
                if self._unstorable_notice is not None and incoming is not None:
                    with speaking(self._languages.of(language_of(update))):
                        dead.append(self._unstorable_notice(incoming))
                outcomes[position] = Outcome.DEAD
        if dead:
            results += await self._queue.enqueue_many(dead)
        return results


def _query_id(update: dict[str, Any]) -> str | None:
    query = update.get("callback_query")
    query_id = query.get("id") if isinstance(query, dict) else None
    return query_id if isinstance(query_id, str) and query_id else None


def _next_offset(updates: Sequence[dict[str, Any]], offset: int | None) -> int | None:
    """One past the highest update id: every update below it is confirmed by the next call."""
    ids = [u["update_id"] for u in updates if valid_id(u.get("update_id"))]
    return max(ids) + 1 if ids else offset


# An update's place in its batch, it, the message in it, its jobs.
_Routed = tuple[int, dict[str, Any], Incoming | None, list[NewJob]]


class _UnparsableBatch(Exception):
    """python-telegram-bot could not turn a batch into its classes (Telegram's API ahead of it)."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, StorageUnavailable):
        return f"the database refused the batch ({exc})"  # "database is locked", "disk is full"
    if isinstance(exc, telegram.error.Conflict):
        return "409 Conflict: another process is polling with this bot token"
    # The class name only: a network error's text can carry the request URL, and so the token.
    return type(exc).__name__
