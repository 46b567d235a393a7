"""Voice notes, audio files and video notes: acknowledged at once, transcribed in the
background, the acknowledgement edited into the transcript, then handed to the chat service
once, as a typed message would be.

Routing makes two jobs of each: ``voice-ack``, outside the chat's order so the user hears back
at once, which leaves its decision (refused, or the message to edit later) in the key-value
store; and ``voice``, in the chat's order, which reads that decision (waiting with ``NotYet``
while the acknowledgement is on its way), downloads (by file_id, again on every retry),
transcribes, edits and answers. Progress is checkpointed, so a
retry neither transcribes again nor repeats what was sent. A note is judged by its audio, not
its sender's claims: measured after download, refused past the limit, and billed by the seconds
the provider reports, else those measured, else those declared."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from loguru import logger

from botcore import texts
from botcore.acks import REFUSED, Acks, Decision, with_file
from botcore.attachments import Attachment
from botcore.audio import measure_seconds
from botcore.breaker import CircuitBreaker
from botcore.cancels import Cancels
from botcore.chat import ChatService
from botcore.errors import StoppedByUser, UpstreamUnavailable
from botcore.formatting import plain_chunks
from botcore.incoming import Incoming, clean_text
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, Usage
from botcore.notices import Notices
from botcore.spending import Spending, billing_key
from botcore.stt import SpeechToText

VOICE_KIND = "voice"
ACK_KIND = "voice-ack"


def ack_key(incoming: Incoming) -> str:
    """The dedup key of a voice note's acknowledgement job, by which its voice job finds it."""
    return f"voice-ack:{incoming.chat_id}:{incoming.message_id}"


def voice_key(incoming: Incoming) -> str:
    return f"voice:{incoming.chat_id}:{incoming.message_id}"


class VoiceService:
    def __init__(
        self,
        *,
        chat: ChatService,
        queue: JobQueue,
        spending: Spending,
        notices: Notices,
        cancels: Cancels,
        acks: Acks,
        messenger: Messenger,
        stt: SpeechToText | None,  # None: voice is turned off
        breaker: CircuitBreaker,
        max_download_mb: float,
        max_seconds: float,
        reply: str,  # "answer" or "transcript"
    ) -> None:
        self._chat = chat
        self._queue = queue
        self._spending = spending
        self._notices = notices
        self._cancels = cancels
        self._acks = acks
        self._messenger = messenger
        self._stt = stt
        self._breaker = breaker
        self._max_bytes = max_download_mb * 1024 * 1024
        self._max_seconds = max_seconds
        self._reply = reply
        self._log = logger.bind(component="voice")

    def _too_long(self, seconds: float) -> str:
        return texts.VOICE_TOO_LONG.format(
            length=texts.duration(seconds), limit=texts.duration(self._max_seconds)
        )

    def _refusal(self, note: Attachment) -> str | None:
        """Decided from the message alone, before anything is downloaded."""
        if self._stt is None:
            return texts.VOICE_OFF
        limit = min(self._max_bytes, self._stt.max_bytes or self._max_bytes)
        if note.size is not None and note.size > limit:
            return texts.VOICE_TOO_BIG.format(size=note.size / 1024 / 1024, limit=limit / 1024 / 1024)
        if note.seconds is not None and note.seconds > self._max_seconds:
            return self._too_long(note.seconds)
        return None

    async def acknowledge(self, job: Job) -> None:
        """The ``voice-ack`` job: the refusal, or "Processing…". Its decision (refused, or the
        id of the message to edit later) is left in the key-value store, for the voice job."""
        voice = with_file(job)
        if voice is None:
            return
        incoming, note = voice
        refusal = self._refusal(note)
        await self._acks.send(job, incoming, refusal or texts.VOICE_ACK, refused=refusal is not None)

    async def transcribe_and_answer(self, job: Job) -> None:
        """The ``voice`` job, in the chat's order."""
        voice = with_file(job)
        if voice is None:
            return
        incoming, note = voice
        checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        if checkpoint.get("stopped"):
            return  # stopped with /cancel (this is a rerun after a crash)
        if "ack" not in checkpoint:
            refused = self._refusal(note) is not None
            checkpoint["ack"] = await self._acks.decision(incoming, ack_key(incoming), refused=refused)
            if checkpoint["ack"] != REFUSED:  # else the acknowledgement job told the user why
                await self._queue.save_checkpoint(job, checkpoint)
        if checkpoint["ack"] != REFUSED:
            await self._transcribe_and_answer(job, incoming, note, checkpoint)
        await self._acks.forget(incoming)

    async def _transcribe_and_answer(
        self, job: Job, incoming: Incoming, note: Attachment, checkpoint: dict[str, Any]
    ) -> None:
        if self._stt is None:  # voice was turned off after the acknowledgement
            await self._show(incoming, checkpoint["ack"], texts.VOICE_OFF)
            return
        if "transcript" not in checkpoint and not await self._transcribe(job, incoming, note, checkpoint):
            return
        await self._spending.record(
            Usage(**checkpoint["stt_usage"]),
            key=billing_key(job, "transcription"),
            job_id=job.id,
            chat_id=incoming.chat_id,
            user_id=incoming.sender_id,
        )
        transcript = checkpoint["transcript"]
        if not transcript:
            await self._show(incoming, checkpoint["ack"], texts.VOICE_NO_SPEECH)
            return
        await self._show_transcript(job, incoming, transcript, checkpoint)
        if self._reply == "answer":
            await self._chat.answer(job, incoming.with_text(transcript), checkpoint, spoken_to=True)

    async def _transcribe(
        self, job: Job, incoming: Incoming, note: Attachment, checkpoint: dict[str, Any]
    ) -> bool:
        """Download, measure and transcribe into the checkpoint. False when the user was told
        instead why there is no transcript (a budget, the length, a /cancel)."""
        refusal = await self._spending.refusal(incoming.sender_id)
        if refusal is not None:
            await self._show(incoming, checkpoint["ack"], refusal)
            return False
        audio = await self._messenger.download(note.file_id)
        # What the sender declared is only a claim: the container says how long it really is.
        measured = await asyncio.to_thread(measure_seconds, audio)
        if measured is not None and measured > self._max_seconds:
            await self._show(incoming, checkpoint["ack"], self._too_long(measured))
            return False
        # Unmeasurable audio still goes to the provider, which may decode it all the same.
        seconds = measured if measured is not None else note.seconds
        assert self._stt is not None
        try:
            async with (
                self._cancels.scope(incoming.chat_id, job.id),
                self._breaker.call(caller=incoming.chat_id),
            ):
                result = await self._stt.transcribe(
                    audio, filename=note.filename, mime=note.mime, seconds=seconds
                )
        except UpstreamUnavailable as exc:

            async def show(text: str) -> None:
                await self._show(incoming, await self._acks.message_id(incoming, checkpoint), text)

            await self._notices.wait_once(job, checkpoint, exc, self._breaker, texts.VOICE_OUTAGE, show)
            raise  # the queue waits for the service without spending an attempt
        except StoppedByUser:  # /cancel: done, not failed; the acknowledgement says so
            checkpoint["stopped"] = 1
            await self._queue.save_checkpoint(job, checkpoint)
            await self._show(incoming, checkpoint["ack"], texts.VOICE_STOPPED)
            return False
        # Billed by what the provider says it processed, else by what was measured or declared.
        billed = result.duration_s if result.duration_s is not None else seconds or 0.0
        usage = Usage("transcription", result.model, audio_seconds=billed)
        checkpoint.update(transcript=clean_text(result.text), stt_usage=asdict(usage))  # any provider
        await self._queue.save_checkpoint(job, checkpoint)
        return True

    async def _show(self, incoming: Incoming, ack: Decision, text: str) -> None:
        await self._acks.show(incoming, ack, text)

    async def _show_transcript(
        self, job: Job, incoming: Incoming, transcript: str, checkpoint: dict[str, Any]
    ) -> None:
        """The acknowledgement becomes the transcript; a long one continues in new messages."""
        parts = plain_chunks(texts.VOICE_TRANSCRIPT.format(text=transcript))
        for index in range(checkpoint.get("shown", 0), len(parts)):
            if index == 0:
                await self._show(incoming, checkpoint["ack"], parts[0].text)
            else:
                await self._messenger.send_text(
                    incoming.chat_id, parts[index].text, thread_id=incoming.thread_id
                )
            checkpoint["shown"] = index + 1
            await self._queue.save_checkpoint(job, checkpoint)

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """Failed for good: said in place of the acknowledgement. A transcript already shown
        stays; then only the answer failed, and that is said as the chat says it."""
        voice = with_file(job)
        if voice is None:
            return
        incoming, _ = voice
        checkpoint = job.checkpoint or {}
        if checkpoint.get("shown"):
            await self._notices.failed_for_good(job, incoming.target, exc)
        else:

            async def show(text: str) -> None:
                await self._show(incoming, await self._acks.message_id(incoming, checkpoint), text)

            await self._notices.failed_for_good(job, incoming.target, exc, text=texts.voice_failed, show=show)
        await self._acks.forget(incoming)
