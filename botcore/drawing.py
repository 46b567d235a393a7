"""``/image <prompt>``: a picture drawn by the image service and sent with ``sendPhoto``, as an
``image`` job of its own. What the service answered (the picture, or its URL) is kept before
anything else happens and billed at once, so a retry or a restart fetches or sends it again
without paying twice. At most IMAGE_CONCURRENCY pictures are drawn at once in one chat."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import telegram
from loguru import logger

from botcore import spool, texts
from botcore.breaker import CircuitBreaker
from botcore.cancels import Cancels
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
        cancels: Cancels,
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
        self._cancels = cancels
        self._conversations = conversations
        self._settings = settings
        self._files = files
        self._per_chat = per_chat
        self._turns: dict[int, asyncio.Semaphore] = {}  # chat id -> its drawing slots
        self._log = logger.bind(component="drawing")

    def _kept(self, job: Job) -> Path:
        """Named by the billed call, so a job revived with /retry <id> finds what it paid for."""
        return self._files / f"{spool.name(billing_key(job, 'image'))}.png"

    async def draw(self, job: Job) -> None:
        """The ``image`` job."""
        incoming = parse_update(job.payload)
        if incoming is None or incoming.command is None:
            return
        checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        prompt, where, kept = incoming.command.argument.strip(), incoming.target, self._kept(job)
        if "file_id" not in checkpoint:  # else sent: only the memory and the file are left
            if "drawn" not in checkpoint and not await self._draw(job, incoming, prompt, checkpoint):
                return
            data = await spool.read(kept)
            if data is None:  # the service answered with a URL: fetched (again) until it is kept
                assert self._generator is not None and checkpoint.get("url")
                data = await self._generator.fetch(checkpoint["url"])
                await spool.keep(kept, data)
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
        await spool.drop(kept)

    async def _draw(self, job: Job, incoming: Incoming, prompt: str, checkpoint: dict[str, Any]) -> bool:
        """Ask for the picture, keep what came and bill it; False when the user was told instead
        why not (drawing off, no prompt, a budget)."""
        where = incoming.target
        if self._generator is None or not prompt:
            refusal: str | None = texts.IMAGE_OFF if self._generator is None else texts.IMAGE_USAGE
        else:
            refusal = await self._spending.refusal(incoming.sender_id)
        if refusal is not None:
            await self._notices.once(job, checkpoint, where, refusal)
            return False
        turns = self._turns.setdefault(where.chat_id, asyncio.Semaphore(self._per_chat))
        upload = telegram.constants.ChatAction.UPLOAD_PHOTO
        async with (
            turns,  # its turn among this chat's pictures, however long the others take
            self._cancels.scope(where.chat_id, job.id),
            self._breaker.call(caller=where.chat_id),
            self._messenger.typing(where.chat_id, in_group=incoming.in_group, action=upload),
        ):
            drawn = await self._generator.generate(prompt)
        if drawn.data is not None:
            await spool.keep(self._kept(job), drawn.data)
        checkpoint.update(drawn=drawn.model, url=drawn.url)  # paid for: never asked for again
        await self._queue.save_checkpoint(job, checkpoint)
        await self._spending.record(
            Usage("image", drawn.model, images=1),
            key=billing_key(job, "image"),
            job_id=job.id,
            chat_id=where.chat_id,
            user_id=incoming.sender_id,
        )
        return True

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """Failed for good (a refused prompt, an outage that lasted): said in our words."""
        await spool.drop(self._kept(job))
        incoming = parse_update(job.payload)
        if incoming is not None:
            await self._notices.failed_for_good(job, incoming.target, exc)
