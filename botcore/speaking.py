"""Voice replies: after an answer is delivered, the same answer read aloud and sent as a voice
note (``/voice on``, or ``auto`` when the user spoke), in the same job, so it follows its text in
the chat's order. The audio is kept on disk before it is billed and sent: a retry or a restart
sends it without paying twice. A voice note is a bonus to the text: when it cannot be made, the
user hears so in a line and the job goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import telegram
from loguru import logger

from botcore import spool, texts
from botcore.breaker import CircuitBreaker
from botcore.errors import JobError, LeaseLostError
from botcore.incoming import Incoming
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, Usage
from botcore.spending import Spending, billing_key
from botcore.tts import SpeechSynth, spoken


class Speaker:
    def __init__(
        self,
        *,
        synth: SpeechSynth,
        queue: JobQueue,
        messenger: Messenger,
        spending: Spending,
        breaker: CircuitBreaker,
        files: Path,  # where spoken answers wait to be sent
        max_chars: int,
    ) -> None:
        self._synth = synth
        self._queue = queue
        self._messenger = messenger
        self._spending = spending
        self._breaker = breaker
        self._files = files
        self._max_chars = max_chars
        self._log = logger.bind(component="speech")

    async def after_answer(
        self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], *, mode: str, spoken_to: bool
    ) -> None:
        """Read the delivered answer aloud if this chat's ``mode`` asks for it."""
        if checkpoint.get("voice_done") or not (mode == "on" or (mode == "auto" and spoken_to)):
            return
        kept = self._files / f"{job.id}.ogg"
        try:
            await self._speak(job, incoming, checkpoint, kept)
        except LeaseLostError:
            raise
        except JobError as exc:  # the text is there: say it in a line rather than fail the answer
            self._log.warning("no voice reply for job {}: {}", job.id, exc)
            where = incoming.target
            await self._messenger.send_text(
                where.chat_id, texts.VOICE_REPLY_FAILED, thread_id=where.thread_id
            )
        checkpoint["voice_done"] = 1
        await self._queue.save_checkpoint(job, checkpoint)
        await spool.drop(kept)

    async def _speak(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], kept: Path) -> None:
        where = incoming.target
        if "voice_model" not in checkpoint:
            if await self._spending.refusal(incoming.sender_id) is not None:
                return  # over a budget: the text answer said enough
            text = spoken(checkpoint["answer"], self._max_chars)
            async with (
                self._breaker.call(caller=where.chat_id),
                self._messenger.typing(
                    where.chat_id,
                    in_group=incoming.in_group,
                    action=telegram.constants.ChatAction.RECORD_VOICE,
                ),
            ):
                speech = await self._synth.speak(text)
            await spool.keep(kept, speech.audio)  # before it is billed: never twice
            checkpoint.update(voice_model=speech.model, voice_chars=len(text))
            await self._queue.save_checkpoint(job, checkpoint)
        await self._spending.record(
            Usage("speech", checkpoint["voice_model"], spoken_chars=checkpoint["voice_chars"]),
            key=billing_key(job, "speech"),
            job_id=job.id,
            chat_id=where.chat_id,
            user_id=incoming.sender_id,
        )
        audio = await spool.read(kept)
        if audio is None:
            self._log.warning("the voice reply of job {} is gone from {}", job.id, self._files)
            return
        await self._messenger.send_voice(
            where.chat_id, audio, reply_to=where.message_id, thread_id=where.thread_id
        )
