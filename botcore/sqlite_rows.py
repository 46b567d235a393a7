"""The ``jobs`` table's rows in SQLite: its columns, a row read back as a ``Job``, and the
multi-row insert that stores new jobs in one statement. Used by ``sqlite_jobs`` only."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

from botcore.models import Enqueued, Job, NewJob
from botcore.sqlite_db import Params, Row
from botcore.storage import STATES, dump, job_from_row

COLUMNS = (
    "id, kind, payload, dedup_key, group_key, state, attempts, max_attempts, run_at, created_at,"
    " updated_at, lease_token, lease_until, deferred_since, finished_at, last_error, checkpoint"
)
# 11 variables a row: 500 rows stay far below SQLite's limit of 32,766 (3.32 and later).
ROWS_PER_INSERT = 500
SELECT = f"SELECT {COLUMNS} FROM jobs"


Run = Callable[[str, Params], Awaitable[list[Row]]]  # Database.fetchall, or a Transaction's


@lru_cache(maxsize=128)  # as many as sqlite3 keeps prepared
def _insert_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * rows)
    return (
        "INSERT INTO jobs (kind, payload, dedup_key, group_key, state, max_attempts, run_at,"
        f" created_at, updated_at, finished_at, last_error) VALUES {values}"
        " ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key"
    )


def _insert_row(new: NewJob, max_attempts: int, now: float) -> tuple[Any, ...]:
    """A new job's values, in _insert_sql's column order."""
    dead = new.dead_reason is not None
    return (
        new.kind, dump(new.payload), new.dedup_key, new.group_key, "dead" if dead else "queued",
        new.max_attempts or max_attempts, now + max(0.0, new.delay_s), now, now,
        now if dead else None, new.dead_reason,
    )  # fmt: skip


def _new_job(job_id: int, row: tuple[Any, ...]) -> Job:
    """The job just stored from ``row`` (see _insert_row), as ``job_from_row`` would read it back."""
    kind, payload, dedup_key, group_key, state, max_attempts, run_at, now, _, finished_at, error = row
    return Job(
        job_id, kind, json.loads(payload), dedup_key, group_key, STATES[state], 0, max_attempts,
        run_at, now, now, None, None, None, finished_at, error, None,
    )  # fmt: skip


async def insert_jobs(run: Run, new_jobs: Sequence[NewJob], max_attempts: int, now: float) -> list[Enqueued]:
    """Store up to ROWS_PER_INSERT jobs with one statement; a job whose dedup key exists comes
    back as that job, not stored again. Results in the order asked."""
    if not new_jobs:
        return []
    rows = [_insert_row(new, max_attempts, now) for new in new_jobs]
    # Only ids come back: the rest of a new job is what was just written. SQLite numbers one
    # statement's rows in VALUES order; RETURNING has no order of its own.
    stored = iter(sorted(await run(_insert_sql(len(rows)), [v for row in rows for v in row])))
    head = next(stored, None)
    out: list[Enqueued | None] = []
    taken: dict[str | None, list[int]] = {}  # a dedup key already stored: where it was asked
    for new, row in zip(new_jobs, rows, strict=True):
        if head is not None and head[1] == new.dedup_key:
            out.append(Enqueued(_new_job(head[0], row), created=True))
            head = next(stored, None)
        else:
            taken.setdefault(new.dedup_key, []).append(len(out))
            out.append(None)
    if taken:
        marks = ",".join("?" * len(taken))
        found = {
            r[3]: job_from_row(r) for r in await run(f"{SELECT} WHERE dedup_key IN ({marks})", list(taken))
        }
        # Purged between the two statements (never inside a transaction): store it again.
        gone = [i for key, at in taken.items() if key not in found for i in at]
        again = await insert_jobs(run, [new_jobs[i] for i in gone], max_attempts, now)
        for i, enqueued in zip(gone, again, strict=True):
            out[i] = enqueued
        for key, at in taken.items():
            for i in at:
                if out[i] is None:  # not stored again just now
                    out[i] = Enqueued(found[key], created=False)
    return out  # type: ignore[return-value]  # every None is filled in
