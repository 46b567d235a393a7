"""Everything the bot tells a user about their message, other than the answer itself, in one
place: a reply sent once per job however often it runs, the durable ``notice`` job, why an
answer waits (once per message), and why a job failed for good. Also alerts the admins when a
failure is one only they can fix. The words come from ``texts``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from botcore import texts
from botcore.alerts import Alerts
from botcore.breaker import BreakerState, CircuitBreaker
from botcore.errors import Cause, JobError
from botcore.incoming import Incoming, ReplyTarget
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, NewJob

NOTICE_KIND = "notice"
Show = Callable[[str], Awaitable[None]]  # puts a text where the user sees it (a reply, an edit)


class Notices:
    def __init__(self, *, queue: JobQueue, messenger: Messenger, alerts: Alerts) -> None:
        self._queue = queue
        self._messenger = messenger
        self._alerts = alerts
        self._log = logger.bind(component="notices")

    async def once(self, job: Job, checkpoint: dict[str, Any], where: ReplyTarget, text: str) -> None:
        """Reply ``text`` unless this job already did (its checkpoint says so)."""
        if checkpoint.get("sent"):
            return
        await self.reply(where, text)
        checkpoint["sent"] = 1
        await self._queue.save_checkpoint(job, checkpoint)

    async def reply(self, where: ReplyTarget, text: str) -> None:
        await self._messenger.send_text(
            where.chat_id, text, reply_to=where.message_id, thread_id=where.thread_id
        )

    async def durable(self, failed: Job, where: ReplyTarget, text: str) -> None:
        """Tell the user through a ``notice`` job, retried like any other, so a Telegram hiccup at
        this moment does not swallow the message that says their message failed."""
        await self._queue.enqueue_many([notice_job(where, text, dedup_key=f"notice:{failed.id}")])

    async def send(self, job: Job) -> None:
        """The ``notice`` job."""
        p = job.payload
        await self._messenger.send_text(
            p["chat_id"], p["text"], reply_to=p["reply_to"], thread_id=p["thread_id"]
        )

    async def wait_once(
        self,
        job: Job,
        checkpoint: dict[str, Any],
        exc: JobError,
        breaker: CircuitBreaker,
        outage: str,
        show: Show,
    ) -> None:
        """Say once per message why it waits: the service is down (``outage``), or the provider's
        rate limit. Other waits are not worth a word."""
        if breaker.state is not BreakerState.CLOSED:
            text = outage
        elif exc.cause is Cause.RATE_LIMITED:
            text = texts.RATE_LIMITED
        else:
            return
        if checkpoint.get("told_wait"):
            return
        await show(text)
        checkpoint["told_wait"] = 1
        await self._queue.save_checkpoint(job, checkpoint)

    async def failed_for_good(
        self,
        job: Job,
        where: ReplyTarget,
        exc: BaseException | None,
        *,
        text: Callable[[Cause | None], str] = texts.failed,
        show: Show | None = None,
    ) -> None:
        """A job is dead: say so politely, in our words, never the error's (``show`` puts it in
        place, e.g. an edit; a durable notice if that fails or there is none). Nobody to tell
        when the bot was blocked; nothing more to say after a /cancel. Then alert the admins if
        only they can fix it."""
        cause = exc.cause if isinstance(exc, JobError) else None
        if cause not in (Cause.BLOCKED, Cause.STOPPED):
            shown = False
            if show is not None:
                try:
                    await show(text(cause))
                    shown = True
                except JobError as send_exc:  # Telegram trouble now: the notice waits in the queue
                    self._log.warning("could not tell chat {} in place: {}", where.chat_id, send_exc)
            if not shown:
                await self.durable(job, where, text(cause))
        if isinstance(exc, JobError) and exc.cause in (Cause.QUOTA, Cause.AUTH, Cause.NO_SUCH_MODEL):
            with self._alerts.speaking():
                alert = texts.ALERT_MODEL if exc.cause is Cause.NO_SUCH_MODEL else texts.ALERT_UPSTREAM
                detail = alert.format(detail=exc)
            await self._alerts.send(detail)


def notice_job(where: ReplyTarget, text: str, *, dedup_key: str) -> NewJob:
    """A ``notice`` job: ``text`` said in reply to ``where``, retried like any other job."""
    payload = {"chat_id": where.chat_id, "reply_to": where.message_id, "thread_id": where.thread_id}
    return NewJob(NOTICE_KIND, {**payload, "text": text}, dedup_key=dedup_key)


def unstorable_notice(incoming: Incoming) -> NewJob:
    """The notice for a sender whose message was let in but could not be stored (the intake
    keeps it as a dead letter)."""
    return notice_job(incoming.target, texts.UNREADABLE, dedup_key=f"notice:update:{incoming.update_id}")
