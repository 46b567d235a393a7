"""All SQL of the ``usage`` table: one row per billed LLM or transcription call (who, which chat,
what kind, model, tokens, audio seconds, cost), recorded once per billing key however often the
job runs, and the sums that budgets, ``/usage`` and ``/status`` read. Periods are UTC days and
months."""

from __future__ import annotations

from datetime import UTC, datetime

from botcore.clock import DAY_S
from botcore.db import Database
from botcore.models import Usage, UsageSummary

_SUMS = (
    "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
    " coalesce(sum(audio_seconds), 0), coalesce(sum(cost_usd), 0)"
)


def day_start(now: float) -> float:
    return now - now % DAY_S


def utc_date(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


class UsageStore:
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
            " prompt_tokens, completion_tokens, audio_seconds, cost_usd)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
            " GROUP BY user_id ORDER BY sum(cost_usd) DESC, count(*) DESC LIMIT ?",
            (since, limit),
        )
        return [(row[0], UsageSummary(*row[1:])) for row in rows]

    async def purge(self, *, before: float, batch: int = 1000) -> int:
        """Delete usage rows older than ``before``, in small batches."""
        return await self._db.delete_in_batches("usage", "created_at < ?", (before,), batch=batch)
