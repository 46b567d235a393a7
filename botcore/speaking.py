"""Voice replies: after an answer is delivered, the same answer read aloud and sent as a voice
note (``/voice on``, or ``auto`` when the user spoke), in the same job, so it follows its text in
the chat's order. The audio is kept on disk before it is billed and sent: a retry or a restart
sends it without paying twice. A voice note is a bonus to the text: when the speech service
fails, the user hears so in a line and the job goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import telegram
from loguru import logger

from botcore import spool, texts
from botcore.breaker import CircuitBreaker
from botcore.cancels import Cancels
from botcore.errors import PermanentError, StoppedByUser, TransientError, UpstreamUnavailable
from botcore.incoming import Incoming
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, Usage
from botcore.spending import Spending, billing_key
from botcore.tts import Synth, spoken


class Speaker:
    def __init__(
        self,
        *,
        synth: Synth,
        queue: JobQueue,
        messenger: Messenger,
        spending: Spending,
        breaker: CircuitBreaker,
        cancels: Cancels,
        files: Path,  # where spoken answers wait to be sent
        max_chars: int,
    ) -> None:
        self._synth = synth
        self._queue = queue
        self._messenger = messenger
        self._spending = spending
        self._breaker = breaker
        self._cancels = cancels
        self._files = files
        self._max_chars = max_chars
        self._log = logger.bind(component="speech")

    async def after_answer(
        self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], *, mode: str, spoken_to: bool
    ) -> None:
        """Read the delivered answer aloud if this chat's ``mode`` asks for it."""
        if checkpoint.get("voice_done") or not (mode == "on" or (mode == "auto" and spoken_to)):
            return
        # Named by the billed call, so a job revived with /retry <id> finds what it paid for.
        kept = self._files / f"{spool.name(billing_key(job, 'speech'))}.ogg"
        if "voice_model" in checkpoint or await self._speak(job, incoming, checkpoint, kept):
            await self._send(job, incoming, checkpoint, kept)
        checkpoint["voice_done"] = 1
        await self._queue.save_checkpoint(job, checkpoint)
        await spool.drop(kept)

    async def _speak(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], kept: Path) -> bool:
        """Read the answer aloud into ``kept``; False when there is no voice note to send:
        nothing worth reading, a budget, /cancel, or the speech service failed (then the user
        hears so in a line: the text is there, and the answer is not failed for it)."""
        where = incoming.target
        text = spoken(checkpoint["answer"], self._max_chars)
        if not text or await self._spending.refusal(incoming.sender_id) is not None:
            return False
        record = telegram.constants.ChatAction.RECORD_VOICE
        try:
            async with (
                self._cancels.scope(where.chat_id, job.id),
                self._breaker.call(caller=where.chat_id),
                self._messenger.typing(where.chat_id, in_group=incoming.in_group, action=record),
            ):
                speech = await self._synth.speak(text)
        except StoppedByUser:
            return False
        except (TransientError, PermanentError, UpstreamUnavailable) as exc:
            self._log.warning("no voice reply for job {}: {}", job.id, exc)
            await self._messenger.send_text(
                where.chat_id, texts.VOICE_REPLY_FAILED, thread_id=where.thread_id
            )
            return False
        await spool.keep(kept, speech.audio)  # before it is billed: never twice
        checkpoint.update(voice_model=speech.model, voice_chars=len(text))
        await self._queue.save_checkpoint(job, checkpoint)
        return True

    async def _send(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], kept: Path) -> None:
        """Bill the spoken answer (once) and send it. Telegram's passing trouble goes to the
        queue: the audio is kept, so a retry sends it without asking for it again."""
        where = incoming.target
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
        try:
            await self._messenger.send_voice(
                where.chat_id, audio, reply_to=where.message_id, thread_id=where.thread_id
            )
        except PermanentError as exc:  # refused for good: the text answer stands
            self._log.warning("Telegram refused the voice reply of job {}: {}", job.id, exc)
