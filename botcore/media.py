"""Photos and documents: acknowledged at once, read in the chat's order, then answered by the
chat service as a question with its images or its text. Routing makes two jobs of each, as of a
voice note (``acks``): ``media-ack`` at once (the refusal, or "Looking at your photo…"), and
``media`` in the chat's order, which downloads by file id (never kept in a payload), extracts a
document's text once (kept in its checkpoint), asks, and then removes the acknowledgement."""

from __future__ import annotations

import unicodedata
from typing import Any

from loguru import logger

from botcore import texts
from botcore.acks import REFUSED, Acks, with_file
from botcore.attachments import Attachment
from botcore.chat import ChatService
from botcore.documents import SUPPORTED, document_kind, extract_text
from botcore.i18n import gettext
from botcore.images import readable
from botcore.incoming import Incoming
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job
from botcore.notices import Notices
from botcore.spending import Spending
from botcore.storage import KeyValueStore, album_part_key

MEDIA_KIND = "media"
MEDIA_ACK_KIND = "media-ack"
ALBUM_WINDOW_S = 1.5  # an album's parts arrive within this of its first (Telegram sends them together)
_MB = 1024 * 1024


def in_album(incoming: Incoming) -> bool:
    """A photo that is part of an album (a document in one is read on its own)."""
    return (
        incoming.album is not None and incoming.attachment is not None and incoming.attachment.kind == "photo"
    )


def media_ack_key(incoming: Incoming) -> str:
    """One acknowledgement per message, or per album (its first part's is the one stored)."""
    if in_album(incoming):
        return f"media-ack:{incoming.chat_id}:album:{incoming.album}"
    return f"media-ack:{incoming.chat_id}:{incoming.message_id}"


def media_key(incoming: Incoming) -> str:
    return f"media:{incoming.chat_id}:{incoming.message_id}"


class MediaService:
    def __init__(
        self,
        *,
        chat: ChatService,
        queue: JobQueue,
        acks: Acks,
        notices: Notices,
        messenger: Messenger,
        kv: KeyValueStore,
        spending: Spending,
        vision: bool,  # False: VISION=off, photos are politely refused
        image_max_side: int,
        max_images: int,  # of an album
        document_max_mb: float,
        document_max_chars: int,
    ) -> None:
        self._chat = chat
        self._queue = queue
        self._acks = acks
        self._notices = notices
        self._messenger = messenger
        self._kv = kv
        self._spending = spending
        self._vision = vision
        self._max_side = image_max_side
        self._max_images = max_images
        self._max_mb = document_max_mb
        self._max_chars = document_max_chars
        self._log = logger.bind(component="media")

    def _refusal(self, file: Attachment) -> str | None:
        """Decided from the message alone, before anything is downloaded."""
        kind = _kind(file)
        # An image sent as a file we cannot decode (e.g. HEIC without its plugin) is unsupported too.
        unreadable = kind == "image" and file.kind == "document" and not readable(file.filename, file.mime)
        if kind is None or unreadable:
            return texts.DOCUMENT_UNSUPPORTED.format(supported=gettext(SUPPORTED))
        if kind == "image" and not self._vision:
            return texts.VISION_OFF
        if file.kind == "document" and file.size is not None and file.size > self._max_mb * _MB:
            return texts.DOCUMENT_TOO_BIG.format(size=file.size / _MB, limit=self._max_mb)
        return None

    async def acknowledge(self, job: Job) -> None:
        """The ``media-ack`` job: the refusal, or that the file is being looked at."""
        found = with_file(job)
        if found is None:
            return
        incoming, file = found
        refusal = self._refusal(file)
        if refusal is not None:
            ack = refusal
        elif in_album(incoming):
            ack = texts.ALBUM_ACK
        else:
            ack = (
                texts.IMAGE_ACK
                if _kind(file) == "image"
                else texts.DOCUMENT_ACK.format(name=_shown_name(file.filename))
            )
        await self._acks.send(job, incoming, ack, refused=refusal is not None)

    async def answer(self, job: Job) -> None:
        """The ``media`` job, in the chat's order."""
        found = with_file(job)
        if found is None:
            return
        incoming, file = found
        checkpoint: dict[str, Any] = dict(job.checkpoint or {})
        if checkpoint.get("covered"):
            return  # asked about with the album's first part (this is a rerun)
        part = album_part_key(incoming.chat_id, incoming.message_id)
        if in_album(incoming) and await self._kv.get(part):  # asked about with the album's first part
            await self._queue.save_checkpoint(job, {"covered": 1})  # before the key goes: a rerun knows
            await self._kv.delete(part)
            return
        if "ack" not in checkpoint:
            refused = self._refusal(file) is not None
            checkpoint["ack"] = await self._acks.decision(incoming, media_ack_key(incoming), refused=refused)
            await self._queue.save_checkpoint(job, checkpoint)
        if checkpoint["ack"] != REFUSED:
            if _kind(file) == "image":
                await self._photo(job, incoming, file, checkpoint)
            else:
                await self._document(job, incoming, file, checkpoint)
        await self._acks.forget(incoming)

    async def _photo(
        self, job: Job, incoming: Incoming, file: Attachment, checkpoint: dict[str, Any]
    ) -> None:
        if "images" not in checkpoint:
            await self._gather(job, incoming, file, checkpoint)
        for message_id in checkpoint["others"]:  # again after a crash: setting a key twice is harmless
            await self._kv.put(album_part_key(incoming.chat_id, message_id), "1")
        question = incoming.with_text(checkpoint["caption"] or texts.IMAGE_QUESTION)
        await self._chat.answer(job, question, checkpoint, images=checkpoint["images"])
        if checkpoint["left_out"] and "answer" in checkpoint:  # said only beside an answer
            cut = texts.ALBUM_CUT.format(count=len(checkpoint["images"]))
            await self._acks.show(incoming, checkpoint["ack"], cut)
        else:
            await self._acks.remove(incoming, checkpoint["ack"])

    async def _gather(
        self, job: Job, incoming: Incoming, file: Attachment, checkpoint: dict[str, Any]
    ) -> None:
        """The photo, or the album's photos queued behind it (up to MAX_IMAGES_PER_MESSAGE), and
        the first caption among them; kept, so a retry asks about the same ones."""
        parts = [(incoming, file)]
        if in_album(incoming):
            for queued in await self._queue.queued_in_group(f"chat:{incoming.chat_id}", MEDIA_KIND):
                other = with_file(queued)
                if other is not None and in_album(other[0]) and other[0].album == incoming.album:
                    parts.append(other)
        parts.sort(key=lambda part: part[0].message_id)
        shown = parts[: self._max_images]
        checkpoint.update(
            images=[_photo_id(part_file, self._max_side) for _, part_file in shown],
            others=[part.message_id for part, _ in parts if part.message_id != incoming.message_id],
            caption=next((part.text for part, _ in parts if part.text), ""),
            left_out=len(parts) - len(shown),
        )
        await self._queue.save_checkpoint(job, checkpoint)

    async def _document(
        self, job: Job, incoming: Incoming, file: Attachment, checkpoint: dict[str, Any]
    ) -> None:
        if "document" not in checkpoint:  # read once: a retry asks again without downloading again
            refusal = await self._spending.refusal(incoming.sender_id)
            if refusal is not None:  # over a budget: not worth fetching and reading the file
                await self._acks.show(incoming, checkpoint["ack"], refusal)
                return
            data = await self._messenger.download(file.file_id)
            if len(data) > self._max_mb * _MB:  # the declared size was missing or wrong
                too_big = texts.DOCUMENT_TOO_BIG.format(size=len(data) / _MB, limit=self._max_mb)
                await self._acks.show(incoming, checkpoint["ack"], too_big)
                return
            kind = _kind(file)
            assert kind is not None
            read = await extract_text(data, kind=kind, max_chars=self._max_chars)
            cut = texts.DOCUMENT_CUT.format(chars=len(read.text)) if read.truncated else ""
            question = incoming.text or texts.DOCUMENT_QUESTION
            turn = texts.DOCUMENT_TURN.format(question=question, name=file.filename, cut=cut, text=read.text)
            checkpoint.update(document=turn, cut=len(read.text) if read.truncated else 0)
            await self._queue.save_checkpoint(job, checkpoint)
        await self._chat.answer(job, incoming.with_text(checkpoint["document"]), checkpoint)
        if checkpoint["cut"] and "answer" in checkpoint:  # the acknowledgement says it was cut
            await self._acks.show(
                incoming, checkpoint["ack"], texts.DOCUMENT_WAS_CUT.format(chars=checkpoint["cut"])
            )
        else:
            await self._acks.remove(incoming, checkpoint["ack"])

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """Failed for good: said in place of the acknowledgement, in our words."""
        found = with_file(job)
        if found is None:
            return
        incoming, _ = found
        checkpoint = job.checkpoint or {}

        async def show(text: str) -> None:
            await self._acks.show(incoming, await self._acks.message_id(incoming, checkpoint), text)

        await self._notices.failed_for_good(job, incoming.target, exc, show=show)
        await self._acks.forget(incoming)


def _shown_name(name: str) -> str:
    """A file's name as we repeat it: no control or format characters (a right-to-left override
    can make "gpj.exe" read as "exe.jpg"), and not too long."""
    shown = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf")).strip()
    return (shown[:60] + "…" if len(shown) > 60 else shown) or texts.UNNAMED_FILE


def _photo_id(file: Attachment, max_side: int) -> str:
    size = file.photo_within(max_side)
    return size.file_id if size is not None else file.file_id


def _kind(file: Attachment) -> str | None:
    """ "image", "pdf", "text", or None: a file we cannot read."""
    return "image" if file.kind == "photo" else document_kind(file.filename, file.mime)
