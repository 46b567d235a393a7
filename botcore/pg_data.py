"""All SQL of conversation memory (``messages``), usage records (``usage``), small named values
(``kv``) and each chat's choices (``chat_prefs``) in PostgreSQL. Storing is idempotent per job
or billing key, so a retried job is harmless, whichever process retries it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from botcore.models import ChatPrefs, StoredTurn, Turn, Usage, UsageSummary
from botcore.pg_db import PgDatabase, text
from botcore.storage import images_of

_SUMS = (
    "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
    " coalesce(sum(audio_seconds), 0), coalesce(sum(cost_usd), 0), coalesce(sum(images), 0),"
    " coalesce(sum(spoken_chars), 0)"
)


class PgKeyValue:
    """The ``kv`` table (keys compare byte by byte, as in SQLite)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchrow("SELECT value FROM kv WHERE key = $1", key)
        return None if row is None else str(row[0])

    async def put(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO kv (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            text(key),
            text(value),
        )

    async def add(self, key: str, value: str) -> bool:
        row = await self._db.fetchrow(
            "INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING key",
            text(key),
            text(value),
        )
        return row is not None

    async def delete(self, key: str) -> None:
        await self._db.execute("DELETE FROM kv WHERE key = $1", key)

    async def with_prefix(self, prefix: str, *, limit: int = 1000) -> dict[str, str]:
        rows = await self._db.fetch(
            "SELECT key, value FROM kv WHERE key >= $1 AND left(key, $2) = $1 ORDER BY key LIMIT $3",
            prefix,
            len(prefix),
            limit,
        )
        return {str(k): str(v) for k, v in rows}

    async def delete_before(self, prefix: str, before: str) -> int:
        rows = await self._db.fetch(
            "DELETE FROM kv WHERE key >= $1 AND key < $2 RETURNING key", prefix, before
        )
        return len(rows)


class PgConversations:
    """The ``messages`` table."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def history(
        self, chat_id: int, *, limit: int, since: float, leave_out_job: int | None = None
    ) -> list[Turn]:
        if limit <= 0:
            return []
        rows = await self._db.fetch(
            "SELECT role, content, images FROM (SELECT id, role, content, images FROM messages"
            " WHERE chat_id = $1 AND created_at >= $2 AND job_id IS DISTINCT FROM $3"
            " ORDER BY id DESC LIMIT $4) m ORDER BY id",
            chat_id,
            since,
            leave_out_job,
            limit,
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
        images = json.dumps(list(user_images)) if user_images else None
        async with self._db.transaction() as conn:
            if replaces_job is not None:
                await conn.execute("DELETE FROM messages WHERE job_id = $1", replaces_job)
            await conn.execute(
                "INSERT INTO messages (chat_id, role, content, created_at, job_id, images)"
                " VALUES ($1, 'user', $2, $4, $5, $6), ($1, 'assistant', $3, $4, $5, NULL)"
                " ON CONFLICT (job_id, role) WHERE job_id IS NOT NULL DO NOTHING",
                chat_id,
                text(user_text),
                text(answer),
                now,
                job_id,
                images,
            )

    async def last_exchange(self, chat_id: int) -> tuple[int, Turn] | None:
        row = await self._db.fetchrow(
            "SELECT job_id, content, images FROM messages WHERE chat_id = $1 AND role = 'user'"
            " AND job_id IS NOT NULL ORDER BY id DESC LIMIT 1",
            chat_id,
        )
        return None if row is None else (int(row[0]), Turn("user", str(row[1]), images_of(row[2])))

    async def transcript(self, chat_id: int, *, since: float, limit: int) -> list[StoredTurn]:
        rows = await self._db.fetch(
            "SELECT role, content, created_at, images FROM (SELECT id, role, content, created_at, images"
            " FROM messages WHERE chat_id = $1 AND created_at >= $2 ORDER BY id DESC LIMIT $3) m ORDER BY id",
            chat_id,
            since,
            limit,
        )
        return [
            StoredTurn(role, content, created_at, images_of(images))
            for role, content, created_at, images in rows
        ]

    async def reset(self, chat_id: int) -> int:
        rows = await self._db.fetch("DELETE FROM messages WHERE chat_id = $1 RETURNING id", chat_id)
        return len(rows)

    async def purge_expired(self, *, before: float, batch: int = 1000) -> int:
        return await self._db.delete_in_batches("messages", "created_at < $2", before, batch=batch)


class PgUsage:
    """The ``usage`` table."""

    def __init__(self, db: PgDatabase) -> None:
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
        row = await self._db.fetchrow(
            "INSERT INTO usage (created_at, billing_key, job_id, chat_id, user_id, kind, model,"
            " prompt_tokens, completion_tokens, audio_seconds, cost_usd, estimated, images, spoken_chars)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (billing_key) DO NOTHING RETURNING id",
            now,
            key,
            job_id,
            chat_id,
            user_id,
            usage.kind,
            usage.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            float(usage.audio_seconds),
            float(usage.cost_usd),
            bool(usage.estimated),
            usage.images,
            usage.spoken_chars,
        )
        return row is not None

    async def summary(self, *, since: float, user_id: int | None = None) -> UsageSummary:
        if user_id is None:
            row = await self._db.fetchrow(f"SELECT {_SUMS} FROM usage WHERE created_at >= $1", since)
        else:
            row = await self._db.fetchrow(
                f"SELECT {_SUMS} FROM usage WHERE user_id = $1 AND created_at >= $2", user_id, since
            )
        return _summary(row) if row else UsageSummary()

    async def top_users(self, *, since: float, limit: int = 5) -> list[tuple[int, UsageSummary]]:
        rows = await self._db.fetch(
            f"SELECT user_id, {_SUMS} FROM usage WHERE created_at >= $1 AND user_id IS NOT NULL"
            " GROUP BY user_id ORDER BY sum(cost_usd) DESC, count(*) DESC, user_id LIMIT $2",
            since,
            limit,
        )
        return [(row[0], _summary(row[1:])) for row in rows]

    async def purge(self, *, before: float, batch: int = 1000) -> int:
        return await self._db.delete_in_batches("usage", "created_at < $2", before, batch=batch)


class PgChatPrefs:
    """The ``chat_prefs`` table: one row per chat that chose something."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def get(self, chat_id: int) -> ChatPrefs:
        row = await self._db.fetchrow(
            "SELECT model, persona, stream, memory, voice FROM chat_prefs WHERE chat_id = $1", chat_id
        )
        return ChatPrefs() if row is None else ChatPrefs(*row)

    async def put(self, chat_id: int, prefs: ChatPrefs, *, now: float) -> None:
        if prefs == ChatPrefs():
            await self._db.execute("DELETE FROM chat_prefs WHERE chat_id = $1", chat_id)
            return
        await self._db.execute(
            "INSERT INTO chat_prefs (chat_id, model, persona, stream, memory, voice, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (chat_id) DO UPDATE SET model = excluded.model,"
            " persona = excluded.persona, stream = excluded.stream, memory = excluded.memory,"
            " voice = excluded.voice, updated_at = excluded.updated_at",
            chat_id,
            text(prefs.model),
            text(prefs.persona),
            prefs.stream,
            prefs.memory,
            prefs.voice,
            now,
        )


def _summary(row: Sequence[object]) -> UsageSummary:
    # sum() of a bigint column is numeric in PostgreSQL: back to int, as SQLite gives it.
    requests, prompt, completion, audio, cost, images, spoken = row
    return UsageSummary(
        int(requests), int(prompt), int(completion), float(audio), float(cost), int(images), int(spoken)
    )  # type: ignore[arg-type]


class PgRateCounter:
    """The ``rate_hits`` table: per-user and overall message limits that hold across processes.
    A sliding-window counter, as the ``limits`` library's in-memory one that a single process
    uses: the current window's hits plus the previous window's, weighted by how much of it the
    sliding window still covers."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def hit(
        self, limits: Sequence[tuple[str, int]], *, window_s: int, now: float
    ) -> tuple[int, float] | None:
        """Count one message against every ``(key, limit)`` if all have room (atomic across
        processes); else count nothing and return which limit is full (its index) and the
        seconds until its window moves on."""
        if not limits:
            return None
        start = int(now // window_s) * window_s
        covered = 1.0 - (now - start) / window_s  # of the previous window
        keys = sorted(key for key, _ in limits)  # rows are locked in one order: no deadlock
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO rate_hits (key, window_start, hits) SELECT k, $2, 0 FROM unnest($1::text[]) k"
                " ORDER BY k ON CONFLICT DO NOTHING",
                keys,
                start,
            )
            rows = await conn.fetch(
                "SELECT key, window_start, hits FROM rate_hits WHERE key = ANY($1::text[])"
                " AND window_start >= $2 ORDER BY key, window_start FOR UPDATE",
                keys,
                start - window_s,
            )
            counted: dict[str, float] = {}
            for key, window_start, hits in rows:
                counted[key] = counted.get(key, 0.0) + hits * (1.0 if window_start == start else covered)
            for index, (key, limit) in enumerate(limits):
                if counted.get(key, 0.0) + 1 > limit:
                    return index, max(1.0, start + window_s - now)
            await conn.execute(
                "UPDATE rate_hits SET hits = hits + 1 WHERE key = ANY($1::text[]) AND window_start = $2",
                keys,
                start,
            )
            await conn.execute(
                "DELETE FROM rate_hits WHERE key = ANY($1::text[]) AND window_start < $2",
                keys,
                start - window_s,
            )
        return None

    async def purge(self, *, before: float) -> int:
        """Forget the windows that ended before ``before`` (users who stopped writing)."""
        return await self._db.delete_in_batches("rate_hits", "window_start < $2", int(before))
