"""All SQL of the ``jobs`` table in SQLite: the ``storage.JobStore`` protocol. Rows become
``Job`` objects here; nothing above sees SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from botcore.models import Enqueued, Job, NewJob, PurgeResult, QueueStats
from botcore.sqlite_db import Database
from botcore.sqlite_rows import COLUMNS, ROWS_PER_INSERT, SELECT, dump, insert_jobs, job_from_row

# A job is ready when due and no older job of its group is still queued or running. Each probe's
# "state = …" term repeats a partial index's condition, which is what lets SQLite use it.
_UNBLOCKED = """(j.group_key IS NULL OR (
    NOT EXISTS (SELECT 1 FROM jobs o WHERE o.group_key = j.group_key
                AND o.state = 'queued' AND o.id < j.id)
    AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.group_key = j.group_key
                    AND o.state = 'running' AND o.id < j.id)))"""
_BY_DEDUP = f"{SELECT} WHERE dedup_key = ?"
# A job that was running when its process died, or whose lease ran out: its attempt is already
# counted, so one that keeps killing the process ends dead instead of looping forever.
_RECOVER = f"""
UPDATE jobs SET
    state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN attempts >= max_attempts THEN :now END,
    lease_token = NULL, lease_until = NULL, last_error = :error, updated_at = :now
WHERE state = 'running' AND lease_until <= :expired_before
RETURNING {COLUMNS}
"""


def _fenced(leases: Sequence[tuple[int, str]]) -> tuple[str, list[Any]]:
    """WHERE fragment matching each (id, lease_token) pair through the primary key.
    (A row-value ``(id, token) IN (VALUES …)`` would scan the table in SQLite.)"""
    marks = ",".join("?" * len(leases))
    cases = " ".join("WHEN ? THEN ?" for _ in leases)
    params: list[Any] = [job_id for job_id, _ in leases]
    for job_id, token in leases:
        params += [job_id, token]
    return f"state = 'running' AND id IN ({marks}) AND lease_token = CASE id {cases} END", params


class SqliteJobStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many(
        self, new_jobs: Sequence[NewJob], *, max_attempts: int, now: float
    ) -> list[Enqueued]:
        """All or nothing. Up to 500 jobs are one statement, atomic by itself: one round trip and
        one commit. A job whose dedup key exists is read back after that commit (should that read
        fail, the new jobs stay stored: a retry finds them by their dedup keys)."""
        if len(new_jobs) <= ROWS_PER_INSERT:
            return await insert_jobs(self._db.fetchall, new_jobs, max_attempts, now)
        out: list[Enqueued] = []
        async with self._db.transaction() as tx:
            for start in range(0, len(new_jobs), ROWS_PER_INSERT):
                chunk = new_jobs[start : start + ROWS_PER_INSERT]
                out += await insert_jobs(tx.fetchall, chunk, max_attempts, now)
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
        """In one atomic statement (one commit): mark the leased jobs done, and lease up to
        ``wants[kind]`` ready jobs of each kind, ``limit`` in all, oldest first. A claim counts
        an attempt and gets a fresh lease token. Returns the ids whose lease still held (the
        others were fenced) and the claimed jobs. A finish frees its group only for the next
        statement: the claim sees the rows as they were before this one."""
        wants = {kind: n for kind, n in wants.items() if n > 0}
        claiming = bool(wants) and limit > 0
        if not leases and not claiming:
            return set(), []
        where, params = [], []
        if leases:
            fenced, fence_params = _fenced(leases)
            where.append(f"({fenced})")
            params += fence_params
        if claiming:
            picks = []
            for kind, n in wants.items():
                picks.append(
                    "SELECT id, run_at FROM (SELECT j.id, j.run_at FROM jobs j WHERE j.state = 'queued'"
                    f" AND j.kind = ? AND j.run_at <= ? AND {_UNBLOCKED} ORDER BY j.run_at, j.id LIMIT ?)"
                )
                params += [kind, now, n]
            where.append(f"id IN (SELECT id FROM ({' UNION ALL '.join(picks)}) ORDER BY run_at, id LIMIT ?)")
            params.append(limit)
        # SET expressions read the row as it was: 'running' rows here are the ones being finished.
        sql = f"""
        UPDATE jobs SET
            state       = CASE WHEN state = 'running' THEN 'done' ELSE 'running' END,
            attempts    = attempts + (state = 'queued'),
            lease_token = CASE WHEN state = 'running' THEN NULL ELSE lower(hex(randomblob(8))) END,
            lease_until = CASE WHEN state = 'running' THEN NULL ELSE ? END,
            finished_at = CASE WHEN state = 'running' THEN ? END,
            last_error  = CASE WHEN state = 'running' THEN NULL ELSE last_error END,
            updated_at  = ?
        WHERE {" OR ".join(where)}
        RETURNING {COLUMNS}
        """
        rows = await self._db.fetchall(sql, [now + lease_s, now, now, *params])
        finished: set[int] = set()
        claimed: list[Job] = []
        for row in rows:
            if row[5] == "done":
                finished.add(row[0])
            else:
                claimed.append(job_from_row(row))
        claimed.sort(key=lambda j: (j.run_at, j.id))
        return finished, claimed

    async def next_run_at(self, kinds: Iterable[str], *, after: float) -> float | None:
        """The earliest ``run_at`` later than ``after`` among queued jobs of these kinds: when the
        worker should look again if nothing else wakes it. (Jobs due by ``after`` were just
        offered to ``claim``; the ones it left are blocked by their group and wait for a finish.)"""
        kinds = list(kinds)
        if not kinds:
            return None
        one = (
            "SELECT (SELECT run_at FROM jobs WHERE state = 'queued' AND kind = ? AND run_at > ?"
            " ORDER BY run_at LIMIT 1) AS r"
        )
        params = [p for kind in kinds for p in (kind, after)]
        row = await self._db.fetchone(
            f"SELECT min(r) FROM ({' UNION ALL '.join([one] * len(kinds))})", params
        )
        return None if row is None else row[0]

    async def renew(self, leases: Sequence[tuple[int, str]], *, lease_until: float, now: float) -> set[int]:
        if not leases:
            return set()
        where, params = _fenced(leases)
        rows = await self._db.fetchall(
            f"UPDATE jobs SET lease_until = ?, updated_at = ? WHERE {where} RETURNING id",
            [lease_until, now, *params],
        )
        return {r[0] for r in rows}

    async def reschedule(
        self, job_id: int, token: str, *, run_at: float, error: str, now: float, deferred: bool
    ) -> Job | None:
        """Back to 'queued' for a later try. ``deferred`` gives the attempt back and starts the
        outage clock (if not already running); a counted retry stops it, so a later outage is
        timed afresh. None when the lease was lost."""
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                f"""UPDATE jobs SET state = 'queued', run_at = :run_at, last_error = :error,
                       lease_token = NULL, lease_until = NULL, updated_at = :now,
                       attempts = attempts - :deferred,
                       deferred_since = CASE WHEN :deferred THEN coalesce(deferred_since, :now)
                                             END
                   WHERE id = :id AND lease_token = :token AND state = 'running'
                   RETURNING {COLUMNS}""",
                dict(run_at=run_at, error=error, now=now, deferred=int(deferred), id=job_id, token=token),
            )
            if not rows:
                return None
            job = job_from_row(rows[0])
            if job.group_key is not None:
                # The rest of the group waits at least as long, so while this job sleeps they are
                # not "due" and no claim has to look at them and skip them one by one.
                await tx.fetchall(
                    """UPDATE jobs SET run_at = :run_at
                       WHERE group_key = :group_key AND state = 'queued' AND id > :id
                         AND run_at < :run_at""",
                    {"run_at": run_at, "group_key": job.group_key, "id": job_id},
                )
        return job

    async def bury(self, job_id: int, token: str, *, error: str, now: float) -> Job | None:
        rows = await self._db.fetchall(
            f"""UPDATE jobs SET state = 'dead', finished_at = :now, updated_at = :now,
                   last_error = :error, lease_token = NULL, lease_until = NULL
               WHERE id = :id AND lease_token = :token AND state = 'running'
               RETURNING {COLUMNS}""",
            {"now": now, "error": error, "id": job_id, "token": token},
        )
        return job_from_row(rows[0]) if rows else None

    async def release_many(self, leases: Sequence[tuple[int, str]], *, now: float) -> int:
        """Hand leased jobs back unfinished, giving back their attempt (graceful shutdown)."""
        if not leases:
            return 0
        where, params = _fenced(leases)
        rows = await self._db.fetchall(
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_token = NULL,"
            f" lease_until = NULL, updated_at = ? WHERE {where} RETURNING id",
            [now, *params],
        )
        return len(rows)

    async def recover(self, *, now: float, expired_before: float, error: str) -> list[Job]:
        """Requeue (or bury, when out of attempts) running jobs whose lease ends before
        ``expired_before``. Returns the affected jobs in their new state."""
        rows = await self._db.fetchall(
            _RECOVER, {"now": now, "expired_before": expired_before, "error": error}
        )
        return [job_from_row(r) for r in rows]

    async def save_checkpoint(self, job_id: int, token: str, data: Mapping[str, Any], *, now: float) -> bool:
        rows = await self._db.fetchall(
            # Progress restarts the outage clock: waiting for the LLM and then for Telegram are
            # two waits, each allowed OUTAGE_MAX_WAIT_S, not one shared budget.
            "UPDATE jobs SET checkpoint = ?, updated_at = ?, deferred_since = NULL"
            " WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING id",
            (dump(data), now, job_id, token),
        )
        return bool(rows)

    async def by_dedup_key(self, key: str) -> Job | None:
        row = await self._db.fetchone(_BY_DEDUP, (key,))
        return None if row is None else job_from_row(row)

    async def get(self, job_id: int) -> Job | None:
        row = await self._db.fetchone(f"{SELECT} WHERE id = ?", (job_id,))
        return None if row is None else job_from_row(row)

    async def queued_in_group(self, group_key: str, kind: str, *, limit: int = 100) -> list[Job]:
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM jobs WHERE group_key = ? AND state = 'queued' AND kind = ?"
            " ORDER BY id LIMIT ?",
            (group_key, kind, limit),
        )
        return [job_from_row(row) for row in rows]

    async def latest_dead(self, limit: int) -> list[Job]:
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM jobs WHERE state = 'dead' ORDER BY finished_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [job_from_row(row) for row in rows]

    async def revive(self, job_id: int, *, now: float) -> Job | None:
        """A dead job back to the queue with fresh attempts, as a new row at the end of its
        chat's order (a new id, so the claim's ordering rule holds), the dead row removed. Its
        checkpoint (the progress it had made) is kept. None if there is no such dead job."""
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                "DELETE FROM jobs WHERE id = ? AND state = 'dead'"
                " RETURNING kind, payload, dedup_key, group_key, max_attempts, checkpoint",
                (job_id,),
            )
            if not rows:
                return None
            kind, payload, dedup_key, group_key, max_attempts, checkpoint = rows[0]
            [row] = await tx.fetchall(
                f"""INSERT INTO jobs (kind, payload, dedup_key, group_key, state, max_attempts, run_at,
                                      created_at, updated_at, checkpoint)
                    VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?) RETURNING {COLUMNS}""",
                (kind, payload, dedup_key, group_key, max_attempts, now, now, now, checkpoint),
            )
        return job_from_row(row)

    async def stats(self, *, now: float) -> QueueStats:
        rows = await self._db.fetchall("SELECT state, kind, count(*) FROM jobs GROUP BY state, kind")
        oldest = await self._db.fetchone("SELECT min(created_at) FROM jobs WHERE state = 'queued'")
        age = None if oldest is None or oldest[0] is None else max(0.0, now - oldest[0])
        return QueueStats(counts={(s, k): n for s, k, n in rows}, oldest_waiting_age_s=age)

    async def purge(self, *, done_before: float, dead_before: float, batch: int = 1000) -> PurgeResult:
        """Delete finished jobs past their retention, in small batches so no write waits long."""
        removed = {}
        for state, before in (("done", done_before), ("dead", dead_before)):
            removed[state] = await self._db.delete_in_batches(
                "jobs", "state = ? AND finished_at < ?", (state, before), batch=batch
            )
        return PurgeResult(done=removed["done"], dead=removed["dead"])
