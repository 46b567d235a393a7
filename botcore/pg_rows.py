"""The ``jobs`` table's rows in PostgreSQL: its columns, the statements that claim, recover and
insert them, a row read back as a ``Job``, and new jobs as the insert's columns. Used by
``pg_jobs`` only."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botcore.models import Job, NewJob
from botcore.pg_db import JOBS_CHANNEL, text
from botcore.storage import STATES, dump

COLUMNS = (
    "id, kind, payload, dedup_key, group_key, state, attempts, max_attempts, run_at, created_at,"
    " updated_at, lease_token, lease_until, deferred_since, finished_at, last_error, checkpoint"
)
# A job is ready when due and no older job of its group is still queued or running.
UNBLOCKED = """(j.group_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM jobs o WHERE o.group_key = j.group_key
    AND o.state IN ('queued', 'running') AND o.id < j.id))"""
FENCED = "state = 'running' AND (id, lease_token) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))"
NEW_TOKEN = "md5(random()::text || clock_timestamp()::text)"
# Finish the leased jobs and claim ready ones, in one statement: both CTEs read the table as it
# was, so a finish frees its group for the next statement only (as in SQLite).
FINISH_AND_CLAIM = f"""
WITH finished AS (
    UPDATE jobs SET state = 'done', lease_token = NULL, lease_until = NULL, finished_at = $3,
                    last_error = NULL, updated_at = $3
    WHERE {FENCED}
    RETURNING id
), picked AS (
    SELECT p.id FROM unnest($4::text[], $5::int[]) AS w(kind, n)
    CROSS JOIN LATERAL (
        SELECT j.id, j.run_at FROM jobs j
        WHERE j.state = 'queued' AND j.kind = w.kind AND j.run_at <= $3 AND {UNBLOCKED}
        ORDER BY j.run_at, j.id LIMIT w.n
        FOR UPDATE OF j SKIP LOCKED
    ) p
    ORDER BY p.run_at, p.id LIMIT $6
), claimed AS (
    UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = {NEW_TOKEN},
                    lease_until = $7, updated_at = $3
    WHERE id IN (SELECT id FROM picked)
    RETURNING {COLUMNS}
)
SELECT NULL::bigint AS finished, claimed.* FROM claimed
UNION ALL
SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL FROM finished
"""
RECOVER = f"""
UPDATE jobs SET
    state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN attempts >= max_attempts THEN $1::float8 END,
    lease_token = NULL, lease_until = NULL, last_error = $3, updated_at = $1::float8
WHERE id IN (SELECT id FROM jobs WHERE state = 'running' AND lease_until <= $2 FOR UPDATE SKIP LOCKED)
RETURNING {COLUMNS}
"""
# One statement, so one round trip and one commit: the groups' insert locks first (the insert
# reads its rows through them, so no id is drawn before they are held; taken in sorted order, so
# two inserts never wait on each other in a circle), then the rows, then a notification to every
# process's idle workers if a job to run was stored (sent when the statement commits).
INSERT = f"""
WITH locked AS (
    SELECT count(pg_advisory_xact_lock(hashtextextended('bot-group:' || g, 0))) AS n
    FROM (SELECT DISTINCT g FROM unnest($11::text[]) AS g ORDER BY g) AS groups
), stored AS (
    INSERT INTO jobs (kind, payload, dedup_key, group_key, state, max_attempts, run_at, created_at,
                      updated_at, finished_at, last_error)
    SELECT kind, payload, dedup_key, group_key, state, max_attempts, run_at, $10, $10, finished_at, error
    FROM locked, unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                        $7::float8[], $8::float8[], $9::text[])
         WITH ORDINALITY AS n(kind, payload, dedup_key, group_key, state, max_attempts, run_at,
                             finished_at, error, position)
    WHERE locked.n >= 0
    ORDER BY position
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, dedup_key, state
)
SELECT id, dedup_key FROM stored
UNION ALL
SELECT NULL, NULL
FROM (SELECT pg_notify('{JOBS_CHANNEL}', '') FROM stored WHERE state = 'queued' LIMIT 1) AS woken
"""


def insert_columns(new_jobs: Sequence[NewJob], max_attempts: int, now: float) -> list[list[Any]]:
    """The new jobs as ``INSERT``'s nine arrays, one per column, in the batch's order."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for new in new_jobs:
        dead = new.dead_reason is not None
        values = (
            new.kind, dump(new.payload), new.dedup_key, new.group_key, "dead" if dead else "queued",
            new.max_attempts or max_attempts, now + max(0.0, new.delay_s), now if dead else None,
            text(new.dead_reason),
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def new_job(job_id: int, columns: list[list[Any]], i: int, now: float) -> Job:
    """The ``i``-th job of ``insert_columns`` as stored under ``job_id``, as a read would give it."""
    kind, payload, dedup_key, group_key, state, max_attempts, run_at, finished_at, error = (
        column[i] for column in columns
    )
    return Job(
        job_id, kind, json.loads(payload), dedup_key, group_key, STATES[state], 0, max_attempts,
        run_at, now, now, None, None, None, finished_at, error, None,
    )  # fmt: skip
