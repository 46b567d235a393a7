"""The worker against a real SQLite file. The manual clock never moves unless a test moves it,
so anything that happens without ``advance`` was woken by an event, not by polling."""

import asyncio
import random
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

from loguru import logger

from botcore.clock import ManualClock
from botcore.errors import PermanentError, TransientError
from botcore.jobqueue import JobQueue
from botcore.models import Job, JobState
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.worker import JobKind, Worker

from .conftest import eventually, running


async def test_enqueue_wakes_an_idle_worker_without_polling(queue: JobQueue) -> None:
    seen: list[int] = []

    async def run(job: Job) -> None:
        seen.append(job.payload["n"])

    worker = Worker(queue, {"chat": JobKind(run)}, idle_poll_s=3600)
    async with running(worker):
        await asyncio.sleep(0.05)  # let it go idle
        for n in range(3):
            await queue.enqueue("chat", {"n": n})
            await eventually(lambda n=n: n in seen, what=f"job {n} to run")
    assert seen == [0, 1, 2]
    assert (await queue.stats()).by_state() == {"done": 3}


async def test_retries_follow_the_backoff_schedule(queue: JobQueue, clock: ManualClock) -> None:
    runs: list[tuple[int, float]] = []

    async def flaky(job: Job) -> None:
        runs.append((job.attempts, clock.now()))
        if job.attempts < 4:
            raise TransientError("upstream timeout")

    worker = Worker(queue, {"chat": JobKind(flaky)})
    async with running(worker):
        job_id = (await queue.enqueue("chat", {})).job.id
        for attempt, base in ((1, 2), (2, 4), (3, 8)):
            await eventually(lambda a=attempt: len(runs) == a, what=f"attempt {attempt}")
            await eventually(lambda: worker.running == 0, what="failure recorded")
            job = await queue.get(job_id)
            delay = job.run_at - runs[-1][1]
            assert base <= delay <= base * 1.1
            clock.advance(delay - 0.05)
            await asyncio.sleep(0.05)
            assert len(runs) == attempt  # not a moment early
            clock.advance(0.1)
        await eventually(lambda: len(runs) == 4, what="the fourth attempt")
        await eventually(lambda: worker.running == 0, what="completion")
    assert (await queue.get(job_id)).state is JobState.DONE


async def test_dead_jobs_reach_the_on_dead_hook(queue: JobQueue) -> None:
    told: list[Job] = []
    errors: list[BaseException | None] = []

    async def bad(job: Job) -> None:
        raise PermanentError("undecodable audio")

    async def on_dead(job: Job, exc: BaseException | None) -> None:
        told.append(job)
        errors.append(exc)

    worker = Worker(queue, {"voice": JobKind(bad, on_dead=on_dead)})
    async with running(worker):
        await queue.enqueue("voice", {"file_id": "x"})
        await eventually(lambda: told, what="on_dead")
    assert told[0].state is JobState.DEAD and told[0].last_error == "PermanentError: undecodable audio"
    assert isinstance(errors[0], PermanentError)  # the hook sees the error that ended the job


async def test_per_group_order_under_concurrency(queue: JobQueue) -> None:
    rng = random.Random(3)
    active: Counter[str] = Counter()
    order: dict[str, list[int]] = defaultdict(list)
    overlap: list[str] = []
    max_parallel = 0

    async def run(job: Job) -> None:
        nonlocal max_parallel
        group = job.group_key or ""
        active[group] += 1
        if active[group] > 1:
            overlap.append(group)
        max_parallel = max(max_parallel, sum(active.values()))
        order[group].append(job.payload["n"])
        await asyncio.sleep(rng.uniform(0, 0.003))
        if job.payload["n"] % 7 == 3 and job.attempts == 1:
            active[group] -= 1
            raise TransientError("once")  # a retry must not let later jobs of the group overtake
        active[group] -= 1

    clock = queue.clock
    worker = Worker(queue, {"chat": JobKind(run)}, concurrency=8)
    async with running(worker):
        for n in range(20):
            for g in "ABCDE":
                await queue.enqueue("chat", {"n": n}, group_key=f"chat:{g}")

        async def drive() -> None:  # move time on so the retries come due
            while sum(len(v) for v in order.values()) < 100 + 5 * 3:
                assert isinstance(clock, ManualClock)
                clock.advance(1)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(drive(), 30)
        await eventually(lambda: worker.running == 0)
    assert overlap == []
    assert max_parallel > 1
    retried = [n for n in range(20) if n % 7 == 3]
    expected = sorted(list(range(20)) + retried)  # each retried job runs again before the next
    for g in "ABCDE":
        assert order[f"chat:{g}"] == expected
    assert (await queue.stats()).by_state() == {"done": 100}


async def test_per_kind_concurrency_limit(queue: JobQueue) -> None:
    active: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    done: list[str] = []
    release_voice = asyncio.Event()

    async def run(job: Job) -> None:
        active[job.kind] += 1
        peak[job.kind] = max(peak[job.kind], active[job.kind])
        if job.kind == "voice":
            await release_voice.wait()
        active[job.kind] -= 1
        done.append(job.kind)

    worker = Worker(queue, {"voice": JobKind(run, concurrency=3), "chat": JobKind(run)}, concurrency=8)
    async with running(worker):
        for i in range(10):
            await queue.enqueue("voice", {"i": i})
        await eventually(lambda: active["voice"] == 3, what="three transcriptions")
        await queue.enqueue("chat", {})  # chat is not stuck behind the transcription backlog
        await eventually(lambda: "chat" in done, what="the chat job")
        release_voice.set()
        await eventually(lambda: done.count("voice") == 10, what="all voice jobs")
    assert peak["voice"] == 3


async def test_graceful_shutdown_finishes_short_jobs_and_hands_back_the_rest(queue: JobQueue) -> None:
    started: list[str] = []
    finish_short = asyncio.Event()

    async def run(job: Job) -> None:
        started.append(job.payload["name"])
        if job.payload["name"] == "short":
            await finish_short.wait()
        else:
            await asyncio.Event().wait()  # never finishes by itself

    worker = Worker(queue, {"chat": JobKind(run)}, concurrency=2, grace_s=1.0)
    task = asyncio.create_task(worker.run())
    short = (await queue.enqueue("chat", {"name": "short"})).job.id
    long = (await queue.enqueue("chat", {"name": "long"})).job.id
    waiting = (await queue.enqueue("chat", {"name": "waiting"})).job.id
    await eventually(lambda: len(started) == 2, what="two jobs to start")
    worker.request_stop()
    finish_short.set()  # finishes within the grace period; "long" does not
    await asyncio.wait_for(task, 10)
    assert started == ["short", "long"]
    assert (await queue.get(short)).state is JobState.DONE
    handed_back = await queue.get(long)
    assert handed_back.state is JobState.QUEUED and handed_back.attempts == 0
    assert handed_back.lease_token is None
    assert (await queue.get(waiting)).state is JobState.QUEUED


async def test_heartbeat_keeps_the_lease_of_a_long_job(db: Database, clock: ManualClock) -> None:
    queue = JobQueue(SqliteJobStore(db), clock=clock, lease_s=6)
    gate = asyncio.Event()
    runs: list[int] = []

    async def slow(job: Job) -> None:
        runs.append(job.attempts)
        await gate.wait()

    worker = Worker(queue, {"chat": JobKind(slow)})
    async with running(worker):
        job_id = (await queue.enqueue("chat", {})).job.id
        await eventually(lambda: runs == [1])
        for _ in range(10):  # 20 s of clock time: over three leases
            clock.advance(2)
            for _ in range(400):  # wait (bounded) for the heartbeat to renew past the new "now"
                job = await queue.get(job_id)
                if job.lease_until is not None and job.lease_until >= clock.now() + 4:
                    break
                await asyncio.sleep(0.005)
            assert job.state is JobState.RUNNING and job.lease_until >= clock.now() + 4
        gate.set()
        await eventually(lambda: worker.running == 0)
    job = await queue.get(job_id)
    assert job.state is JobState.DONE and runs == [1]


async def test_worker_survives_a_locked_database(tmp_path: Path, clock: ManualClock) -> None:
    """Another program holding the write lock (a backup, the sqlite3 shell) delays jobs, and
    neither loses them nor stops the worker."""
    db = await Database.open(tmp_path / "bot.db", busy_timeout_ms=20)
    queue = JobQueue(SqliteJobStore(db), clock=clock)
    ran: list[int] = []

    async def run(job: Job) -> None:
        ran.append(job.payload["n"])

    errors: list[str] = []
    # An expected outage: one warning line each time, no traceback.
    sink = logger.add(lambda m: errors.append(str(m)), level="WARNING", format="{message}{exception}")
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    try:
        await queue.enqueue("chat", {"n": 1}, delay_s=5)
        worker = Worker(queue, {"chat": JobKind(run)})
        async with running(worker):
            await asyncio.sleep(0.05)  # idle, waiting for the job's time
            other.execute("BEGIN IMMEDIATE")
            clock.advance(5)  # due now, but every claim fails while the lock is held
            await eventually(lambda: any("could not claim" in e for e in errors), what="a failed claim")
            assert ran == []
            other.execute("ROLLBACK")
            clock.advance(1)  # the worker's pause before trying again
            await eventually(lambda: ran == [1], what="the job after the lock is released")
            await eventually(lambda: worker.running == 0)
        assert (await queue.stats()).by_state() == {"done": 1}
        assert not any("Traceback" in e for e in errors)
    finally:
        logger.remove(sink)
        other.close()
        await db.close()
