"""Group commit: concurrent enqueues share one write, against a real SQLite file. Each caller
still gets its own result, only after its job is committed, and its own error."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore.clock import ManualClock
from botcore.errors import StorageUnavailable
from botcore.jobqueue import JobQueue
from botcore.models import Enqueued, NewJob
from botcore.sqlite_db import Database

LONE_SURROGATE = "\ud800"  # SQLite refuses to encode it: a job it cannot store


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """The shared ``queue`` fixture over a database that gives up on a lock quickly."""
    database = await Database.open(tmp_path / "bot.db", busy_timeout_ms=50)
    yield database
    await database.close()


def stored(db: Database) -> list[tuple[int, str, str | None]]:
    """(id, payload, dedup key) of every job, read through a connection of its own: what is
    committed, not what our connection sees."""
    with sqlite3.connect(db.path) as raw:
        rows = raw.execute("SELECT id, payload, dedup_key FROM jobs ORDER BY id").fetchall()
    raw.close()
    return rows


async def settle() -> None:
    """Let every task that can run do so (no I/O is involved)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def one_write(queue: JobQueue, clock: ManualClock, *calls: NewJob | list[NewJob]) -> list:
    """Start the calls together (each moves the clock first: a write stamps its jobs with the
    time it starts) and gather their outcomes, exceptions included."""

    async def call(what: NewJob | list[NewJob]) -> list[Enqueued] | Enqueued:
        clock.advance(1)
        if isinstance(what, list):
            return await queue.enqueue_many(what)
        return await queue.enqueue(
            what.kind, what.payload, dedup_key=what.dedup_key, group_key=what.group_key
        )

    return await asyncio.wait_for(asyncio.gather(*(call(c) for c in calls), return_exceptions=True), 10)


async def test_concurrent_enqueues_share_a_write_and_each_gets_its_own_job(
    queue: JobQueue, db: Database, clock: ManualClock
) -> None:
    committed: list[bool] = []

    async def produce(n: int) -> Enqueued:
        clock.advance(1)
        result = await queue.enqueue("chat", {"n": n}, group_key=f"chat:{n % 3}")
        committed.append(result.job.id in {row[0] for row in stored(db)})  # at once, from outside
        return result

    results = await asyncio.wait_for(asyncio.gather(*(produce(n) for n in range(30))), 10)
    assert committed == [True] * 30
    assert [r.job.payload for r in results] == [{"n": n} for n in range(30)]
    assert all(r.created for r in results)
    assert [r.job.id for r in results] == sorted({r.job.id for r in results})  # distinct, in call order
    assert {r.job.created_at for r in results} == {clock.now()}  # one write carried them all
    assert [await queue.get(r.job.id) for r in results] == [r.job for r in results]
    assert len(stored(db)) == 30


async def test_a_dedup_key_asked_twice_in_one_write_is_stored_once(
    queue: JobQueue, db: Database, clock
) -> None:
    [before] = await queue.enqueue_many([NewJob("chat", {"n": 0}, dedup_key="old")])
    first, again, other, known = await one_write(
        queue,
        clock,
        NewJob("chat", {"n": 1}, dedup_key="k"),
        NewJob("chat", {"n": 2}, dedup_key="k"),
        NewJob("chat", {"n": 3}),
        NewJob("chat", {"n": 4}, dedup_key="old"),
    )
    assert first.created and first.job.created_at == other.job.created_at  # the same write
    assert not again.created and again.job == first.job
    assert not known.created and known.job == before.job
    assert [(payload, key) for _, payload, key in stored(db)] == [
        ('{"n":0}', "old"),
        ('{"n":1}', "k"),
        ('{"n":3}', None),
    ]


async def test_a_job_that_cannot_be_stored_fails_its_caller_alone(
    queue: JobQueue, db: Database, clock: ManualClock
) -> None:
    good, not_json, refused, batch, last = await one_write(
        queue,
        clock,
        NewJob("chat", {"n": 1}),
        NewJob("chat", {"x": object()}),  # json cannot encode it
        NewJob("chat", {"n": 2}, group_key=LONE_SURROGATE),  # SQLite cannot
        [NewJob("chat", {"n": 3}), NewJob("chat", {"n": 4}, dedup_key=LONE_SURROGATE)],
        NewJob("chat", {"n": 5}, dedup_key="k"),
    )
    assert isinstance(not_json, TypeError)
    assert isinstance(refused, UnicodeEncodeError)
    assert isinstance(batch, UnicodeEncodeError)  # its jobs are all stored, or none
    assert good.created and last.created
    assert [payload for _, payload, _ in stored(db)] == ['{"n":1}', '{"n":5}']
    assert await queue.get(good.job.id) == good.job and await queue.get(last.job.id) == last.job
    # The queue still takes work afterwards.
    assert (await queue.enqueue("chat", {"n": 6})).created


async def test_a_cancelled_caller_loses_or_doubles_no_other_job(queue: JobQueue, db: Database) -> None:
    async with db.transaction():  # holds our connection: the first write waits for it
        writing = [asyncio.create_task(queue.enqueue("chat", {"n": n})) for n in (1, 2)]
        await settle()  # their write has begun (it waits for the connection)
        waiting = [asyncio.create_task(queue.enqueue("chat", {"n": n})) for n in (3, 4, 5)]
        await settle()  # these wait for the next write
        writing[0].cancel()
        waiting[1].cancel()
    await asyncio.wait_for(asyncio.gather(*writing, *waiting, return_exceptions=True), 10)
    assert writing[0].cancelled() and waiting[1].cancelled()
    assert [t.result().job.payload for t in (writing[1], waiting[0], waiting[2])] == [
        {"n": 2},
        {"n": 3},
        {"n": 5},
    ]
    # A write that had begun stores its jobs, its cancelled caller's too; a waiting one that
    # was cancelled is never stored. No job is stored twice.
    assert [payload for _, payload, _ in stored(db)] == ['{"n":1}', '{"n":2}', '{"n":3}', '{"n":5}']


async def test_when_the_database_refuses_work_every_caller_learns_it(
    queue: JobQueue, db: Database, clock: ManualClock
) -> None:
    locker = sqlite3.connect(db.path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        outcomes = await one_write(queue, clock, NewJob("chat", {"n": 1}), NewJob("chat", {"n": 2}))
        assert [type(o) for o in outcomes] == [StorageUnavailable, StorageUnavailable]
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    assert stored(db) == []
    assert (await queue.enqueue("chat", {"n": 3})).created


async def test_a_group_larger_than_one_statement_is_still_all_or_nothing(
    queue: JobQueue, db: Database
) -> None:
    def jobs(n: int) -> list[NewJob]:
        # Every third job has a dedup key, and each key is asked again 600 jobs later (in
        # another statement of the same transaction).
        return [NewJob("chat", {"i": i}, dedup_key=f"k{i % 600}" if i % 3 == 0 else None) for i in range(n)]

    with pytest.raises(UnicodeEncodeError):
        await queue.enqueue_many([*jobs(1200), NewJob("chat", {"bad": LONE_SURROGATE})])
    assert stored(db) == []
    out = await queue.enqueue_many(jobs(1200))
    assert [r.created for r in out] == [i < 600 or i % 3 != 0 for i in range(1200)]
    assert all(out[i].job == out[i - 600].job for i in range(600, 1200) if i % 3 == 0)
    created = [r.job for r in out if r.created]
    assert [job.id for job in created] == sorted(job.id for job in created)
    assert [payload for _, payload, _ in stored(db)] == [f'{{"i":{job.payload["i"]}}}' for job in created]
    assert all([await queue.get(job.id) == job for job in created])
