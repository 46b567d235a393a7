"""All SQL of conversation memory (``messages``), usage records (``usage``) and the ``kv`` table.
Rows become ``Turn`` objects here. Storing is idempotent per job, so a retried job is harmless."""

from __future__ import annotations

from botcore.db import Database
from botcore.models import Turn, Usage


class KeyValueStore:
    """Small named values that must survive a restart."""

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


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, chat_id: int, *, limit: int, since: float) -> list[Turn]:
        """The last ``limit`` messages of a chat created at or after ``since``, oldest first."""
        if limit <= 0:
            return []
        rows = await self._db.fetchall(
            "SELECT role, content FROM (SELECT id, role, content FROM messages"
            " WHERE chat_id = ? AND created_at >= ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (chat_id, since, limit),
        )
        return [Turn(role, content) for role, content in rows]

    async def add_exchange(
        self, chat_id: int, *, job_id: int, user_text: str, answer: str, now: float
    ) -> None:
        """Store a question and its answer together; storing the same job's exchange again is a no-op."""
        async with self._db.transaction() as tx:
            await tx.executemany(
                "INSERT OR IGNORE INTO messages (chat_id, role, content, created_at, job_id)"
                " VALUES (?, ?, ?, ?, ?)",
                [(chat_id, "user", user_text, now, job_id), (chat_id, "assistant", answer, now, job_id)],
            )

    async def reset(self, chat_id: int) -> int:
        """Delete a chat's memory (``/reset``). Returns how many messages were deleted."""
        rows = await self._db.fetchall("DELETE FROM messages WHERE chat_id = ? RETURNING id", (chat_id,))
        return len(rows)

    async def purge_expired(self, *, before: float, batch: int = 1000) -> int:
        """Delete messages older than ``before`` (expired memory is deleted, not hidden)."""
        total = 0
        while True:
            rows = await self._db.fetchall(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? LIMIT ?)"
                " RETURNING id",
                (before, batch),
            )
            total += len(rows)
            if len(rows) < batch:
                return total

    async def record_usage(
        self, usage: Usage, *, job_id: int | None, chat_id: int | None, user_id: int | None, now: float
    ) -> None:
        """Record one call; the same job and kind is recorded once, however often it is retried."""
        await self._db.fetchall(
            "INSERT OR IGNORE INTO usage (created_at, job_id, chat_id, user_id, kind, model,"
            " prompt_tokens, completion_tokens, audio_seconds, cost_usd)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                now,
                job_id,
                chat_id,
                user_id,
                usage.kind,
                usage.model,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.audio_seconds,
                usage.cost_usd,
            ),
        )

    async def usage_totals(self, *, since: float) -> dict[str, int]:
        row = await self._db.fetchone(
            "SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)"
            " FROM usage WHERE created_at >= ?",
            (since,),
        )
        calls, prompt, completion = row if row else (0, 0, 0)
        return {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}
