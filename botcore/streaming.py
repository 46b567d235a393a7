"""Shows an answer while the LLM writes it: the first piece as a message, then edits, at most
one per interval and never with unchanged text, in plain text (Markdown is rendered once, at the
end, by the chat service). Text past one message continues in a new one. Showing is best-effort:
a Telegram refusal never fails the answer, and flood control widens the interval instead."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

from loguru import logger

from botcore import texts
from botcore.clock import Clock
from botcore.errors import JobError, UpstreamUnavailable
from botcore.formatting import Chunk, plain_chunks
from botcore.messenger import Messenger

GROUP_MIN_INTERVAL_S = 3.0  # Telegram allows a group about 20 messages (edits included) a minute
MAX_MARK_WAIT_S = 5.0  # a mark that would wait longer (after flood control) is skipped


class StreamingReply:
    def __init__(
        self,
        messenger: Messenger,
        chat_id: int,
        *,
        in_group: bool,
        reply_to: int | None,
        thread_id: int | None,
        interval_s: float,
        message_ids: Sequence[int] = (),
        on_new_message: Callable[[list[int]], Awaitable[None]],
        clock: Clock,
    ) -> None:
        self._messenger = messenger
        self._chat_id = chat_id
        self._reply_to = reply_to
        self._thread_id = thread_id
        self._interval = max(interval_s, GROUP_MIN_INTERVAL_S) if in_group else interval_s
        self.ids = list(message_ids)  # a retry reuses the messages an earlier attempt showed
        self._shown: list[str | None] = [None] * len(self.ids)  # None: unknown, edit it anyway
        self._on_new_message = on_new_message
        self._clock = clock
        self._last_show = -math.inf
        self._text = ""
        self._log = logger.bind(component="stream")

    @property
    def text(self) -> str:
        """The answer so far, as the model has written it (shown or about to be)."""
        return self._text

    async def update(self, text: str, thinking: bool = False) -> None:
        """The whole answer so far; shown now if the interval has passed since the last show.
        While a reasoning model thinks, and there is no answer yet, "Thinking…" shows instead."""
        self._text = text
        shown = text or (texts.THINKING if thinking else "")
        if shown and self._clock.monotonic() - self._last_show >= self._interval:
            await self._show(shown)

    def shows(self, index: int, chunk: Chunk) -> bool:
        """Whether message ``index`` already shows exactly this final chunk."""
        return not chunk.entities and index < len(self._shown) and self._shown[index] == chunk.text

    async def mark(self, note: str) -> None:
        """The answer stops here (interrupted, stopped): what this attempt showed, with ``note``.
        Nothing if this attempt showed nothing (an earlier attempt's text stays as it was)."""
        wait = self._last_show + self._interval - self._clock.monotonic()
        shown = self._text or (self._shown[0] if self._shown else None)  # perhaps "Thinking…"
        if shown and self.ids and wait <= MAX_MARK_WAIT_S:  # not worth holding a failing job
            await self.wait_turn()
            await self._show(f"{shown}\n\n{note}")

    async def wait_turn(self) -> None:
        """Wait until the interval since the last edit has passed."""
        await self._clock.wait(asyncio.Event(), self._last_show + self._interval - self._clock.monotonic())

    async def _show(self, text: str) -> None:
        self._last_show = self._clock.monotonic()
        for index, part in enumerate(chunk.text for chunk in plain_chunks(text)):
            if index < len(self.ids) and self._shown[index] == part:
                continue  # never an edit that changes nothing
            try:
                if index < len(self.ids) and await self._messenger.edit_text(
                    self._chat_id, self.ids[index], part
                ):
                    self._shown[index] = part
                    continue
                message_id = await self._messenger.send_text(
                    self._chat_id,
                    part,
                    reply_to=self._reply_to if index == 0 else None,
                    thread_id=self._thread_id,
                )
            except UpstreamUnavailable as exc:  # flood control: slow down rather than fail
                self._interval = max(self._interval * 2, exc.retry_after or 0.0)
                self._log.info("Telegram asked to slow down; editing every {:.1f} s now", self._interval)
                return
            except JobError as exc:
                self._log.debug("could not show the answer so far: {}", exc)
                return
            if index < len(self.ids):  # the message was deleted: its replacement takes its place
                self.ids[index], self._shown[index] = message_id, part
            else:
                self.ids.append(message_id)
                self._shown.append(part)
            await self._on_new_message(list(self.ids))
