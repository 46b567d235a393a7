"""``/export``: this chat's remembered conversation (what the bot would send the model: the
messages of the last HISTORY_TTL_DAYS, their times, the chat's model and persona) as a Markdown
or JSON file, sent with ``sendDocument`` once per job. In a group only admins may export."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botcore import texts
from botcore.clock import DAY_S, Clock
from botcore.incoming import Incoming
from botcore.jobqueue import JobQueue
from botcore.menus import View
from botcore.messenger import Messenger
from botcore.models import Job, StoredTurn
from botcore.prefs import ChatSettings
from botcore.storage import ConversationStore

MAX_BYTES = 5 * 1024 * 1024  # a file this large is plenty; the oldest messages give way
_MAX_MESSAGES = 10_000


class Exporter:
    def __init__(
        self,
        *,
        conversations: ConversationStore,
        settings: ChatSettings,
        messenger: Messenger,
        queue: JobQueue,
        clock: Clock,
        history_ttl_days: float,
    ) -> None:
        self._conversations = conversations
        self._settings = settings
        self._messenger = messenger
        self._queue = queue
        self._clock = clock
        self._ttl_s = history_ttl_days * DAY_S

    async def export(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], form: str) -> str | None:
        """Send the file (None: done), or say why not."""
        form = form.lower() or "markdown"
        if form not in ("markdown", "md", "json"):
            return texts.EXPORT_USAGE
        if not await self._settings.may_change(incoming):
            return texts.EXPORT_ADMINS_ONLY
        if checkpoint.get("sent"):
            return None
        turns = await self._conversations.transcript(
            incoming.chat_id, since=self._clock.now() - self._ttl_s, limit=_MAX_MESSAGES
        )
        if not turns:
            return texts.EXPORT_NOTHING
        view = await self._settings.view(incoming.chat_id)
        render = _json if form == "json" else _markdown
        data, left_out = render(turns, view), 0
        while len(data) > MAX_BYTES and len(turns) > 1:  # the oldest half goes, until it fits
            left_out += len(turns) // 2
            turns = turns[len(turns) // 2 :]
            data = render(turns, view)
        name = f"conversation-{incoming.chat_id}.{'json' if form == 'json' else 'md'}"
        caption = texts.EXPORT_CAPTION.format(count=len(turns)) + (
            texts.EXPORT_CUT.format(count=left_out) if left_out else ""
        )
        where = incoming.target
        await self._messenger.send_document(
            where.chat_id,
            data,
            filename=name,
            caption=caption,
            reply_to=where.message_id,
            thread_id=where.thread_id,
        )
        checkpoint["sent"] = 1
        await self._queue.save_checkpoint(job, checkpoint)
        return None


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _markdown(turns: list[StoredTurn], view: View) -> bytes:
    """The conversation for people to read, in the user's language."""
    about = texts.EXPORT_ABOUT.format(
        model=view.model, persona=view.persona.name, time=_when(turns[-1].created_at)
    )
    lines = [f"# {texts.EXPORT_HEADING}", "", about, ""]
    for turn in turns:
        who = texts.EXPORT_YOU if turn.role == "user" else texts.EXPORT_ASSISTANT
        images = f" ({texts.EXPORT_IMAGES.format(count=len(turn.images))})" if turn.images else ""
        lines += [f"## {who}, {_when(turn.created_at)}{images}", "", turn.content, ""]
    return "\n".join(lines).encode()


def _json(turns: list[StoredTurn], view: View) -> bytes:
    document = {
        "model": view.model,
        "persona": view.persona.name,
        "messages": [
            {
                "role": turn.role,
                "content": turn.content,
                "time": datetime.fromtimestamp(turn.created_at, UTC).isoformat(),
                "images": len(turn.images),
            }
            for turn in turns
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()
