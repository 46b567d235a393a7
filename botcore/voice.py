"""Voice notes, audio files and video notes: acknowledged at once, transcribed in the
background, the acknowledgement edited into the transcript, then answered like typed text.

Each voice update becomes two jobs when it is stored (``route_update``): ``voice-ack``, outside
the chat's order so the user hears back at once, and ``voice``, in the chat's order, which
downloads (by file_id, again on every retry), transcribes, edits and answers. Progress is
checkpointed, so a retry neither transcribes again nor repeats what was sent. A note is judged by
its audio, not its sender's claims: measured after download, refused past the limit, and billed
by the seconds the provider reports, else those measured, else those declared."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from loguru import logger

from botcore import texts
from botcore.audio import measure_seconds, usable_seconds
from botcore.breaker import CircuitBreaker
from botcore.chat import ChatService, ReplyTarget, wait_notice
from botcore.clock import Clock
from botcore.errors import Cause, JobError, StoppedByUser, UpstreamUnavailable
from botcore.formatting import plain_chunks
from botcore.incoming import clean_text, sender_of, valid_id
from botcore.intake import route_to_update_job
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, JobState, NewJob, Usage
from botcore.spending import Spending, billing_key
from botcore.storage import KeyValueStore
from botcore.stt import SpeechToText

VOICE_KIND = "voice"
ACK_KIND = "voice-ack"
_REFUSED = "refused"
_MEDIA = {  # message field -> (file name to upload as, MIME type if the message gives none)
    "voice": ("voice.ogg", "audio/ogg"),
    "audio": ("audio.mp3", "audio/mpeg"),
    "video_note": ("video_note.mp4", "video/mp4"),
}


@dataclass(frozen=True, slots=True)
class VoiceNote:
    target: ReplyTarget
    user_id: int | None
    file_id: str
    seconds: float
    size: int | None
    filename: str
    mime: str


def voice_note(message: dict[str, Any]) -> VoiceNote | None:
    for field, (filename, mime) in _MEDIA.items():
        media = message.get(field)
        if isinstance(media, dict) and isinstance(media.get("file_id"), str) and media["file_id"]:
            name, size = media.get("file_name"), media.get("file_size")
            declared = media.get("mime_type")
            return VoiceNote(
                target=ReplyTarget.of(message),
                user_id=sender.id if (sender := sender_of(message)) else None,
                file_id=media["file_id"],
                # The sender's claims, where they make sense at all: measured after download.
                seconds=usable_seconds(media.get("duration")) or 0.0,
                size=size if valid_id(size) else None,
                filename=name if isinstance(name, str) and name else filename,
                mime=declared if isinstance(declared, str) and declared else mime,
            )
    return None


def route_update(update: dict[str, Any]) -> list[NewJob]:
    """The jobs one stored Telegram update becomes (the intake calls this for each update)."""
    message = update.get("message")
    note = voice_note(message) if isinstance(message, dict) else None
    if note is None:
        return route_to_update_job(update)
    where = f"{note.target.chat_id}:{note.target.message_id}"
    return [
        NewJob(ACK_KIND, update, dedup_key=f"voice-ack:{where}"),
        NewJob(VOICE_KIND, update, dedup_key=f"voice:{where}", group_key=f"chat:{note.target.chat_id}"),
    ]


class VoiceService:
    def __init__(
        self,
        *,
        chat: ChatService,
        queue: JobQueue,
        spending: Spending,
        kv: KeyValueStore,
        messenger: Messenger,
        stt: SpeechToText | None,  # None: voice is turned off
        breaker: CircuitBreaker,
        clock: Clock,
        max_download_mb: float,
        max_seconds: float,
        reply: str,  # "answer" or "transcript"
    ) -> None:
        self._chat = chat
        self._queue = queue
        self._spending = spending
        self._kv = kv
        self._messenger = messenger
        self._stt = stt
        self._breaker = breaker
        self._clock = clock
        self._max_bytes = max_download_mb * 1024 * 1024
        self._max_seconds = max_seconds
        self._reply = reply
        self._log = logger.bind(component="voice")

    def _too_long(self, seconds: float) -> str:
        return texts.VOICE_TOO_LONG.format(
            length=texts.duration(seconds), limit=texts.duration(self._max_seconds)
        )

    def _refusal(self, note: VoiceNote) -> str | None:
        """Decided from the message alone, before anything is downloaded."""
        if self._stt is None:
            return texts.VOICE_OFF
        limit = min(self._max_bytes, self._stt.max_bytes or self._max_bytes)
        if note.size is not None and note.size > limit:
            return texts.VOICE_TOO_BIG.format(size=note.size / 1024 / 1024, limit=limit / 1024 / 1024)
        if note.seconds > self._max_seconds:
            return self._too_long(note.seconds)
        return None

    async def acknowledge(self, job: Job) -> None:
        """The ``voice-ack`` job: the refusal, or "Processing…". Its decision (refused, or the
        id of the message to edit later) is left in the kv table for the voice job."""
        note = voice_note(job.payload["message"])
        checkpoint = dict(job.checkpoint or {})
        if note is None or checkpoint.get("sent"):
            return
        refusal = self._refusal(note)
        target = note.target
        message_id = await self._messenger.send_text(
            target.chat_id, refusal or texts.VOICE_ACK, reply_to=target.message_id, thread_id=target.thread_id
        )
        await self._kv.put(_ack_key(note), _REFUSED if refusal else str(message_id))
        checkpoint["sent"] = 1
        await self._chat.save(job, checkpoint)

    async def transcribe_and_answer(self, job: Job) -> None:
        """The ``voice`` job, in the chat's order."""
        note = voice_note(job.payload["message"])
        if note is None:
            return
        checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        if checkpoint.get("stopped"):
            return  # stopped with /cancel (this is a rerun after a crash)
        if "ack" not in checkpoint:
            checkpoint["ack"] = await self._ack_decision(note)
            if checkpoint["ack"] == _REFUSED:  # the acknowledgement job has told the user why
                await self._kv.delete(_ack_key(note))
                return
            await self._chat.save(job, checkpoint)
        if self._stt is None:  # voice was turned off after the acknowledgement
            await self._show(note, checkpoint["ack"], texts.VOICE_OFF)
            await self._kv.delete(_ack_key(note))
            return
        if "transcript" not in checkpoint:
            refusal = await self._spending.refusal(note.user_id)
            if refusal is not None:
                await self._show(note, checkpoint["ack"], refusal)
                await self._kv.delete(_ack_key(note))
                return
            audio = await self._messenger.download(note.file_id)
            # What the sender declared is only a claim: the container says how long it really is.
            measured = await asyncio.to_thread(measure_seconds, audio)
            if measured is not None and measured > self._max_seconds:
                text = self._too_long(measured)
                await self._show(note, checkpoint["ack"], text)
                await self._kv.delete(_ack_key(note))
                return
            # Unmeasurable audio still goes to the provider, which may decode it all the same.
            seconds = measured if measured is not None else note.seconds or None
            try:
                async with (
                    self._chat.cancels.scope(note.target.chat_id, job.id),
                    self._breaker.call(caller=note.target.chat_id),
                ):
                    result = await self._stt.transcribe(
                        audio, filename=note.filename, mime=note.mime, seconds=seconds
                    )
            except UpstreamUnavailable as exc:
                await self._tell_wait_once(job, note, checkpoint, exc)
                raise  # the queue waits for the service without spending an attempt
            except StoppedByUser:  # /cancel: done, not failed; the acknowledgement says so
                checkpoint["stopped"] = 1
                await self._chat.save(job, checkpoint)
                await self._show(note, checkpoint["ack"], texts.VOICE_STOPPED)
                await self._kv.delete(_ack_key(note))
                return
            # Billed by what the provider says it processed, else by what was measured or declared.
            billed = result.duration_s if result.duration_s is not None else seconds or 0.0
            usage = Usage("transcription", result.model, audio_seconds=billed)
            checkpoint.update(transcript=clean_text(result.text), stt_usage=asdict(usage))  # any provider
            await self._chat.save(job, checkpoint)
        await self._spending.record(
            Usage(**checkpoint["stt_usage"]),
            key=billing_key(job, "transcription"),
            job_id=job.id,
            chat_id=note.target.chat_id,
            user_id=note.user_id,
        )
        transcript = checkpoint["transcript"]
        if not transcript:
            await self._show(note, checkpoint["ack"], texts.VOICE_NO_SPEECH)
        else:
            await self._show_transcript(job, note, transcript, checkpoint)
            if self._reply == "answer":
                said = self._chat.speaker_text(job.payload["message"], transcript)
                await self._chat.answer(job, note.target, note.user_id, said, checkpoint)
        await self._kv.delete(_ack_key(note))

    async def _tell_wait_once(
        self, job: Job, note: VoiceNote, checkpoint: dict[str, Any], exc: UpstreamUnavailable
    ) -> None:
        """In place of "Processing…": why the transcript is late, once per voice note (the same
        flag as the chat's, so the answer's wait is not announced a second time)."""
        text = wait_notice(self._breaker, exc, outage_text=texts.VOICE_OUTAGE)
        if text is None or checkpoint.get("told_wait"):
            return
        await self._show(note, await self._ack_id(note, checkpoint), text)
        checkpoint["told_wait"] = 1
        await self._chat.save(job, checkpoint)

    async def _ack_decision(self, note: VoiceNote) -> int | str | None:
        """The acknowledgement's message id to edit, _REFUSED, or None: no acknowledgement will
        come (its job failed for good), so results go out as new messages."""
        stored = await self._kv.get(_ack_key(note))
        if stored is not None:
            return stored if stored == _REFUSED else int(stored)
        ack_job = await self._queue.by_dedup_key(_ack_key(note))
        if ack_job is not None and ack_job.state in (JobState.QUEUED, JobState.RUNNING):
            raise UpstreamUnavailable("waiting for the voice acknowledgement to be sent", retry_after=1.0)
        return _REFUSED if self._refusal(note) else None

    async def _show(self, note: VoiceNote, ack: int | None, text: str) -> None:
        """Edit the acknowledgement into ``text``; a new reply if there is none (or it was deleted)."""
        if ack is not None and await self._messenger.edit_text(note.target.chat_id, ack, text):
            return
        await self._messenger.send_text(
            note.target.chat_id, text, reply_to=note.target.message_id, thread_id=note.target.thread_id
        )

    async def _show_transcript(
        self, job: Job, note: VoiceNote, transcript: str, checkpoint: dict[str, Any]
    ) -> None:
        """The acknowledgement becomes the transcript; a long one continues in new messages."""
        parts = plain_chunks(texts.VOICE_TRANSCRIPT.format(text=transcript))
        for index in range(checkpoint.get("shown", 0), len(parts)):
            if index == 0:
                await self._show(note, checkpoint["ack"], parts[0].text)
            else:
                await self._messenger.send_text(
                    note.target.chat_id, parts[index].text, thread_id=note.target.thread_id
                )
            checkpoint["shown"] = index + 1
            await self._chat.save(job, checkpoint)

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """Failed for good: say so politely, never with the error's text. A transcript already
        shown stays; then only the answer failed."""
        note = voice_note(job.payload["message"])
        if note is None:
            return
        cause = exc.cause if isinstance(exc, JobError) else None
        checkpoint = job.checkpoint or {}
        if cause is Cause.BLOCKED:
            pass  # nobody to tell
        elif checkpoint.get("shown"):  # the transcript stays; only the answer failed
            await self._chat.notify(job, note.target, texts.failed(cause))
        else:
            try:
                await self._show(note, await self._ack_id(note, checkpoint), texts.voice_failed(cause))
            except JobError as send_exc:  # Telegram trouble right now: the notice waits in the queue
                self._log.warning("could not edit chat {}'s voice note: {}", note.target.chat_id, send_exc)
                await self._chat.notify(job, note.target, texts.voice_failed(cause))
        await self._kv.delete(_ack_key(note))
        await self._chat.alert_if_owner_must_act(exc)

    async def _ack_id(self, note: VoiceNote, checkpoint: dict[str, Any]) -> int | None:
        ack = checkpoint.get("ack")
        if ack is None:
            stored = await self._kv.get(_ack_key(note))
            ack = int(stored) if stored not in (None, _REFUSED) else None
        return ack if isinstance(ack, int) else None


def _ack_key(note: VoiceNote) -> str:
    return f"voice-ack:{note.target.chat_id}:{note.target.message_id}"
