"""What a vision model is shown: a question's images (downloaded by file id when the job runs,
never kept in a payload, resized and re-encoded by ``images``) and, for the turns right after
one, the remembered images again; older ones become a short marker, so a request stays bounded.
Decides nothing about whether a chat may send images (``media`` does)."""

from __future__ import annotations

from collections.abc import Sequence

from loguru import logger

from botcore import texts
from botcore.errors import JobError
from botcore.images import prepare_image
from botcore.messenger import Messenger
from botcore.models import Turn


class Vision:
    def __init__(self, messenger: Messenger, *, max_side: int, history_images: int) -> None:
        self._messenger = messenger
        self._max_side = max_side
        self._history_images = history_images  # the user turns after an image that see it again
        self._log = logger.bind(component="vision")

    async def load(self, file_ids: Sequence[str]) -> tuple[str, ...]:
        """The images as data: URLs; raises (translated) when one cannot be had or read."""
        urls = []
        for file_id in file_ids:
            data = await self._messenger.download(file_id)
            urls.append((await prepare_image(data, max_side=self._max_side)).data_url())
        return tuple(urls)

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
        return Turn(turn.role, texts.IMAGE_MARKER.format(count=len(turn.images)) + turn.content)
