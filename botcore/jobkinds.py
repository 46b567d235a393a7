"""The table of job kinds the worker runs the services by (one entry per kind: its handler, what
to do when it fails for good, how many at once), each job run in the language of whoever sent its
update."""

from __future__ import annotations

from dataclasses import replace

from botcore.assemble import Services
from botcore.config import Settings
from botcore.drawing import IMAGE_KIND
from botcore.i18n import Languages, speaking
from botcore.incoming import language_of
from botcore.media import MEDIA_ACK_KIND, MEDIA_KIND
from botcore.models import Job
from botcore.notices import NOTICE_KIND
from botcore.routing import COMMAND_KIND, UPDATE_KIND
from botcore.voice import ACK_KIND, VOICE_KIND
from botcore.worker import JobKind


def job_kinds(settings: Settings, services: Services) -> dict[str, JobKind]:
    """The table of job kinds the worker runs the services by, each job in the language of
    whoever sent its update (BOT_LANGUAGE if set)."""
    languages = Languages(settings.bot_language)
    return {name: _in_their_language(kind, languages) for name, kind in _kinds(settings, services).items()}


def _in_their_language(kind: JobKind, languages: Languages) -> JobKind:
    async def run(job: Job) -> None:
        with speaking(languages.of(language_of(job.payload))):
            await kind.run(job)

    async def on_dead(job: Job, error: BaseException | None) -> None:
        assert kind.on_dead is not None
        with speaking(languages.of(language_of(job.payload))):
            await kind.on_dead(job, error)

    return replace(kind, run=run, on_dead=on_dead if kind.on_dead is not None else None)


def _kinds(settings: Settings, services: Services) -> dict[str, JobKind]:
    updates, voice, media = services.updates, services.voice, services.media
    return {
        # LLM calls are bounded by the chat service's slots (LLM_CONCURRENCY, voice answers
        # included), not here: a /reset or a budget notice in one chat must not queue behind
        # answers in others. A quarter of the workers stays free for everything else
        # (commands outside the chat's order, acknowledgements, notices, voice).
        UPDATE_KIND: JobKind(updates.handle, on_dead=updates.on_dead, concurrency=_message_slots(settings)),
        COMMAND_KIND: JobKind(updates.handle, on_dead=updates.on_dead),
        ACK_KIND: JobKind(voice.acknowledge),
        NOTICE_KIND: JobKind(services.shared.notices.send),
        VOICE_KIND: JobKind(
            voice.transcribe_and_answer, on_dead=voice.on_dead, concurrency=settings.transcription_concurrency
        ),
        MEDIA_ACK_KIND: JobKind(media.acknowledge),
        # Each may read a PDF in a child process: a few at a time (their LLM calls wait for slots).
        MEDIA_KIND: JobKind(media.answer, on_dead=media.on_dead, concurrency=_MEDIA_AT_ONCE),
        IMAGE_KIND: JobKind(
            services.drawing.draw, on_dead=services.drawing.on_dead, concurrency=_MEDIA_AT_ONCE
        ),
    }


_MEDIA_AT_ONCE = 4


def _message_slots(settings: Settings) -> int:
    """How many ``tg-update`` jobs may run at once: all the workers but a quarter (at least two),
    kept for the other kinds. Their LLM calls wait for LLM_CONCURRENCY's slots."""
    return max(1, settings.worker_concurrency - max(2, settings.worker_concurrency // 4))
