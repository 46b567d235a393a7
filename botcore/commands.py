"""What each command does, one method each; ``routing.COMMANDS`` says which method answers
which command and who may call it. A method returns the reply to send (sent once per job, as
its result is kept in the checkpoint) or None when it answered by itself (``/retry``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botcore import texts
from botcore.admin import AdminCommands
from botcore.cancels import Cancels
from botcore.chat import ChatService
from botcore.exporting import Exporter
from botcore.incoming import Incoming
from botcore.jobqueue import JobQueue
from botcore.models import Job
from botcore.prefs import ChatSettings
from botcore.spending import Spending
from botcore.storage import ConversationStore


@dataclass(frozen=True, slots=True)
class Request:
    """One command to carry out: its job (with the progress of earlier attempts), the message."""

    job: Job
    incoming: Incoming
    checkpoint: dict[str, Any]
    is_admin: bool

    @property
    def argument(self) -> str:
        return self.incoming.command.argument if self.incoming.command else ""


class Commands:
    def __init__(
        self,
        *,
        chat: ChatService,
        conversations: ConversationStore,
        spending: Spending,
        cancels: Cancels,
        queue: JobQueue,
        admin: AdminCommands,
        settings: ChatSettings,
        exporter: Exporter,
    ) -> None:
        self._chat = chat
        self._conversations = conversations
        self._spending = spending
        self._cancels = cancels
        self._queue = queue
        self._admin = admin
        self._settings = settings
        self._exporter = exporter

    async def start(self, _: Request) -> str:
        return texts.START

    async def usage(self, request: Request) -> str:
        day, month = await self._spending.of_user(request.incoming.sender_id or 0)
        return texts.USAGE.format(
            day=day,
            month=month,
            day_minutes=day.audio_seconds / 60,
            month_minutes=month.audio_seconds / 60,
        )

    async def cancel(self, request: Request) -> str:
        stopped = self._cancels.cancel(request.incoming.chat_id)
        return texts.STOPPED if stopped else texts.NOTHING_TO_STOP

    async def reset(self, request: Request) -> str:
        count = await self._conversations.reset(request.incoming.chat_id)
        return texts.RESET.format(count=count) if count else texts.RESET_EMPTY

    async def retry(self, request: Request) -> str | None:
        """``/retry``: answer this chat's last message again; the new answer replaces the old
        one in memory (which stays until then: a redo that fails loses nothing)."""
        checkpoint = request.checkpoint
        if "redo" not in checkpoint:
            last = await self._conversations.last_exchange(request.incoming.chat_id)
            if last is None:
                return texts.NOTHING_TO_RETRY
            job_id, question = last
            if question.content.startswith(("/image ", "/img ")):
                return texts.RETRY_IMAGE  # a picture, not a question for the chat model
            checkpoint.update(redo=question.content, redo_job=job_id, redo_images=list(question.images))
            await self._queue.save_checkpoint(request.job, checkpoint)
        images = checkpoint.get("redo_images", ())
        await self._chat.answer(
            request.job, request.incoming, checkpoint, text=checkpoint["redo"], images=images
        )
        return None

    async def settings(self, request: Request) -> None:
        await self._settings.settings_command(request.job, request.incoming, request.checkpoint)

    async def model(self, request: Request) -> str | None:
        return await self._settings.model_command(
            request.job, request.incoming, request.checkpoint, request.argument.strip()
        )

    async def persona(self, request: Request) -> str | None:
        return await self._settings.persona_command(
            request.job, request.incoming, request.checkpoint, request.argument.strip()
        )

    async def export(self, request: Request) -> str | None:
        return await self._exporter.export(
            request.job, request.incoming, request.checkpoint, request.argument.strip()
        )

    async def voice(self, request: Request) -> str:
        return await self._settings.voice_command(
            request.job, request.incoming, request.checkpoint, request.argument.strip()
        )

    async def status(self, _: Request) -> str:
        return await self._admin.status()

    async def dead(self, _: Request) -> str:
        return await self._admin.dead()

    async def revive(self, request: Request) -> str:
        return await self._admin.retry(request.argument)

    async def cleanup(self, _: Request) -> str:
        return await self._admin.cleanup()
