"""An answer put in front of the user: the streamed reply that shows it as it is written (a draft
in a private chat, edits elsewhere), then the rendered answer in as many messages as it needs,
resuming where an earlier attempt stopped (the messages' ids and the parts sent are in the job's
checkpoint, so a retry never sends a part twice). Writes no memory, bills nothing."""

from __future__ import annotations

from typing import Any

from botcore.clock import Clock
from botcore.formatting import render, with_reasoning
from botcore.incoming import Incoming, ReplyTarget
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job
from botcore.streaming import DRAFT_IDS_PER_JOB, Drafts, StreamingReply


class Delivery:
    def __init__(
        self, messenger: Messenger, queue: JobQueue, clock: Clock, *, stream_interval_s: float
    ) -> None:
        self._messenger = messenger
        self._queue = queue
        self._clock = clock
        self._interval_s = stream_interval_s
        self._drafts = Drafts()  # whether this Bot API server has drafts, once it has said

    def live_reply(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any]) -> StreamingReply:
        """The streamed reply (a draft in a private chat); the ids of the messages it shows are
        checkpointed, so a retry edits them instead of sending more. A draft is not a message:
        nothing of it needs recovering after a crash."""

        async def remember(ids: list[int]) -> None:
            checkpoint["stream_ids"] = ids
            await self._queue.save_checkpoint(job, checkpoint)

        return StreamingReply(
            self._messenger,
            incoming.chat_id,
            in_group=incoming.in_group,
            reply_to=incoming.message_id,
            thread_id=incoming.thread_id,
            interval_s=self._interval_s,
            message_ids=checkpoint.get("stream_ids", ()),
            on_new_message=remember,
            clock=self._clock,
            drafts=self._drafts,
            draft_id=1 + job.id % 2**24 * DRAFT_IDS_PER_JOB,  # within 31 bits, whatever Telegram allows
        )

    async def deliver(
        self, job: Job, where: ReplyTarget, checkpoint: dict[str, Any], live: StreamingReply | None
    ) -> None:
        """The answer, rendered, in as many messages as it needs: the streamed messages are
        edited into it (extra ones deleted), the rest sent. Resumes where an earlier attempt
        stopped."""
        if live is not None:
            await live.close()  # a preview still to come is called off; one under way lands
            checkpoint["stream_ids"] = live.ids
        chunks = render(checkpoint["answer"])
        if checkpoint.get("reasoning"):
            chunks = with_reasoning(chunks, checkpoint["reasoning"])
        shown: list[int] = checkpoint.get("stream_ids", [])
        paced = False
        for index in range(checkpoint["sent"], len(chunks)):
            chunk = chunks[index]
            if live is None or not live.shows(index, chunk):  # else on screen as it should end
                if live is not None and not paced and (index < len(shown) or not live.drafting):
                    # The final edits keep the pace too, but only when one is needed: an answer
                    # the stream already shows in full frees its worker at once, and a draft's
                    # answer is a new message.
                    await live.wait_turn()
                    paced = True
                if index >= len(shown) or not await self._messenger.edit_chunk(
                    where.chat_id, shown[index], chunk
                ):
                    await self._messenger.send_chunk(
                        where.chat_id,
                        chunk,
                        reply_to=where.message_id if index == 0 else None,
                        thread_id=where.thread_id,
                    )
            checkpoint["sent"] = index + 1
            await self._queue.save_checkpoint(job, checkpoint)
        for extra in shown[len(chunks) :]:
            await self._messenger.delete(where.chat_id, extra)
