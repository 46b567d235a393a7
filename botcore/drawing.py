"""``/image <prompt>``: a picture drawn by the image service and sent with ``sendPhoto``, as an
``image`` job of its own. The picture is written to the data directory before it is billed and
sent, so a retry or a restart sends it without paying for it again; the job's checkpoint keeps
Telegram's file id once it is sent. At most IMAGE_CONCURRENCY generations run in one chat."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path
from typing import Any

import telegram
from loguru import logger

from botcore import spool, texts
from botcore.breaker import CircuitBreaker
from botcore.errors import NotYet
from botcore.imagegen import ImageGenerator
from botcore.incoming import Incoming, parse_update
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, Usage
from botcore.notices import Notices
from botcore.prefs import ChatSettings
from botcore.spending import Spending, billing_key
from botcore.storage import ConversationStore

IMAGE_KIND = "image"


class DrawingService:
    def __init__(
        self,
        *,
        generator: ImageGenerator | None,  # None: IMAGE_MODE=off
        queue: JobQueue,
        messenger: Messenger,
        notices: Notices,
        spending: Spending,
        breaker: CircuitBreaker,
        conversations: ConversationStore,
        settings: ChatSettings,
        files: Path,  # where pictures wait to be sent
        per_chat: int,
    ) -> None:
        self._generator = generator
        self._queue = queue
        self._messenger = messenger
        self._notices = notices
        self._spending = spending
        self._breaker = breaker
        self._conversations = conversations
        self._settings = settings
        self._files = files
        self._per_chat = per_chat
        self._running: Counter[int] = Counter()  # chat id -> generations running now
        self._log = logger.bind(component="drawing")

    async def draw(self, job: Job) -> None:
        """The ``image`` job."""
        incoming = parse_update(job.payload)
        if incoming is None or incoming.command is None:
            return
        checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        if "file_id" in checkpoint:
            return  # sent (this is a rerun after a crash)
        prompt = incoming.command.argument.strip()
        picture = self._files / f"{job.id}.png"
        if "drawn" in checkpoint and not await asyncio.to_thread(picture.exists):
            self._log.warning("the picture of job {} is gone from {}; drawing it again", job.id, self._files)
            del checkpoint["drawn"]
        if "drawn" not in checkpoint and not await self._generate(job, incoming, prompt, picture, checkpoint):
            return
        await self._spending.record(
            Usage("image", checkpoint["drawn"], images=1),
            key=billing_key(job, "image"),
            job_id=job.id,
            chat_id=incoming.chat_id,
            user_id=incoming.sender_id,
        )
        data = await spool.read(picture)
        assert data is not None  # checked above
        where = incoming.target
        checkpoint["file_id"] = await self._messenger.send_photo(
            where.chat_id, data, caption=prompt, reply_to=where.message_id, thread_id=where.thread_id
        )
        await self._queue.save_checkpoint(job, checkpoint)
        if (await self._settings.view(where.chat_id)).memory:  # so the model knows what it drew
            await self._conversations.add_exchange(
                where.chat_id,
                job_id=job.id,
                user_text=f"/image {prompt}",
                answer=texts.IMAGE_REMEMBERED.format(prompt=prompt),
                now=self._queue.clock.now(),
            )
        await spool.drop(picture)

    async def _generate(
        self, job: Job, incoming: Incoming, prompt: str, picture: Path, checkpoint: dict[str, Any]
    ) -> bool:
        """Draw ``prompt`` into ``picture``; False when the user was told instead why not."""
        where = incoming.target
        refusal = (
            texts.IMAGE_OFF
            if self._generator is None
            else texts.IMAGE_USAGE
            if not prompt
            else await self._spending.refusal(incoming.sender_id)
        )
        if refusal is not None:
            await self._notices.once(job, checkpoint, where, refusal)
            return False
        assert self._generator is not None
        if self._running[where.chat_id] >= self._per_chat:
            raise NotYet("this chat's pictures are being drawn", retry_after=2.0)
        self._running[where.chat_id] += 1
        try:
            async with (
                self._breaker.call(caller=where.chat_id),
                self._messenger.typing(
                    where.chat_id,
                    in_group=incoming.in_group,
                    action=telegram.constants.ChatAction.UPLOAD_PHOTO,
                ),
            ):
                drawn = await self._generator.generate(prompt)
        finally:
            self._running[where.chat_id] -= 1
            if not self._running[where.chat_id]:
                del self._running[where.chat_id]
        await spool.keep(picture, drawn.data)  # before it is billed: never twice
        checkpoint["drawn"] = drawn.model
        await self._queue.save_checkpoint(job, checkpoint)
        return True

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """Failed for good (a refused prompt, an outage that lasted): said in our words."""
        with contextlib.suppress(OSError):
            await spool.drop(self._files / f"{job.id}.png")
        incoming = parse_update(job.payload)
        if incoming is not None:
            await self._notices.failed_for_good(job, incoming.target, exc)
