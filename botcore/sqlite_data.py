"""All SQL of conversation memory (``messages``), usage records (``usage``), small named
values (``kv``) and each chat's choices (``chat_prefs``) in SQLite. Rows become our records
here. Storing is idempotent per job or billing key, so a retried job is harmless."""

from __future__ import annotations

import json
from collections.abc import Sequence

from botcore.models import ChatPrefs, StoredTurn, Turn, Usage, UsageSummary
from botcore.sqlite_db import Database
from botcore.storage import images_of

_SUMS = (
    "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
    " coalesce(sum(audio_seconds), 0), coalesce(sum(cost_usd), 0), coalesce(sum(images), 0),"
    " coalesce(sum(spoken_chars), 0)"
)


class SqliteKeyValue:
    """The ``kv`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def delete(self, key: str) -> None:
        await self._db.fetchall("DELETE FROM kv WHERE key = ?", (key,))

    async def put(self, key: str, value: str) -> None:
        await self._db.fetchall(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def delete_before(self, prefix: str, before: str) -> int:
        """Delete the keys that start with ``prefix`` and sort before ``before`` (dated keys)."""
        rows = await self._db.fetchall(
            "DELETE FROM kv WHERE key >= ? AND key < ? RETURNING key", (prefix, before)
        )
        return len(rows)

    async def with_prefix(self, prefix: str, *, limit: int = 1000) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT key, value FROM kv WHERE key >= ? AND substr(key, 1, ?) = ? ORDER BY key LIMIT ?",
            (prefix, len(prefix), prefix, limit),
        )
        return {str(k): str(v) for k, v in rows}

    async def add(self, key: str, value: str) -> bool:
        """Store ``value`` unless ``key`` exists; True if this call stored it (atomic)."""
        rows = await self._db.fetchall(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
            (key, value),
        )
        return bool(rows)


class SqliteConversations:
    """The ``messages`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(
        self, chat_id: int, *, limit: int, since: float, leave_out_job: int | None = None
    ) -> list[Turn]:
        """The last ``limit`` messages of a chat created at or after ``since``, oldest first;
        without the turns of ``leave_out_job`` (the exchange a /retry is redoing)."""
        if limit <= 0:
            return []
        rows = await self._db.fetchall(
            "SELECT role, content, images FROM (SELECT id, role, content, images FROM messages"
            " WHERE chat_id = ? AND created_at >= ? AND (? IS NULL OR job_id IS NOT ?)"
            " ORDER BY id DESC LIMIT ?) ORDER BY id",
            (chat_id, since, leave_out_job, leave_out_job, limit),
        )
        return [Turn(role, content, images_of(images)) for role, content, images in rows]

    async def add_exchange(
        self,
        chat_id: int,
        *,
        job_id: int,
        user_text: str,
        answer: str,
        now: float,
        replaces_job: int | None = None,
        user_images: Sequence[str] = (),
    ) -> None:
        """Store a question (with its images' file ids) and its answer together, in place of
        ``replaces_job``'s if given (a /retry), in one transaction; storing the same job's
        exchange again is a no-op."""
        images = json.dumps(list(user_images)) if user_images else None
        async with self._db.transaction() as tx:
            if replaces_job is not None:
                await tx.fetchall("DELETE FROM messages WHERE job_id = ?", (replaces_job,))
            await tx.executemany(
                "INSERT OR IGNORE INTO messages (chat_id, role, content, created_at, job_id, images)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (chat_id, "user", user_text, now, job_id, images),
                    (chat_id, "assistant", answer, now, job_id, None),
                ],
            )

    async def last_exchange(self, chat_id: int) -> tuple[int, Turn] | None:
        """The job id and question of this chat's latest remembered exchange (for ``/retry``)."""
        row = await self._db.fetchone(
            "SELECT job_id, content, images FROM messages WHERE chat_id = ? AND role = 'user'"
            " AND job_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            (chat_id,),
        )
        return None if row is None else (int(row[0]), Turn("user", str(row[1]), images_of(row[2])))

    async def transcript(self, chat_id: int, *, since: float, limit: int) -> list[StoredTurn]:
        rows = await self._db.fetchall(
            "SELECT role, content, created_at, images FROM (SELECT id, role, content, created_at, images"
            " FROM messages WHERE chat_id = ? AND created_at >= ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (chat_id, since, limit),
        )
        return [
            StoredTurn(role, content, created_at, images_of(images))
            for role, content, created_at, images in rows
        ]

    async def reset(self, chat_id: int) -> int:
        """Delete a chat's memory (``/reset``). Returns how many messages were deleted."""
        rows = await self._db.fetchall("DELETE FROM messages WHERE chat_id = ? RETURNING id", (chat_id,))
        return len(rows)

    async def purge_expired(self, *, before: float, batch: int = 1000) -> int:
        """Delete messages older than ``before`` (expired memory is deleted, not hidden)."""
        return await self._db.delete_in_batches("messages", "created_at < ?", (before,), batch=batch)


class SqliteUsage:
    """The ``usage`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        usage: Usage,
        *,
        key: str,
        job_id: int | None,
        chat_id: int | None,
        user_id: int | None,
        now: float,
    ) -> bool:
        """Record one billed call; a ``key`` already recorded is not recorded again, however often
        the job runs (or is revived). True if this call stored it."""
        rows = await self._db.fetchall(
            "INSERT OR IGNORE INTO usage (created_at, billing_key, job_id, chat_id, user_id, kind, model,"
            " prompt_tokens, completion_tokens, audio_seconds, cost_usd, estimated, images, spoken_chars)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                now,
                key,
                job_id,
                chat_id,
                user_id,
                usage.kind,
                usage.model,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.audio_seconds,
                usage.cost_usd,
                usage.estimated,
                usage.images,
                usage.spoken_chars,
            ),
        )
        return bool(rows)

    async def summary(self, *, since: float, user_id: int | None = None) -> UsageSummary:
        """Everyone's usage since ``since``, or one user's."""
        if user_id is None:
            row = await self._db.fetchone(f"SELECT {_SUMS} FROM usage WHERE created_at >= ?", (since,))
        else:
            row = await self._db.fetchone(
                f"SELECT {_SUMS} FROM usage WHERE user_id = ? AND created_at >= ?", (user_id, since)
            )
        return UsageSummary(*row) if row else UsageSummary()

    async def top_users(self, *, since: float, limit: int = 5) -> list[tuple[int, UsageSummary]]:
        rows = await self._db.fetchall(
            f"SELECT user_id, {_SUMS} FROM usage WHERE created_at >= ? AND user_id IS NOT NULL"
            " GROUP BY user_id ORDER BY sum(cost_usd) DESC, count(*) DESC, user_id LIMIT ?",
            (since, limit),
        )
        return [(row[0], UsageSummary(*row[1:])) for row in rows]

    async def purge(self, *, before: float, batch: int = 1000) -> int:
        """Delete usage rows older than ``before``, in small batches."""
        return await self._db.delete_in_batches("usage", "created_at < ?", (before,), batch=batch)


class SqliteChatPrefs:
    """The ``chat_prefs`` table: one row per chat that chose something."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, chat_id: int) -> ChatPrefs:
        row = await self._db.fetchone(
            "SELECT model, persona, stream, memory, voice FROM chat_prefs WHERE chat_id = ?", (chat_id,)
        )
        if row is None:
            return ChatPrefs()
        model, persona, stream, memory, voice = row
        return ChatPrefs(model, persona, _flag(stream), _flag(memory), voice)

    async def put(self, chat_id: int, prefs: ChatPrefs, *, now: float) -> None:
        if prefs == ChatPrefs():
            await self._db.fetchall("DELETE FROM chat_prefs WHERE chat_id = ?", (chat_id,))
            return
        await self._db.fetchall(
            "INSERT INTO chat_prefs (chat_id, model, persona, stream, memory, voice, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chat_id) DO UPDATE SET model = excluded.model,"
            " persona = excluded.persona, stream = excluded.stream, memory = excluded.memory,"
            " voice = excluded.voice, updated_at = excluded.updated_at",
            (chat_id, prefs.model, prefs.persona, prefs.stream, prefs.memory, prefs.voice, now),
        )


def _flag(value: object) -> bool | None:
    return None if value is None else bool(value)
