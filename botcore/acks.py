"""Acknowledgements of work that takes a while (a voice note, a photo, a document): a job outside
the chat's order says at once that the message arrived, or why it will not be done, and leaves
its decision (refused, or the message to edit later) in the key-value store, for the job that
does the work in the chat's order. Not the acknowledgement job's checkpoint: a finished job is
purged after JOB_RETENTION_DONE_S, and the work may wait longer than that in its chat."""

from __future__ import annotations

from typing import Any

from botcore.attachments import Attachment
from botcore.errors import NotYet
from botcore.incoming import Incoming, parse_update
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.models import Job, JobState
from botcore.notices import Notices
from botcore.storage import KeyValueStore, ack_decision_key

REFUSED = "refused"
Decision = int | str | None  # the acknowledgement's message id, REFUSED, or None: there is none


class Acks:
    def __init__(self, *, queue: JobQueue, kv: KeyValueStore, messenger: Messenger, notices: Notices) -> None:
        self._queue = queue
        self._kv = kv
        self._messenger = messenger
        self._notices = notices

    async def send(self, job: Job, incoming: Incoming, text: str, *, refused: bool) -> None:
        """The acknowledgement job: ``text`` (the refusal, if ``refused``) sent once, and the
        decision kept for the job that does the work."""
        if (job.checkpoint or {}).get("sent"):
            return
        where = incoming.target
        message_id = await self._messenger.send_text(
            where.chat_id, text, reply_to=where.message_id, thread_id=where.thread_id
        )
        await self._kv.put(_key(incoming), REFUSED if refused else str(message_id))
        await self._queue.save_checkpoint(job, {"sent": 1})

    async def decision(self, incoming: Incoming, ack_job_key: str, *, refused: bool) -> Decision:
        """What the acknowledgement decided. Raises ``NotYet`` while its job has yet to run; if
        that job failed for good, ``refused`` (judged again now) or None: no message to edit."""
        stored = await self._kv.get(_key(incoming))
        if stored is not None:
            return stored if stored == REFUSED else int(stored)
        ack_job = await self._queue.by_dedup_key(ack_job_key)
        if ack_job is not None and ack_job.state in (JobState.QUEUED, JobState.RUNNING):
            raise NotYet("waiting for the acknowledgement to be sent")
        return REFUSED if refused else None

    async def show(self, incoming: Incoming, ack: Decision, text: str) -> None:
        """Edit the acknowledgement into ``text``; a new reply if there is none (or it was deleted)."""
        if isinstance(ack, int) and await self._messenger.edit_text(incoming.chat_id, ack, text):
            return
        await self._notices.reply(incoming.target, text)

    async def message_id(self, incoming: Incoming, checkpoint: dict[str, Any]) -> int | None:
        """The acknowledgement to edit: from the checkpoint, else from the store."""
        ack = checkpoint.get("ack")
        if ack is None:
            stored = await self._kv.get(_key(incoming))
            ack = int(stored) if stored not in (None, REFUSED) else None
        return ack if isinstance(ack, int) else None

    async def remove(self, incoming: Incoming, ack: Decision) -> None:
        """The work is done and shown: the acknowledgement has nothing more to say."""
        if isinstance(ack, int):
            await self._messenger.delete(incoming.chat_id, ack)

    async def forget(self, incoming: Incoming) -> None:
        await self._kv.delete(_key(incoming))


def with_file(job: Job) -> tuple[Incoming, Attachment] | None:
    """The message of a job about a file (a voice note, a photo, a document), and its file."""
    incoming = parse_update(job.payload)
    if incoming is None or incoming.attachment is None:
        return None
    return incoming, incoming.attachment


def _key(incoming: Incoming) -> str:
    return ack_decision_key(incoming.chat_id, incoming.message_id)
