"""The ``tg-update`` job: one stored Telegram message. Commands (/start, /help, /usage, /reset,
/retry, /cancel, and the admins' /status, /dead, /retry <id>, /cleanup), a polite answer to what
the bot cannot read, and text handed to the chat service. Each command acts once, even if its
job runs twice (its result is kept in the checkpoint)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from loguru import logger

from botcore import texts
from botcore.admin import AdminCommands
from botcore.chat import ChatService, ReplyTarget
from botcore.incoming import sender_of
from botcore.models import Job
from botcore.spending import Spending
from botcore.storage import ConversationStore

# Message fields that carry something a person sent (as opposed to service messages: joins,
# pins, title changes…, which get no answer at all).
_CONTENT = (
    "animation",
    "audio",
    "contact",
    "dice",
    "document",
    "game",
    "location",
    "photo",
    "poll",
    "sticker",
    "story",
    "venue",
    "video",
    "video_note",
    "voice",
)


class UpdateHandler:
    def __init__(
        self,
        *,
        chat: ChatService,
        conversations: ConversationStore,
        spending: Spending,
        bot_username: str | None = None,
        admin_ids: Collection[int] = (),
        admin: AdminCommands | None = None,
    ) -> None:
        self._chat = chat
        self._conversations = conversations
        self._spending = spending
        self._bot_username = bot_username
        self._admin_ids = frozenset(admin_ids)
        self._admin = admin

    async def handle(self, job: Job) -> None:
        """The ``tg-update`` job."""
        message = job.payload.get("message")
        if not isinstance(message, dict):
            return  # edits and other update types are not answered
        where = ReplyTarget.of(message)
        text = message.get("text")
        sender = sender_of(message)
        user_id = sender.id if sender else None
        with logger.contextualize(update_id=job.payload.get("update_id"), chat_id=where.chat_id):
            if isinstance(text, str) and text.strip():
                if text.startswith("/") and "forward_origin" not in message:  # a forward is just text
                    await self._command(job, where, user_id, text)
                else:
                    said = self._chat.speaker_text(message, text)
                    if said:
                        await self._chat.answer(job, where, user_id, said, dict(job.checkpoint or {}))
                    else:  # only "@bot" in a group: say what the bot is for
                        await self._chat.notice_once(job, dict(job.checkpoint or {}), where, texts.HELP)
            elif any(key in message for key in _CONTENT):
                await self._chat.notice_once(job, dict(job.checkpoint or {}), where, texts.NOT_TEXT)

    async def _command(self, job: Job, where: ReplyTarget, user_id: int | None, text: str) -> None:
        word, *rest = text.split(maxsplit=1)
        argument = rest[0] if rest else ""
        command, _, target = word[1:].partition("@")
        if target and self._bot_username and target.lower() != self._bot_username.lower():
            return  # a command for another bot in a group
        command = command.lower()
        checkpoint = dict(job.checkpoint or {})
        is_admin = user_id in self._admin_ids
        if command == "start":
            reply = texts.START
        elif command == "help":
            reply = texts.HELP + (texts.ADMIN_HELP if is_admin else "")
        elif command == "usage" and user_id is not None:
            day, month = await self._spending.of_user(user_id)
            reply = texts.USAGE.format(
                day=day,
                month=month,
                day_minutes=day.audio_seconds / 60,
                month_minutes=month.audio_seconds / 60,
            )
        elif command == "cancel":
            if "stopped" not in checkpoint:
                checkpoint["stopped"] = self._chat.cancels.cancel(where.chat_id)
                await self._chat.save(job, checkpoint)
            reply = texts.STOPPED if checkpoint["stopped"] else texts.NOTHING_TO_STOP
        elif command == "retry" and not argument:
            await self._regenerate(job, where, user_id, checkpoint)
            return
        elif command in ("status", "dead", "retry", "cleanup") and (not is_admin or self._admin is None):
            reply = texts.ADMIN_ONLY
        elif command in ("status", "dead", "retry", "cleanup") and where.chat_id < 0:
            reply = texts.ADMIN_PRIVATE  # their reports name other users and chats
        elif command in ("status", "dead", "retry", "cleanup") and self._admin is not None:
            if "reply" not in checkpoint:  # /retry and /cleanup act once, even if the job runs twice
                checkpoint["reply"] = await self._admin_command(command, argument)
                await self._chat.save(job, checkpoint)
            reply = checkpoint["reply"]
        elif command == "reset":
            if "deleted" not in checkpoint:  # a retry must not report 0 after the first run deleted
                checkpoint["deleted"] = await self._conversations.reset(where.chat_id)
                await self._chat.save(job, checkpoint)
            count = checkpoint["deleted"]
            reply = texts.RESET.format(count=count) if count else texts.RESET_EMPTY
        elif where.chat_id < 0:
            return  # in a group, stay quiet about commands we do not know (another bot's)
        else:
            reply = texts.UNKNOWN_COMMAND
        await self._chat.notice_once(job, checkpoint, where, reply)

    async def _regenerate(
        self, job: Job, where: ReplyTarget, user_id: int | None, checkpoint: dict[str, Any]
    ) -> None:
        """``/retry``: answer this chat's last message again; the new answer replaces the old
        one in memory."""
        if "redo" not in checkpoint:
            last = await self._conversations.last_exchange(where.chat_id)
            if last is None:
                await self._chat.notice_once(job, checkpoint, where, texts.NOTHING_TO_RETRY)
                return
            checkpoint["redo"], checkpoint["redo_job"] = last[1], last[0]
            await self._chat.save(job, checkpoint)
        # The old exchange stays until the new answer replaces it: a redo that fails loses nothing.
        await self._chat.answer(job, where, user_id, checkpoint["redo"], checkpoint)

    async def _admin_command(self, command: str, argument: str) -> str:
        assert self._admin is not None
        if command == "status":
            return await self._admin.status()
        if command == "dead":
            return await self._admin.dead()
        if command == "retry":
            return await self._admin.retry(argument)
        return await self._admin.cleanup()
