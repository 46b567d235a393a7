"""Shows an answer while the LLM writes it: in a private chat as a draft (``sendMessageDraft``,
which Telegram animates; the answer itself is then sent once, by the delivery), elsewhere, or
when the Bot API server has no drafts, as a message edited at most once per interval, never with
unchanged text. A painter task runs beside the generation and never holds it up: the model's
text is noted as it comes and the latest is shown when the interval allows, each call cosmetic
(``pacing.Lane``), so under load previews give way to answers. Plain text (Markdown is rendered
once, at the end); text past one message goes on in another. Best effort: a Telegram refusal
never fails the answer, and flood control widens the interval instead."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

from loguru import logger

from botcore import texts
from botcore.clock import Clock
from botcore.errors import JobError, LeaseLostError, PermanentError, UpstreamUnavailable
from botcore.formatting import Chunk, plain_chunks
from botcore.messenger import Messenger
from botcore.pacing import Lane

GROUP_MIN_INTERVAL_S = 3.0  # Telegram allows a group about 20 messages (edits included) a minute
MAX_MARK_WAIT_S = 5.0  # a mark that would wait longer (after flood control) is skipped
KEEP_ALIVE_S = 20.0  # a draft fades about 30 s after it last changed: shown again before that
DRAFT_IDS_PER_JOB = 64  # one id per message of the answer, so each is a draft of its own


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class Drafts:
    """Whether streamed replies in private chats are drafts: yes, until the Bot API server says
    it does not know ``sendMessageDraft``; then edits, for as long as the bot runs."""

    def __init__(self) -> None:
        self.available = True

    def unavailable(self) -> None:
        if self.available:
            logger.bind(component="stream").warning(
                "the Bot API server has no sendMessageDraft: streaming by editing messages instead"
            )
        self.available = False


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
        drafts: Drafts | None = None,  # None: edits (so in groups, where drafts are refused)
        draft_id: int = 1,  # non-zero; this answer's drafts are numbered from it
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
        self._drafts = None if in_group else drafts
        self._draft_id = draft_id
        self._draft: tuple[int, str, float] | None = None  # the draft shown: id, text, when
        self._last_show = -math.inf
        self._text = ""
        self._thinking = False
        self._changed = asyncio.Event()
        self._painter: asyncio.Task[None] | None = None
        self._call: Lane | None = None  # the cosmetic call being made, until its id is kept
        self._stopped = False
        self._log = logger.bind(component="stream")

    @property
    def text(self) -> str:
        """The answer so far, as the model has written it (shown or about to be)."""
        return self._text

    @property
    def drafting(self) -> bool:
        return self._drafts is not None and self._drafts.available

    async def update(self, text: str, thinking: bool = False) -> None:
        """The whole answer so far, to be shown when the interval allows (never waited for).
        While a reasoning model thinks and there is no answer yet, "Thinking…" shows instead.
        Raises what stopped the painter (its job's lease lost, at a checkpoint)."""
        self._raise_failure()
        self._text, self._thinking = text, thinking
        if self._stopped:
            return
        self._changed.set()
        if self._painter is None:
            self._painter = asyncio.get_running_loop().create_task(self._paint())

    def shows(self, index: int, chunk: Chunk) -> bool:
        """Whether message ``index`` already shows exactly this final chunk."""
        return not chunk.entities and index < len(self._shown) and self._shown[index] == chunk.text

    async def close(self) -> None:
        """Painting stops: a call that has not left is called off; one under way is waited for,
        so the message it made is known. Raises what stopped the painter, if anything did."""
        self._stopped = True
        painter = self._painter
        if painter is not None and not painter.done():
            if self._call is not None and self._call.started:
                await asyncio.wait([painter])  # it ends after this call: it sees it is stopped
            else:
                painter.cancel()
                await asyncio.gather(painter, return_exceptions=True)
        self._raise_failure()

    def _raise_failure(self) -> None:
        painter = self._painter
        if painter is not None and painter.done() and not painter.cancelled():
            error = painter.exception()
            if error is not None:
                raise error

    def abandon(self) -> None:
        """Painting stops without being waited for (the answer is given up here, or the bot is
        stopping): a call that has not left is called off; one under way ends by itself, so
        the message it makes is still checkpointed."""
        self._stopped = True
        painter = self._painter
        if painter is None:
            return
        if not painter.done() and not (self._call is not None and self._call.started):
            painter.cancel()
        painter.add_done_callback(_retrieved)  # already raised, or of no interest now

    async def mark(self, note: str, *, final: bool = True) -> None:
        """The answer stops here (interrupted, stopped): what this attempt showed, with ``note``.
        A draft fades by itself: a ``final`` mark (stopped, failed) leaves its text as a message
        instead, and a passing one (it will be retried) shows nothing. Nothing either if this
        attempt showed nothing (an earlier attempt's text stays as it was)."""
        await self.close()
        if self.drafting and self._draft is not None:
            if final and self._text:
                self._drafts = None  # the message it leaves is edited from now on
                await self._show(f"{self._text}\n\n{note}", painting=False)
            return
        wait = self._last_show + self._interval - self._clock.monotonic()
        shown = self._text or (self._shown[0] if self._shown else None)  # perhaps "Thinking…"
        if shown and self.ids and wait <= MAX_MARK_WAIT_S:  # not worth holding a failing job
            await self.wait_turn()
            await self._show(f"{shown}\n\n{note}", painting=False)

    async def wait_turn(self) -> None:
        """Wait until the interval since the last show has passed."""
        await self._clock.wait(asyncio.Event(), self._last_show + self._interval - self._clock.monotonic())

    async def _paint(self) -> None:
        while not self._stopped:
            await self._clock.wait(self._changed, KEEP_ALIVE_S if self._draft is not None else None)
            self._changed.clear()
            await self.wait_turn()
            if self._stopped:
                return
            if self.drafting and (self._text or self._thinking):
                await self._show_draft(self._text)  # empty: Telegram's own "Thinking…"
            elif not self.drafting:
                shown = self._text or (texts.THINKING if self._thinking else "")
                if shown:
                    await self._show(shown, painting=True)

    async def _show_draft(self, text: str) -> None:
        """Every message of ``text`` but the last as a message (as edits do), the last as a draft."""
        parts = [chunk.text for chunk in plain_chunks(text)] if text else [""]
        if len(parts) > 1 and not await self._show_parts(parts[:-1], painting=True):
            return  # stopped, or refused: not one more call now
        if self._stopped:
            return
        draft_id = self._draft_id + min(len(parts) - 1, DRAFT_IDS_PER_JOB - 1)
        now = self._clock.monotonic()
        if (
            self._draft is not None
            and self._draft[:2] == (draft_id, parts[-1])
            and now - self._draft[2] < KEEP_ALIVE_S
        ):
            return  # unchanged, and not about to fade
        self._call = lane = Lane()
        try:
            known = await self._messenger.send_draft(
                self._chat_id, draft_id, parts[-1], thread_id=self._thread_id, lane=lane
            )
        except UpstreamUnavailable as exc:
            self._slow_down(exc)
            return
        except PermanentError as exc:  # this chat refuses drafts: it gets edits
            self._log.info("no draft in chat {} ({}); editing a message instead", self._chat_id, exc)
            self._drafts = None
            known = True
        except JobError as exc:
            self._log.debug("could not show the draft: {}", exc)
            return
        finally:
            self._left(lane)
        if not known and self._drafts is not None:
            self._drafts.unavailable()
        if self.drafting:
            self._draft = (draft_id, parts[-1], now)
        elif not self._stopped:
            await self._show(text or texts.THINKING, painting=True)

    async def _show(self, text: str, *, painting: bool) -> None:
        await self._show_parts([chunk.text for chunk in plain_chunks(text)], painting=painting)

    async def _show_parts(self, parts: list[str], *, painting: bool) -> bool:
        """Each part as message ``index``: edited, or sent when there is none (or it is gone).
        ``painting``: the painter's own calls, cosmetic, which stop once it is closed; else the
        answer's own (a mark). False if it stopped before the end (closed, or refused)."""
        for index, part in enumerate(parts):
            if index < len(self.ids) and self._shown[index] == part:
                continue  # never an edit that changes nothing
            if painting and self._stopped:
                return False
            try:
                message_id = await self._show_part(index, part, painting=painting)
                if message_id is not None:  # a new message: its id is kept before anything else
                    await self._on_new_message(list(self.ids))
            except UpstreamUnavailable as exc:
                self._slow_down(exc)
                return False
            except LeaseLostError:
                raise  # a newer attempt shows the answer now: this one stops
            except JobError as exc:
                self._log.debug("could not show the answer so far: {}", exc)
                return False
            finally:
                self._call = None
        return True

    async def _show_part(self, index: int, part: str, *, painting: bool) -> int | None:
        """Message ``index`` edited to ``part``; or sent, then its id (it is a new message).
        Each call in a lane of its own, if cosmetic, so ``close`` knows whether it has left."""
        if index < len(self.ids):
            self._call = lane = Lane() if painting else None
            try:
                edited = await self._messenger.edit_text(self._chat_id, self.ids[index], part, lane=lane)
            finally:
                self._left(lane)
            if edited:
                self._shown[index] = part
                return None
        self._call = lane = Lane() if painting else None
        try:
            message_id = await self._messenger.send_text(
                self._chat_id,
                part,
                reply_to=self._reply_to if index == 0 else None,
                thread_id=self._thread_id,
                lane=lane,
            )
        finally:
            self._left(lane, keep=True)  # until its id is checkpointed, it counts as under way
        if index < len(self.ids):  # the message was deleted: its replacement takes its place
            self.ids[index], self._shown[index] = message_id, part
        else:
            self.ids.append(message_id)
            self._shown.append(part)
        return message_id

    def _left(self, lane: Lane | None, *, keep: bool = False) -> None:
        """A call is over: the interval counts from it if it went to Telegram (one called off
        before it left takes nothing from the chat's pace). ``keep``: it still counts as under
        way (its message's id is not kept yet)."""
        if not keep:
            self._call = None
        if lane is None or lane.started:
            self._last_show = self._clock.monotonic()

    def _slow_down(self, exc: UpstreamUnavailable) -> None:
        """Flood control: slow down rather than fail."""
        self._interval = max(self._interval * 2, exc.retry_after or 0.0)
        self._log.info("Telegram asked to slow down; showing every {:.1f} s now", self._interval)
