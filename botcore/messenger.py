"""Sends to Telegram: rendered reply chunks (with a plain-text fallback), plain notices and the
typing indicator. Translates python-telegram-bot's errors into ours where they enter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import telegram
from loguru import logger
from telegram.ext import ExtBot

from botcore.errors import PermanentError, TransientError
from botcore.formatting import Chunk, plain_chunks
from botcore.pacing import Lane
from botcore.telegram_api import Keyboard, inline_markup, reply_parameters, translate, utf16_cut

TYPING_EVERY_S = 4.5  # Telegram shows "typing…" for about 5 s per action
_ANSWER_MAX = 200  # characters Telegram shows when a button press is answered


class Messenger:
    def __init__(self, bot: ExtBot[Lane]) -> None:
        self._bot = bot
        self._log = logger.bind(component="telegram")

    async def send_chunk(
        self, chat_id: int, chunk: Chunk, *, reply_to: int | None = None, thread_id: int | None = None
    ) -> list[int]:
        """Send one rendered chunk. If Telegram rejects its formatting, send the same text plain.
        Returns the ids of the messages sent."""
        entities = self._entities(chunk)
        try:
            return [
                await self._send(
                    chat_id, chunk.text, entities=entities, reply_to=reply_to, thread_id=thread_id
                )
            ]
        except telegram.error.BadRequest as exc:
            if not chunk.entities or "entit" not in str(exc).lower():
                raise translate(exc) from exc
            self._log.warning("Telegram refused a reply's formatting; sending it as plain text")
        try:
            return [
                await self._send(chat_id, c.text, reply_to=reply_to, thread_id=thread_id)
                for c in plain_chunks(chunk.text)
            ]
        except telegram.error.BadRequest as exc:
            raise translate(exc) from exc

    def _entities(self, chunk: Chunk) -> list[telegram.MessageEntity]:
        return [telegram.MessageEntity.de_json(dict(e), self._bot) for e in chunk.entities]

    async def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        keyboard: Keyboard | None = None,
        lane: Lane | None = None,
    ) -> int:
        """``lane``: a cosmetic message (a streamed preview), sent only when no answer waits."""
        try:
            return await self._send(
                chat_id,
                text,
                reply_to=reply_to,
                thread_id=thread_id,
                markup=inline_markup(keyboard),
                lane=lane,
            )
        except telegram.error.BadRequest as exc:
            raise translate(exc) from exc

    async def _send(
        self,
        chat_id: int,
        text: str,
        *,
        entities: list[telegram.MessageEntity] | None = None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        markup: telegram.InlineKeyboardMarkup | None = None,
        lane: Lane | None = None,
    ) -> int:
        reply = reply_parameters(reply_to)
        try:
            message = await self._bot.send_message(
                chat_id,
                text,
                entities=entities or None,
                reply_parameters=reply,
                message_thread_id=thread_id,
                link_preview_options=telegram.LinkPreviewOptions(is_disabled=True),
                reply_markup=markup,
                rate_limit_args=lane,
            )
        except telegram.error.BadRequest:
            raise  # the caller decides: a formatting problem has a plain-text fallback
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc
        return message.message_id

    async def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        entities: list[telegram.MessageEntity] | None = None,
        keyboard: Keyboard | None = None,
        lane: Lane | None = None,
    ) -> bool:
        """Replace a message's text (and its buttons: none unless ``keyboard``); editing it to
        what it already says is not an error. False when the message is gone (the user deleted
        it): the caller sends a new one. ``lane``: a cosmetic edit (a streamed preview)."""
        try:
            await self._bot.edit_message_text(
                text,
                chat_id=chat_id,
                message_id=message_id,
                entities=entities or None,
                link_preview_options=telegram.LinkPreviewOptions(is_disabled=True),
                reply_markup=inline_markup(keyboard),
                rate_limit_args=lane,
            )
        except telegram.error.BadRequest as exc:
            reason = str(exc).lower()
            if "not modified" in reason:
                return True
            if "not found" in reason or "can't be edited" in reason:
                return False
            raise translate(exc) from exc
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc
        return True

    async def edit_chunk(self, chat_id: int, message_id: int, chunk: Chunk) -> bool:
        """Like ``edit_text``, with the chunk's formatting (plain if Telegram refuses it)."""
        entities = self._entities(chunk)
        if entities:
            try:
                return await self.edit_text(chat_id, message_id, chunk.text, entities=entities)
            except PermanentError as exc:
                if "entit" not in str(exc).lower():
                    raise
                self._log.warning("Telegram refused a reply's formatting; showing it as plain text")
        return await self.edit_text(chat_id, message_id, chunk.text)

    async def delete(self, chat_id: int, message_id: int) -> None:
        """Delete one of our messages; one that is gone already is not an error."""
        try:
            await self._bot.delete_message(chat_id, message_id)
        except telegram.error.BadRequest as exc:
            if "not found" not in str(exc).lower() and "can't be deleted" not in str(exc).lower():
                raise translate(exc) from exc
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc

    async def download(self, file_id: str) -> bytes:
        """A file the user sent, by its file_id (getFile, then the file URL; with a local Bot API
        server, the path it names, read in a thread: a large file must not stall the loop)."""
        try:
            file = await self._bot.get_file(file_id)
            if self._bot.local_mode and file.file_path and Path(file.file_path).is_absolute():
                return await asyncio.to_thread(Path(file.file_path).read_bytes)
            return bytes(await file.download_as_bytearray())
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc
        except OSError as exc:  # the local server's file is gone or unreadable: its trouble, for now
            raise TransientError(f"could not read the local Bot API server's file ({exc.strerror})") from exc

    async def send_draft(
        self, chat_id: int, draft_id: int, text: str, *, thread_id: int | None, lane: Lane
    ) -> bool:
        """Show ``text`` as a draft being written in a private chat (empty: Telegram's
        "Thinking…"). False when the Bot API server does not know the method (an older
        self-hosted one: 404, or "method not found")."""
        try:
            await self._bot.send_message_draft(
                chat_id, draft_id, text, message_thread_id=thread_id, rate_limit_args=lane
            )
        except telegram.error.InvalidToken:  # how python-telegram-bot reports a 404
            return False
        except telegram.error.BadRequest as exc:
            if "method not found" in str(exc).lower():
                return False
            raise translate(exc) from exc
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc
        return True

    async def react(self, chat_id: int, message_id: int, emoji: str | None, *, lane: Lane) -> None:
        """Set (or, with None, clear) the bot's reaction on a message: a cosmetic call."""
        try:
            await self._bot.set_message_reaction(chat_id, message_id, reaction=emoji, rate_limit_args=lane)
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc

    async def answer_press(self, query_id: str, text: str | None = None) -> None:
        """Answer a button press (Telegram's spinner stops), with a short note if ``text``: a
        toast, or an alert when it is too long for one (cut to what Telegram shows)."""
        long = text is not None and len(text) > _ANSWER_MAX
        shown = text[: _ANSWER_MAX - 1] + "…" if text is not None and long else text
        try:
            await self._bot.answer_callback_query(query_id, text=shown, show_alert=long)
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc

    async def is_group_admin(self, chat_id: int, user_id: int) -> bool:
        """Whether ``user_id`` is an administrator (or the creator) of the group ``chat_id``."""
        try:
            member = await self._bot.get_chat_member(chat_id, user_id)
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc
        return member.status in (telegram.ChatMember.ADMINISTRATOR, telegram.ChatMember.OWNER)

    async def send_photo(
        self, chat_id: int, photo: bytes, *, caption: str, reply_to: int | None, thread_id: int | None
    ) -> str:
        """Upload a picture; returns the file id Telegram keeps it by (its largest size)."""
        reply = reply_parameters(reply_to)
        try:
            message = await self._bot.send_photo(
                chat_id,
                photo,
                caption=utf16_cut(caption, 1024),
                reply_parameters=reply,
                message_thread_id=thread_id,
            )
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc
        return message.photo[-1].file_id if message.photo else ""

    async def send_document(
        self,
        chat_id: int,
        data: bytes,
        *,
        filename: str,
        caption: str,
        reply_to: int | None,
        thread_id: int | None,
    ) -> None:
        reply = reply_parameters(reply_to)
        try:
            await self._bot.send_document(
                chat_id,
                data,
                filename=filename,
                caption=utf16_cut(caption, 1024),
                reply_parameters=reply,
                message_thread_id=thread_id,
            )
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc

    async def send_voice(
        self, chat_id: int, audio: bytes, *, reply_to: int | None, thread_id: int | None
    ) -> None:
        """OGG/Opus as a voice note; any other audio as an audio file (Telegram shows only
        OGG/Opus as a voice note)."""
        reply = reply_parameters(reply_to)
        try:
            if audio[:4] == b"OggS":
                try:
                    await self._bot.send_voice(
                        chat_id, audio, reply_parameters=reply, message_thread_id=thread_id
                    )
                    return
                except telegram.error.BadRequest as exc:  # the user's privacy setting refuses voice notes
                    if "voice_messages_forbidden" not in str(exc).lower():
                        raise
            await self._bot.send_audio(chat_id, audio, reply_parameters=reply, message_thread_id=thread_id)
        except telegram.error.TelegramError as exc:
            raise translate(exc) from exc

    @contextlib.asynccontextmanager
    async def typing(
        self, chat_id: int, *, in_group: bool, action: str = telegram.constants.ChatAction.TYPING
    ) -> AsyncIterator[None]:
        """Show "typing…" (or ``action``: "upload_photo"…) in the chat until the block ends,
        refreshed every ~4.5 s (once only in a group: there every request counts against
        Telegram's 20 a minute for that group)."""
        task = asyncio.create_task(self._keep_typing(chat_id, repeat=not in_group, action=action))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _keep_typing(self, chat_id: int, *, repeat: bool, action: str) -> None:
        while True:
            try:  # cosmetic: it waits while answers are waiting, and is called off with its block
                await self._bot.send_chat_action(chat_id, action, rate_limit_args=Lane())
            except telegram.error.TelegramError as exc:  # cosmetic: never worth failing a reply
                self._log.debug("typing indicator failed: {}", type(exc).__name__)
            if not repeat:
                return
            await asyncio.sleep(TYPING_EVERY_S)
