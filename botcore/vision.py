"""What a vision model is shown: a question's images (downloaded by file id when the job runs,
never kept in a payload, resized and re-encoded by ``images``) and, for the turns right after
one, the remembered images again; older ones become a short marker, so a request stays bounded.
Decides nothing about whether a chat may send images (``media`` does)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from loguru import logger

from botcore import texts
from botcore.errors import JobError
from botcore.images import prepare_image
from botcore.messenger import Messenger
from botcore.models import Turn

_RECENT = 16  # images kept ready (about 300 KB each): the next question shows the last again
_AT_ONCE = 2  # pictures decoded at once: more would not be faster on a small box, only bigger


class Vision:
    def __init__(self, messenger: Messenger, *, max_side: int, history_images: int) -> None:
        self._messenger = messenger
        self._max_side = max_side
        self._history_images = history_images  # the user turns after an image that see it again
        self._recent: OrderedDict[str, str] = OrderedDict()  # file id -> data: URL
        self._decoding = asyncio.Semaphore(_AT_ONCE)
        self._log = logger.bind(component="vision")

    async def load(self, file_ids: Sequence[str]) -> tuple[str, ...]:
        """The images as data: URLs; raises (translated) when one cannot be had or read."""
        return tuple([await self._one(file_id) for file_id in file_ids])

    async def _one(self, file_id: str) -> str:
        if file_id in self._recent:
            self._recent.move_to_end(file_id)
            return self._recent[file_id]
        data = await self._messenger.download(file_id)
        async with self._decoding:
            url = (await prepare_image(data, max_side=self._max_side)).data_url()
        self._recent[file_id] = url
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return url

    async def history(self, turns: Sequence[Turn], *, sees: bool) -> list[Turn]:
        """``turns`` as the model is sent them: the images of a turn fewer than
        HISTORY_IMAGES questions back (if the model sees images), a marker for the others."""
        shown: list[Turn] = []
        later_questions = 0  # user turns after this one, counted from the end
        for turn in reversed(turns):
            if turn.images:
                shown.append(await self._remembered(turn, sees and later_questions < self._history_images))
            else:
                shown.append(turn)
            later_questions += turn.role == "user"
        return shown[::-1]

    async def _remembered(self, turn: Turn, again: bool) -> Turn:
        if again:
            try:
                return Turn(turn.role, turn.content, await self.load(turn.images))
            except JobError as exc:  # gone from Telegram, say: the marker will do
                self._log.info("a remembered image could not be shown again: {}", exc)
        return marked(turn)


def marked(turn: Turn) -> Turn:
    """A turn whose images are not shown: a short marker in their place."""
    if not turn.images:
        return turn
    return Turn(turn.role, texts.IMAGE_MARKER.format(count=len(turn.images)) + turn.content)
