"""All SQL of the ``jobs`` table in PostgreSQL: the ``storage.JobStore`` protocol, safe with any
number of processes working the same table.

How several processes keep each chat's order: a job may be claimed only when no older job of
its group is queued or running, and claims lock rows with ``FOR UPDATE SKIP LOCKED``. That holds
only if a group's ids follow the order its jobs became visible; an identity is drawn at insert,
not at commit, so an insert takes a transaction-scoped advisory lock per group first: two
processes storing messages of one chat store them one after the other."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from botcore.models import Enqueued, Job, NewJob, PurgeResult, QueueStats
from botcore.pg_db import JOBS_CHANNEL, PgDatabase, text
from botcore.pg_rows import (
    COLUMNS,
    FENCED,
    FINISH_AND_CLAIM,
    INSERT,
    RECOVER,
    insert_columns,
    new_job,
)
from botcore.storage import dump, job_from_row


def _leases(leases: Sequence[tuple[int, str]]) -> tuple[list[int], list[str]]:
    return [job_id for job_id, _ in leases], [token for _, token in leases]


class PgJobStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def insert_many(
        self, new_jobs: Sequence[NewJob], *, max_attempts: int, now: float
    ) -> list[Enqueued]:
        """All or nothing: one statement (``INSERT``). A job whose dedup key exists is read
        back afterwards; should it have been purged meanwhile, it is stored again."""
        if not new_jobs:
            return []
        columns = insert_columns(new_jobs, max_attempts, now)
        groups = [new.group_key for new in new_jobs if new.group_key is not None]
        stored = [row for row in await self._db.fetch(INSERT, *columns, now, groups) if row[0] is not None]
        created = {row[1]: row[0] for row in stored if row[1] is not None}
        plain = iter(sorted(row[0] for row in stored if row[1] is None))
        keys = [n.dedup_key for n in new_jobs if n.dedup_key is not None and n.dedup_key not in created]
        found: dict[str, Enqueued] = {}
        if keys:
            rows = await self._db.fetch(f"SELECT {COLUMNS} FROM jobs WHERE dedup_key = ANY($1::text[])", keys)
            found = {row[3]: Enqueued(job_from_row(row), created=False) for row in rows}
            gone = [new for new in new_jobs if new.dedup_key in keys and new.dedup_key not in found]
            if gone:  # purged between the two statements: stored afresh
                again = await self.insert_many(gone, max_attempts=max_attempts, now=now)
                found |= {e.job.dedup_key: e for e in again if e.job.dedup_key is not None}
        out: list[Enqueued] = []
        mine: dict[str, Job] = {}  # a dedup key this call stored: later asks in the batch get it
        for i, new in enumerate(new_jobs):
            key = new.dedup_key
            if key is not None and key in mine:
                out.append(Enqueued(mine[key], created=False))
            elif key is None or key in created:
                job = new_job(created[key] if key is not None else next(plain), columns, i, now)
                if key is not None:
                    mine[key] = job
                out.append(Enqueued(job, created=True))
            else:
                out.append(found[key])
        return out

    async def finish_and_claim(
        self,
        leases: Sequence[tuple[int, str]],
        wants: Mapping[str, int],
        *,
        limit: int,
        now: float,
        lease_s: float,
    ) -> tuple[set[int], list[Job]]:
        wants = {kind: n for kind, n in wants.items() if n > 0}
        if not wants or limit <= 0:
            wants, limit = {}, 0
        if not leases and not wants:
            return set(), []
        ids, tokens = _leases(leases)
        rows = await self._db.fetch(
            FINISH_AND_CLAIM, ids, tokens, now, list(wants), list(wants.values()), limit, now + lease_s
        )
        finished: set[int] = set()
        claimed: list[Job] = []
        for row in rows:
            if row[0] is not None:
                finished.add(row[0])
            else:
                claimed.append(job_from_row(row[1:]))
        claimed.sort(key=lambda j: (j.run_at, j.id))
        return finished, claimed

    async def next_run_at(self, kinds: Iterable[str], *, after: float) -> float | None:
        kinds = list(kinds)
        if not kinds:
            return None
        row = await self._db.fetchrow(
            "SELECT min(r) FROM unnest($1::text[]) AS k(kind) CROSS JOIN LATERAL ("
            "SELECT run_at AS r FROM jobs WHERE state = 'queued' AND kind = k.kind AND run_at > $2"
            " ORDER BY run_at LIMIT 1) x",
            kinds,
            after,
        )
        return None if row is None else row[0]

    async def renew(self, leases: Sequence[tuple[int, str]], *, lease_until: float, now: float) -> set[int]:
        if not leases:
            return set()
        rows = await self._db.fetch(
            f"UPDATE jobs SET lease_until = $3, updated_at = $4 WHERE {FENCED} RETURNING id",
            *_leases(leases),
            lease_until,
            now,
        )
        return {r[0] for r in rows}

    async def reschedule(
        self, job_id: int, token: str, *, run_at: float, error: str, now: float, deferred: bool
    ) -> Job | None:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"""UPDATE jobs SET state = 'queued', run_at = $1, last_error = $2,
                       lease_token = NULL, lease_until = NULL, updated_at = $3,
                       attempts = attempts - $4::int,
                       deferred_since = CASE WHEN $4::int = 1 THEN coalesce(deferred_since, $3) END
                   WHERE id = $5 AND lease_token = $6 AND state = 'running'
                   RETURNING {COLUMNS}""",
                run_at,
                text(error),
                now,
                int(deferred),
                job_id,
                token,
            )
            if row is None:
                return None
            job = job_from_row(row)
            if job.group_key is not None:
                await conn.execute(
                    "UPDATE jobs SET run_at = $1 WHERE group_key = $2 AND state = 'queued'"
                    " AND id > $3 AND run_at < $1",
                    run_at,
                    job.group_key,
                    job_id,
                )
        return job

    async def bury(self, job_id: int, token: str, *, error: str, now: float) -> Job | None:
        row = await self._db.fetchrow(
            f"""UPDATE jobs SET state = 'dead', finished_at = $1, updated_at = $1, last_error = $2,
                   lease_token = NULL, lease_until = NULL
               WHERE id = $3 AND lease_token = $4 AND state = 'running'
               RETURNING {COLUMNS}""",
            now,
            text(error),
            job_id,
            token,
        )
        return None if row is None else job_from_row(row)

    async def release_many(self, leases: Sequence[tuple[int, str]], *, now: float) -> int:
        if not leases:
            return 0
        rows = await self._db.fetch(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_token = NULL,"
            f" lease_until = NULL, updated_at = $3 WHERE {FENCED} RETURNING id",
            *_leases(leases),
            now,
        )
        if rows:
            await self._db.execute("SELECT pg_notify($1, '')", JOBS_CHANNEL)
        return len(rows)

    async def recover(self, *, now: float, expired_before: float, error: str) -> list[Job]:
        rows = await self._db.fetch(RECOVER, now, expired_before, text(error))
        return [job_from_row(r) for r in rows]

    async def save_checkpoint(self, job_id: int, token: str, data: Mapping[str, Any], *, now: float) -> bool:
        row = await self._db.fetchrow(
            "UPDATE jobs SET checkpoint = $1, updated_at = $2, deferred_since = NULL"
            " WHERE id = $3 AND lease_token = $4 AND state = 'running' RETURNING id",
            dump(data),
            now,
            job_id,
            token,
        )
        return row is not None

    async def by_dedup_key(self, key: str) -> Job | None:
        row = await self._db.fetchrow(f"SELECT {COLUMNS} FROM jobs WHERE dedup_key = $1", key)
        return None if row is None else job_from_row(row)

    async def get(self, job_id: int) -> Job | None:
        row = await self._db.fetchrow(f"SELECT {COLUMNS} FROM jobs WHERE id = $1", job_id)
        return None if row is None else job_from_row(row)

    async def queued_in_group(self, group_key: str, kind: str, *, limit: int = 100) -> list[Job]:
        rows = await self._db.fetch(
            f"SELECT {COLUMNS} FROM jobs WHERE group_key = $1 AND state = 'queued' AND kind = $2"
            " ORDER BY id LIMIT $3",
            group_key,
            kind,
            limit,
        )
        return [job_from_row(row) for row in rows]

    async def latest_dead(self, limit: int) -> list[Job]:
        rows = await self._db.fetch(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [job_from_row(row) for row in rows]

    async def revive(self, job_id: int, *, now: float) -> Job | None:
        async with self._db.transaction() as conn:
            # The group's insert lock before the row's: the order every insert takes them in.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('bot-group:' || group_key, 0))"
                " FROM jobs WHERE id = $1 AND state = 'dead' AND group_key IS NOT NULL",
                job_id,
            )
            old = await conn.fetchrow(
                "DELETE FROM jobs WHERE id = $1 AND state = 'dead'"
                " RETURNING kind, payload, dedup_key, group_key, max_attempts, checkpoint",
                job_id,
            )
            if old is None:
                return None
            row = await conn.fetchrow(
                f"""INSERT INTO jobs (kind, payload, dedup_key, group_key, state, max_attempts, run_at,
                                      created_at, updated_at, checkpoint)
                    VALUES ($1, $2, $3, $4, 'queued', $5, $6, $6, $6, $7) RETURNING {COLUMNS}""",
                old["kind"],
                old["payload"],
                old["dedup_key"],
                old["group_key"],
                old["max_attempts"],
                now,
                old["checkpoint"],
            )
            await conn.execute("SELECT pg_notify($1, '')", JOBS_CHANNEL)
        return job_from_row(row)

    async def stats(self, *, now: float) -> QueueStats:
        rows = await self._db.fetch("SELECT state, kind, count(*) FROM jobs GROUP BY state, kind")
        oldest = await self._db.fetchrow("SELECT min(created_at) FROM jobs WHERE state = 'queued'")
        age = None if oldest is None or oldest[0] is None else max(0.0, now - oldest[0])
        return QueueStats(counts={(s, k): n for s, k, n in rows}, oldest_waiting_age_s=age)

    async def purge(self, *, done_before: float, dead_before: float, batch: int = 1000) -> PurgeResult:
        removed = {}
        for state, before in (("done", done_before), ("dead", dead_before)):
            removed[state] = await self._db.delete_in_batches(
                "jobs", "state = $2 AND finished_at < $3", state, before, batch=batch
            )
        return PurgeResult(done=removed["done"], dead=removed["dead"])
