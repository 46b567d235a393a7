"""The chat service: answers a message with the LLM and this chat's memory (streamed or not).
Safe to run twice: the generated answer and the number of reply messages already sent are saved
in the job's checkpoint, so a retry neither asks the LLM again nor re-sends what Telegram took.
What users are told besides the answer is the ``Notices``' job."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from loguru import logger

from botcore import texts
from botcore.breaker import CircuitBreaker
from botcore.cancels import Cancels
from botcore.clock import DAY_S, Clock
from botcore.completion import Completion
from botcore.concurrency import LlmLimits
from botcore.delivery import Delivery
from botcore.errors import (
    Cause,
    ContextTooLongError,
    JobError,
    LeaseLostError,
    PermanentError,
    StoppedByUser,
    TransientError,
    UpstreamUnavailable,
)
from botcore.incoming import Incoming, ReplyTarget
from botcore.jobqueue import JobQueue
from botcore.llm import ChatModel
from botcore.menus import View
from botcore.messenger import Messenger
from botcore.models import Job, Turn, Usage
from botcore.notices import Notices
from botcore.prefs import ChatSettings
from botcore.question import Ask, Question
from botcore.receipts import Receipts
from botcore.speaking import Speaker
from botcore.spending import Spending, billing_key, failed_call_key
from botcore.storage import ConversationStore
from botcore.streaming import StreamingReply
from botcore.vision import Vision, marked


class ChatService:
    def __init__(
        self,
        *,
        queue: JobQueue,
        conversations: ConversationStore,
        model: ChatModel,
        messenger: Messenger,
        breakers: Callable[[str], CircuitBreaker],  # the LLM's circuit breaker for a model
        notices: Notices,
        cancels: Cancels,
        spending: Spending,
        clock: Clock,
        settings: ChatSettings,  # each chat's model, persona, streaming and memory
        history_ttl_days: float,
        bot_username: str | None = None,
        stream_interval_s: float = 1.0,
        show_reasoning: bool = False,
        llm_limit: LlmLimits,
        vision: Vision | None = None,  # None: images are not shown to the model (VISION=off)
        speaker: Speaker | None = None,  # None: no voice replies (TTS_MODE=off)
        receipts: Receipts | None = None,  # the 👀 cleared once answered (REACTIONS)
    ) -> None:
        self._queue = queue
        self._conversations = conversations
        self._model = model
        self._messenger = messenger
        self._breakers = breakers
        self._notices = notices
        self._cancels = cancels
        self._spending = spending
        self._clock = clock
        self._settings = settings
        self._history_ttl_s = history_ttl_days * DAY_S
        self._bot_username = bot_username
        self._delivery = Delivery(messenger, queue, clock, stream_interval_s=stream_interval_s)
        self._show_reasoning = show_reasoning
        # LLM_CONCURRENCY bounds every LLM call, voice answers included (they run as voice jobs).
        self._llm_limit = llm_limit
        self._vision = vision
        self._speaker = speaker
        self._receipts = receipts
        self._log = logger.bind(component="chat")

    def speaker_text(self, incoming: Incoming) -> str:
        """What goes to the model as the user's turn. In a group: without the mention of the bot,
        and with the speaker's name in front, so the model can tell people apart."""
        text = incoming.text.strip()
        if not incoming.in_group:
            return text
        if self._bot_username:
            text = re.sub(rf"@{re.escape(self._bot_username)}\b", "", text, flags=re.IGNORECASE).strip()
        name = incoming.sender.name if incoming.sender else "someone"
        return f"{name}: {text}" if text else ""

    async def answer(
        self,
        job: Job,
        incoming: Incoming,
        checkpoint: dict[str, Any],
        text: str | None = None,
        images: Sequence[str] = (),
        spoken_to: bool = False,  # the user sent a voice note: /voice auto answers with voice
    ) -> None:
        """Answer ``incoming`` with the LLM and this chat's memory; ``text`` in place of its own
        (a /retry's earlier question), ``images`` (file ids) shown with it. ``checkpoint`` is the
        job's progress (it may hold a voice job's transcript too); this adds the answer and the
        parts sent."""
        if checkpoint.get("stopped"):
            return  # stopped with /cancel
        where, user_id = incoming.target, incoming.sender_id
        text = self.speaker_text(incoming) if text is None else text
        view = await self._settings.view(where.chat_id)
        live: StreamingReply | None = None
        completion: Completion | None = None  # None: an earlier attempt's answer is in the checkpoint
        if "answer" not in checkpoint:
            refusal = await self._spending.refusal(user_id)
            if refusal is not None:
                await self._notices.once(job, checkpoint, where, refusal)
                return
            generated = await self._generate(job, incoming, Question(text, tuple(images)), checkpoint, view)
            if generated is None:
                return
            completion, live = generated
        try:
            if completion is not None:
                checkpoint.update(answer=completion.text, sent=0, usage=asdict(completion.usage))
                if self._show_reasoning and completion.reasoning:  # shown, never kept in memory
                    checkpoint["reasoning"] = completion.reasoning
                await self._queue.save_checkpoint(job, checkpoint)
            # On every attempt: recording is idempotent per job, and a failure here must not lose it.
            await self._spending.record(
                Usage(**checkpoint["usage"]),
                key=billing_key(job, "chat"),
                job_id=job.id,
                chat_id=where.chat_id,
                user_id=user_id,
            )
            await self._delivery.deliver(job, where, checkpoint, live)
        except BaseException:
            if live is not None:  # whatever failed on the way, its painter stops with it
                live.abandon()
            raise
        if self._receipts is not None:
            self._receipts.answered(where.chat_id, where.message_id)
        if view.memory:  # else each message stands alone in this chat
            await self._remember(job, where.chat_id, text, images, checkpoint)
        if self._speaker is not None:
            await self._speaker.after_answer(job, incoming, checkpoint, mode=view.voice, spoken_to=spoken_to)

    async def _remember(
        self, job: Job, chat_id: int, text: str, images: Sequence[str], checkpoint: dict[str, Any]
    ) -> None:
        await self._conversations.add_exchange(
            chat_id,
            job_id=job.id,
            user_text=text,
            answer=checkpoint["answer"],
            now=self._clock.now(),
            replaces_job=checkpoint.get("redo_job"),
            user_images=images,
        )

    async def _generate(
        self, job: Job, incoming: Incoming, question: Question, checkpoint: dict[str, Any], view: View
    ) -> tuple[Completion, StreamingReply | None] | None:
        """The model's answer (with the streamed reply showing it, if streaming is on); None if
        the user was told instead why there is none."""
        where, user_id = incoming.target, incoming.sender_id
        history = await self._conversations.history(
            where.chat_id,
            limit=view.history_messages if view.memory else 0,
            since=self._clock.now() - self._history_ttl_s,
            leave_out_job=checkpoint.get("redo_job"),
        )
        sees = self._vision is not None and await self._model.sees_images(view.model)
        if question.images and not sees:  # VISION=off since, or a model that refused images
            cause_text = texts.failed(Cause.NO_VISION) if self._vision else texts.VISION_OFF
            await self._notices.once(job, checkpoint, where, cause_text)
            return None
        live = self._delivery.live_reply(job, incoming, checkpoint) if view.stream else None
        breaker = self._breakers(view.model)
        answered = False
        try:
            async with self._cancels.scope(where.chat_id, job.id):  # /cancel stops a download, or a wait
                breaker.refuse_if_open()  # in an outage, nothing is downloaded for a call that cannot go
                ask = Ask(
                    self._model, view.model, view.persona.prompt, *await self._shown(history, question, sees)
                )
                async with (
                    self._llm_limit.of(view.model).slot() as call,
                    breaker.call(caller=where.chat_id),
                    self._messenger.typing(where.chat_id, in_group=incoming.in_group),
                ):
                    if self._receipts is not None:
                        self._receipts.working(where.chat_id, where.message_id)
                    try:
                        completion = await self._complete(ask, live, call.first_token)
                        call.tokens = completion.usage.completion_tokens  # the limit judges time per token
                    except JobError as exc:  # a failure the provider may have billed
                        partial = ask.partial_usage(live)
                        await self._record_failed_call(job, where, user_id, exc.usage or partial)
                        raise
                    except asyncio.CancelledError:  # /cancel or shutdown: what was written was billed
                        await self._record_failed_call(job, where, user_id, ask.partial_usage(live))
                        raise
            answered = True
            return completion, live  # the slot is free now: the delivery waits for Telegram
        except LeaseLostError:
            raise  # a newer attempt owns the job and its messages now: leave them alone
        except UpstreamUnavailable as exc:
            if live is not None:
                await live.mark(texts.STREAM_INTERRUPTED, final=False)
            await self._tell_wait(job, incoming, checkpoint, exc, view.model)
            raise  # the queue waits for the service without spending an attempt
        except ContextTooLongError:
            await self._notices.once(job, checkpoint, where, texts.CONTEXT_TOO_LONG)
            return None
        except StoppedByUser:
            checkpoint["stopped"] = 1  # a rerun of this job (after a crash) must not answer
            await self._queue.save_checkpoint(job, checkpoint)
            if live is not None:
                await live.mark(texts.STREAM_STOPPED)
            return None  # the /cancel job says so
        except TransientError as exc:
            retries = self._queue.will_retry(job, exc)
            if live is not None:  # no half answer is kept: it retries, or says it could not finish
                await live.mark(
                    texts.STREAM_INTERRUPTED if retries else texts.STREAM_FAILED, final=not retries
                )
            if retries:  # this failure may have opened the circuit: then the user hears why
                await self._tell_wait(job, incoming, checkpoint, exc, view.model)
            raise
        except JobError:
            if live is not None:
                await live.mark(texts.STREAM_FAILED)
            raise
        finally:
            if live is not None and not answered:
                live.abandon()  # what it was still to show is of no use now

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

    async def _shown(
        self, history: list[Turn], question: Question, sees: bool
    ) -> tuple[list[Turn], Question]:
        """The history and the question as the model is shown them: images downloaded (by file
        id) for a model that sees, markers in place of the others."""
        if self._vision is None:
            return [marked(turn) for turn in history], question
        loaded = Question(question.text, await self._vision.load(question.images))
        return await self._vision.history(history, sees=sees), loaded

    async def _complete(
        self, ask: Ask, live: StreamingReply | None, first_token: Callable[[], None]
    ) -> Completion:
        """One completion; if the conversation no longer fits the model, once more with only the
        newer half of the history (the oldest messages dropped); if an image in the history was
        refused (a question without one of its own), once more without images."""
        try:
            return await ask.complete(live, first_token)
        except ContextTooLongError:  # a PermanentError too: first
            if not ask.history:
                raise
            newer = ask.history[len(ask.history) // 2 :]
            if newer and newer[0].role == "assistant":
                newer = newer[1:]  # start with a question, as a conversation does
            return await replace(ask, history=newer).complete(live, first_token)
        except PermanentError as exc:
            history_images = any(turn.images for turn in ask.history)
            if exc.cause is not Cause.NO_VISION or ask.question.images or not history_images:
                raise
            unseen = [marked(turn) for turn in ask.history]
            return await replace(ask, history=unseen).complete(live, first_token)

    async def _tell_wait(
        self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], exc: JobError, model: str
    ) -> None:
        """The job will wait and run again: the user hears why (once), and sees the receipt again."""
        where = incoming.target
        if self._receipts is not None:  # it was called off when the answer began
            self._receipts.received(where.chat_id, where.message_id, in_group=incoming.in_group)

        async def show(text: str) -> None:
            await self._notices.reply(where, text)

        await self._notices.wait_once(job, checkpoint, exc, self._breakers(model), texts.OUTAGE, show)
