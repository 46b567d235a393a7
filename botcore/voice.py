"""Voice notes, audio files and video notes: acknowledged at once, transcribed in the
background, the acknowledgement edited into the transcript, then answered like typed text.

Each voice update becomes two jobs when it is stored (``route_update``): ``voice-ack``, outside
the chat's order so the user hears back at once, and ``voice``, in the chat's order, which
downloads (by file_id, again on every retry), transcribes, edits and answers. Progress is
checkpointed, so a retry neither transcribes again nor repeats what was sent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from loguru import logger

from botcore import texts
from botcore.chat import ChatService, ReplyTarget
from botcore.clock import Clock
from botcore.conversations import ConversationStore, KeyValueStore
from botcore.errors import PermanentError, TransientError, UpstreamUnavailable
from botcore.formatting import plain_chunks
from botcore.intake import route_to_update_job
from botcore.messenger import Messenger
from botcore.models import Job, NewJob, Usage
from botcore.stt import SpeechToText

VOICE_KIND = "voice"
ACK_KIND = "voice-ack"
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
        if isinstance(media, dict) and media.get("file_id"):
            name = media.get("file_name") or filename
            return VoiceNote(
                target=ReplyTarget.of(message),
                user_id=(message.get("from") or {}).get("id"),
                file_id=str(media["file_id"]),
                seconds=float(media.get("duration") or 0),
                size=media.get("file_size"),
                filename=name,
                mime=media.get("mime_type") or mime,
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
        conversations: ConversationStore,
        kv: KeyValueStore,
        messenger: Messenger,
        stt: SpeechToText | None,  # None: voice is turned off
        clock: Clock,
        max_download_mb: float,
        max_seconds: float,
        reply: str,  # "answer" or "transcript"
    ) -> None:
        self._chat = chat
        self._conversations = conversations
        self._kv = kv
        self._messenger = messenger
        self._stt = stt
        self._clock = clock
        self._max_bytes = max_download_mb * 1024 * 1024
        self._max_download_mb = max_download_mb
        self._max_seconds = max_seconds
        self._reply = reply
        self._log = logger.bind(component="voice")

    def _refusal(self, note: VoiceNote) -> str | None:
        """Decided from the message alone, before anything is downloaded."""
        if self._stt is None:
            return texts.VOICE_OFF
        if note.size is not None and note.size > self._max_bytes:
            return texts.VOICE_TOO_BIG.format(size=note.size / 1024 / 1024, limit=self._max_download_mb)
        if note.seconds > self._max_seconds:
            return texts.VOICE_TOO_LONG.format(minutes=note.seconds / 60, limit=self._max_seconds / 60)
        return None

    async def acknowledge(self, job: Job) -> None:
        """The ``voice-ack`` job: the refusal, or "Processing…" (whose id the voice job edits)."""
        note = voice_note(job.payload["message"])
        checkpoint = dict(job.checkpoint or {})
        if note is None or checkpoint.get("sent"):
            return
        refusal = self._refusal(note)
        target = note.target
        message_id = await self._messenger.send_text(
            target.chat_id, refusal or texts.VOICE_ACK, reply_to=target.message_id, thread_id=target.thread_id
        )
        if refusal is None:
            await self._kv.put(_ack_key(note), str(message_id))
        checkpoint["sent"] = 1
        await self._chat.save(job, checkpoint)

    async def transcribe_and_answer(self, job: Job) -> None:
        """The ``voice`` job, in the chat's order."""
        note = voice_note(job.payload["message"])
        if note is None or self._refusal(note) is not None or self._stt is None:
            return  # the acknowledgement job has told the user why
        checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        if "transcript" not in checkpoint:
            audio = await self._messenger.download(note.file_id)
            result = await self._stt.transcribe(audio, filename=note.filename, mime=note.mime)
            usage = Usage("transcription", result.model, audio_seconds=note.seconds)
            checkpoint.update(transcript=result.text, stt_usage=asdict(usage))
            await self._chat.save(job, checkpoint)
        await self._conversations.record_usage(
            Usage(**checkpoint["stt_usage"]),
            job_id=job.id,
            chat_id=note.target.chat_id,
            user_id=note.user_id,
            now=self._clock.now(),
        )
        ack = await self._ack_id(note)
        transcript = checkpoint["transcript"]
        if not transcript:
            await self._messenger.edit_text(note.target.chat_id, ack, texts.VOICE_NO_SPEECH)
        else:
            await self._show_transcript(job, note, ack, transcript, checkpoint)
            if self._reply == "answer":
                await self._chat.answer(job, note.target, note.user_id, transcript, checkpoint)
        await self._kv.delete(_ack_key(note))

    async def _show_transcript(
        self, job: Job, note: VoiceNote, ack: int, transcript: str, checkpoint: dict[str, Any]
    ) -> None:
        """The acknowledgement becomes the transcript; a long one continues in new messages."""
        parts = plain_chunks(texts.VOICE_TRANSCRIPT.format(text=transcript))
        for index in range(checkpoint.get("shown", 0), len(parts)):
            if index == 0:
                await self._messenger.edit_text(note.target.chat_id, ack, parts[0].text)
            else:
                await self._messenger.send_text(
                    note.target.chat_id, parts[index].text, thread_id=note.target.thread_id
                )
            checkpoint["shown"] = index + 1
            await self._chat.save(job, checkpoint)

    async def _ack_id(self, note: VoiceNote) -> int:
        stored = await self._kv.get(_ack_key(note))
        if stored is None:  # the acknowledgement job has not finished yet: it will in a moment
            raise UpstreamUnavailable("waiting for the voice acknowledgement to be sent", retry_after=1.0)
        return int(stored)

    async def on_dead(self, job: Job) -> None:
        """Transcription failed for good: the acknowledgement says so; never the error's text."""
        note = voice_note(job.payload["message"])
        if note is None:
            return
        try:
            stored = await self._kv.get(_ack_key(note))
            if stored is not None:
                await self._messenger.edit_text(note.target.chat_id, int(stored), texts.VOICE_FAILED)
                await self._kv.delete(_ack_key(note))
            else:
                await self._messenger.send_text(
                    note.target.chat_id, texts.VOICE_FAILED, reply_to=note.target.message_id
                )
        except (PermanentError, TransientError, UpstreamUnavailable) as exc:
            self._log.warning("could not tell chat {} its voice note failed: {}", note.target.chat_id, exc)


def _ack_key(note: VoiceNote) -> str:
    return f"voice-ack:{note.target.chat_id}:{note.target.message_id}"
