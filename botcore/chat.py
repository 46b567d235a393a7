"""The chat service: answers text with the LLM and this chat's memory (streamed or not), tells
users why a message failed, durably, and alerts the admins about what only they can fix.

Safe to run twice: the generated answer and the number of reply messages already sent are saved
in the job's checkpoint, so a retry neither asks the LLM again nor re-sends what Telegram took."""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass
from typing import Any

from loguru import logger

from botcore import texts
from botcore.alerts import Alerts
from botcore.breaker import BreakerState, CircuitBreaker
from botcore.cancels import Cancels
from botcore.clock import DAY_S, Clock
from botcore.errors import (
    Cause,
    ContextTooLongError,
    JobError,
    LeaseLostError,
    StoppedByUser,
    TransientError,
    UpstreamUnavailable,
)
from botcore.formatting import render
from botcore.incoming import sender_of, valid_id
from botcore.jobqueue import JobQueue
from botcore.llm import ChatModel, Completion
from botcore.messenger import Messenger
from botcore.models import Job, NewJob, Turn, Usage
from botcore.spending import Spending, billing_key, failed_call_key
from botcore.storage import ConversationStore
from botcore.streaming import StreamingReply

NOTICE_KIND = "notice"


class ChatService:
    def __init__(
        self,
        *,
        queue: JobQueue,
        conversations: ConversationStore,
        model: ChatModel,
        messenger: Messenger,
        breaker: CircuitBreaker,
        alerts: Alerts,
        spending: Spending,
        clock: Clock,
        system_prompt: str,
        history_messages: int,
        history_ttl_days: float,
        bot_username: str | None = None,
        stream: bool = False,
        stream_interval_s: float = 1.0,
        llm_slots: asyncio.Semaphore,
    ) -> None:
        self._queue = queue
        self._conversations = conversations
        self._model = model
        self._messenger = messenger
        self._breaker = breaker
        self._alerts = alerts
        self._spending = spending
        self._clock = clock
        self._system_prompt = system_prompt
        self._history_messages = history_messages
        self._history_ttl_s = history_ttl_days * DAY_S
        self._bot_username = bot_username
        self._stream = stream
        self._stream_interval_s = stream_interval_s
        # LLM_CONCURRENCY bounds every LLM call, voice answers included (they run as voice jobs).
        self._llm_slots = llm_slots
        self.cancels = Cancels()
        self._log = logger.bind(component="chat")

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """The update could not be answered for good: say why, once, in our words."""
        message = job.payload.get("message")
        if not isinstance(message, dict):
            return
        cause = exc.cause if isinstance(exc, JobError) else None
        if cause not in (Cause.BLOCKED, Cause.STOPPED):  # nobody to tell; told already
            await self.notify(job, ReplyTarget.of(message), texts.failed(cause))
        await self.alert_if_owner_must_act(exc)

    async def notify(self, failed: Job, where: ReplyTarget, text: str) -> None:
        """Tell the user, durably: a ``notice`` job, retried like any other, so a Telegram hiccup
        at this moment does not swallow the message that says their message failed."""
        payload = {"chat_id": where.chat_id, "reply_to": where.message_id, "thread_id": where.thread_id}
        await self._queue.enqueue(NOTICE_KIND, {**payload, "text": text}, dedup_key=f"notice:{failed.id}")

    async def send_notice(self, job: Job) -> None:
        """The ``notice`` job."""
        p = job.payload
        await self._messenger.send_text(
            p["chat_id"], p["text"], reply_to=p["reply_to"], thread_id=p["thread_id"]
        )

    async def alert_if_owner_must_act(self, exc: BaseException | None) -> None:
        """A job's final failure that only the owner can fix (a key, the billing) alerts the admins."""
        if isinstance(exc, JobError) and exc.cause in (Cause.QUOTA, Cause.AUTH):
            await self._alerts.send(texts.ALERT_UPSTREAM.format(detail=exc))

    def speaker_text(self, message: dict[str, Any], text: str) -> str:
        """What goes to the model as the user's turn. In a group: without the mention of the bot,
        and with the speaker's name in front, so the model can tell people apart."""
        text = text.strip()
        if (message.get("chat") or {}).get("type") not in ("group", "supergroup"):
            return text
        if self._bot_username:
            text = re.sub(rf"@{re.escape(self._bot_username)}\b", "", text, flags=re.IGNORECASE).strip()
        sender = sender_of(message)
        name = sender.name if sender else "someone"
        return f"{name}: {text}" if text else ""

    async def notice_once(self, job: Job, checkpoint: dict[str, Any], where: ReplyTarget, text: str) -> None:
        if checkpoint.get("sent"):
            return
        await self._messenger.send_text(
            where.chat_id, text, reply_to=where.message_id, thread_id=where.thread_id
        )
        checkpoint["sent"] = 1
        await self.save(job, checkpoint)

    async def answer(
        self, job: Job, where: ReplyTarget, user_id: int | None, text: str, checkpoint: dict[str, Any]
    ) -> None:
        """Answer ``text`` with the LLM and this chat's memory. ``checkpoint`` is the job's progress
        (it may hold a voice job's transcript too); this adds the answer and the parts sent."""
        if checkpoint.get("stopped"):
            return  # stopped with /cancel
        if "answer" not in checkpoint:
            refusal = await self._spending.refusal(user_id)
            if refusal is not None:
                await self.notice_once(job, checkpoint, where, refusal)
                return
            generated = await self._generate(job, where, user_id, text, checkpoint)
            if generated is None:
                return
            completion, live = generated
            checkpoint.update(answer=completion.text, sent=0, usage=asdict(completion.usage))
            await self.save(job, checkpoint)
        else:
            live = None
        # On every attempt: recording is idempotent per job, and a failure here must not lose it.
        await self._spending.record(
            Usage(**checkpoint["usage"]),
            key=billing_key(job, "chat"),
            job_id=job.id,
            chat_id=where.chat_id,
            user_id=user_id,
        )
        await self._deliver(job, where, checkpoint, live)
        await self._conversations.add_exchange(
            where.chat_id,
            job_id=job.id,
            user_text=text,
            answer=checkpoint["answer"],
            now=self._clock.now(),
            replaces_job=checkpoint.get("redo_job"),
        )

    async def _generate(
        self, job: Job, where: ReplyTarget, user_id: int | None, text: str, checkpoint: dict[str, Any]
    ) -> tuple[Completion, StreamingReply | None] | None:
        """The model's answer (with the streamed reply showing it, if streaming is on); None if
        the user was told instead why there is none."""
        history = await self._conversations.history(
            where.chat_id,
            limit=self._history_messages,
            since=self._clock.now() - self._history_ttl_s,
            leave_out_job=checkpoint.get("redo_job"),
        )
        live = None
        if self._stream:

            async def remember(ids: list[int]) -> None:
                checkpoint["stream_ids"] = ids  # a retry edits these instead of sending more
                await self.save(job, checkpoint)

            live = StreamingReply(
                self._messenger,
                where.chat_id,
                reply_to=where.message_id,
                thread_id=where.thread_id,
                interval_s=self._stream_interval_s,
                message_ids=checkpoint.get("stream_ids", ()),
                on_new_message=remember,
            )
        try:
            async with (
                self.cancels.scope(where.chat_id, job.id),  # /cancel also stops one waiting for a slot
                self._llm_slots,
                self._breaker.call(caller=where.chat_id),
                self._messenger.typing(where.chat_id),
            ):
                try:
                    return await self._complete(history, text, live), live
                except JobError as exc:  # a failure the provider may have billed
                    partial = self._partial_usage(history, text, live)
                    await self._record_failed_call(job, where, user_id, exc.usage or partial)
                    raise
                except asyncio.CancelledError:  # /cancel or shutdown: what was written was billed
                    await self._record_failed_call(
                        job, where, user_id, self._partial_usage(history, text, live)
                    )
                    raise
        except LeaseLostError:
            raise  # a newer attempt owns the job and its messages now: leave them alone
        except UpstreamUnavailable as exc:
            if live is not None:
                await live.mark(texts.STREAM_INTERRUPTED)
            await self._tell_wait_once(job, where, checkpoint, exc)
            raise  # the queue waits for the service without spending an attempt
        except ContextTooLongError:
            await self.notice_once(job, checkpoint, where, texts.CONTEXT_TOO_LONG)
            return None
        except StoppedByUser:
            checkpoint["stopped"] = 1  # a rerun of this job (after a crash) must not answer
            await self.save(job, checkpoint)
            if live is not None:
                await live.mark(texts.STREAM_STOPPED)
            return None  # the /cancel job says so
        except TransientError as exc:
            retries = self._queue.will_retry(job, exc)
            if live is not None:  # no half answer is kept: it retries, or says it could not finish
                await live.mark(texts.STREAM_INTERRUPTED if retries else texts.STREAM_FAILED)
            if retries:  # this failure may have opened the circuit: then the user hears why
                await self._tell_wait_once(job, where, checkpoint, exc)
            raise
        except JobError:
            if live is not None:
                await live.mark(texts.STREAM_FAILED)
            raise

    async def _record_failed_call(
        self, job: Job, where: ReplyTarget, user_id: int | None, usage: Usage | None
    ) -> None:
        """A call that ended without an answer but was billed (an empty answer, a content
        filter, a stream broken or stopped after text) is recorded once, now: a retry, if any,
        is another call."""
        if usage is not None:
            await self._spending.record(
                usage, key=failed_call_key(), job_id=job.id, chat_id=where.chat_id, user_id=user_id
            )

    def _partial_usage(self, history: list[Turn], text: str, live: StreamingReply | None) -> Usage | None:
        """An estimate of what a streamed call that stopped had cost, from the text it showed."""
        if live is None or not live.text:
            return None
        return self._model.estimate(self._system_prompt, [*history, Turn("user", text)], live.text)

    async def _deliver(
        self, job: Job, where: ReplyTarget, checkpoint: dict[str, Any], live: StreamingReply | None
    ) -> None:
        """The answer, rendered, in as many messages as it needs: the streamed messages are
        edited into it (extra ones deleted), the rest sent. Resumes where an earlier attempt
        stopped."""
        chunks = render(checkpoint["answer"])
        shown: list[int] = checkpoint.get("stream_ids", [])
        paced = False
        for index in range(checkpoint["sent"], len(chunks)):
            chunk = chunks[index]
            if live is None or not live.shows(index, chunk):  # else on screen as it should end
                if live is not None and not paced:
                    # The final edits keep the pace too, but only when one is needed: an answer
                    # the stream already shows in full frees its worker at once.
                    await live.wait_turn()
                    paced = True
                if index >= len(shown) or not await self._messenger.edit_chunk(
                    where.chat_id, shown[index], chunk
                ):
                    await self._messenger.send_chunk(
                        where.chat_id,
                        chunk,
                        reply_to=where.message_id if index == 0 else None,
                        thread_id=where.thread_id,
                    )
            checkpoint["sent"] = index + 1
            await self.save(job, checkpoint)
        for extra in shown[len(chunks) :]:
            await self._messenger.delete(where.chat_id, extra)

    async def _complete(self, history: list[Turn], text: str, live: StreamingReply | None) -> Completion:
        """One completion; if the conversation no longer fits the model, once more with only the
        newer half of the history (the oldest messages dropped)."""

        async def ask(turns: list[Turn]) -> Completion:
            if live is None:
                return await self._model.complete(self._system_prompt, turns)
            return await self._model.stream(self._system_prompt, turns, live.update)

        try:
            return await ask([*history, Turn("user", text)])
        except ContextTooLongError:
            if not history:
                raise
            newer = history[len(history) // 2 :]
            if newer and newer[0].role == "assistant":
                newer = newer[1:]  # start with a question, as a conversation does
            return await ask([*newer, Turn("user", text)])

    async def _tell_wait_once(
        self, job: Job, where: ReplyTarget, checkpoint: dict[str, Any], exc: JobError
    ) -> None:
        """Say once per message why the answer is late: an outage, or the provider's rate limit."""
        text = wait_notice(self._breaker, exc, outage_text=texts.OUTAGE)
        if text is None or checkpoint.get("told_wait"):
            return
        await self._messenger.send_text(
            where.chat_id, text, reply_to=where.message_id, thread_id=where.thread_id
        )
        checkpoint["told_wait"] = 1
        await self.save(job, checkpoint)

    async def save(self, job: Job, checkpoint: dict[str, Any]) -> None:
        await self._queue.save_checkpoint(job, checkpoint)


def unstorable_notice(update: dict[str, Any]) -> NewJob | None:
    """The notice for a sender whose message was let in but could not be stored (the intake
    keeps it as a dead letter): a ``notice`` job, when there is a chat to answer in."""
    message = update.get("message")
    chat = message.get("chat") if isinstance(message, dict) else None
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    if not isinstance(message, dict) or not valid_id(chat_id):
        return None
    reply_to, thread_id = message.get("message_id"), message.get("message_thread_id")
    payload = {
        "chat_id": chat_id,
        "reply_to": reply_to if valid_id(reply_to) else None,
        "thread_id": thread_id if valid_id(thread_id) else None,
        "text": texts.UNREADABLE,
    }
    return NewJob(NOTICE_KIND, payload, dedup_key=f"notice:update:{update.get('update_id')}")


def wait_notice(breaker: CircuitBreaker, exc: JobError, *, outage_text: str) -> str | None:
    """What to tell a user whose message waits for an upstream (None: a wait not worth a word)."""
    if breaker.state is not BreakerState.CLOSED:
        return outage_text
    if exc.cause is Cause.RATE_LIMITED:
        return texts.RATE_LIMITED
    return None


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply goes: the chat, the message it answers, and the forum topic if any."""

    chat_id: int
    message_id: int
    thread_id: int | None

    @classmethod
    def of(cls, message: dict[str, Any]) -> ReplyTarget:
        return cls(int(message["chat"]["id"]), int(message["message_id"]), message.get("message_thread_id"))
