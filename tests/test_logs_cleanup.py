import asyncio
import io
import logging
from pathlib import Path

from loguru import logger

from botcore.cleanup import Cleanup
from botcore.clock import ManualClock
from botcore.errors import PermanentError
from botcore.jobqueue import JobQueue
from botcore.logs import setup_logging
from botcore.models import CleanupResult, Usage
from botcore.sqlite_data import SqliteConversations, SqliteUsage
from botcore.sqlite_db import Database
from botcore.sqlite_storage import SqliteStorage

from .conftest import TOKEN


def test_secrets_are_redacted_everywhere_including_tracebacks() -> None:
    out = io.StringIO()
    setup_logging("DEBUG", [TOKEN], stream=out)
    try:
        logger.info("GET https://api.telegram.org/bot{}/getMe", TOKEN)
        try:
            raise RuntimeError(f"bad url https://api.telegram.org/bot{TOKEN}/getUpdates")
        except RuntimeError:
            logger.exception("request failed")
        with logger.contextualize(job_id=7, kind="chat", attempt=2):
            logger.bind(component="worker").warning("retrying")
        logging.getLogger("telegram.ext").warning("polling error at /bot%s/getUpdates {x}", TOKEN)
    finally:
        logger.remove()
        logging.basicConfig(handlers=[], force=True)
    text = out.getvalue()
    assert TOKEN not in text
    assert text.count("[REDACTED]") == 3  # two messages and the exception's text
    assert "| telegram | polling error at /bot[REDACTED]/getUpdates {x}" in text
    assert "RuntimeError: bad url https://api.telegram.org/bot[REDACTED]/getUpdates" in text
    assert "retrying [job_id=7 kind=chat attempt=2]" in text


def size_on_disk(folder: Path) -> int:
    """bot.db with its -wal and -shm files."""
    return sum(p.stat().st_size for p in folder.glob("*.db*"))


def make_cleanup(db: Database, queue: JobQueue, **overrides: float) -> Cleanup:
    settings = {
        "done_after_s": 300,
        "dead_after_s": 3600,
        "history_ttl_days": 1,
        "usage_retention_days": 2,
        **overrides,
    }
    return Cleanup(SqliteStorage(db), queue, **settings)


async def test_cleanup_removes_finished_jobs_expired_memory_and_old_usage(
    db: Database, queue: JobQueue, clock: ManualClock
) -> None:
    conversations, usage = SqliteConversations(db), SqliteUsage(db)
    await conversations.add_exchange(1, job_id=100, user_text="old", answer="old", now=clock.now())
    await usage.record(
        Usage("chat", "m", prompt_tokens=5), key="k", job_id=100, chat_id=1, user_id=1, now=clock.now()
    )
    await queue.enqueue("chat", {})
    await queue.enqueue("chat", {})
    first, second = await queue.claim({"chat": 2}, 2)
    assert await queue.complete(first)
    await queue.fail(second, PermanentError("no"))
    cleanup = make_cleanup(db, queue)
    assert await cleanup.run_once() == CleanupResult(0, 0, 0, 0)
    clock.advance(301)
    assert await cleanup.run_once(full=False) == CleanupResult(1, 0, 0, 0)
    clock.advance(86_400)
    assert await cleanup.run_once(full=False) == CleanupResult(0, 1, 0, 0)  # the cheap purge only
    assert await cleanup.run_once() == CleanupResult(0, 0, 2, 0)  # memory is past its day
    assert await conversations.history(1, limit=10, since=0) == []
    clock.advance(86_400)
    assert await cleanup.run_once() == CleanupResult(0, 0, 0, 1)  # usage is past its two days


async def test_cleanup_runs_at_start_then_periodically_until_stopped(
    db: Database, queue: JobQueue, clock: ManualClock
) -> None:
    cleanup = make_cleanup(db, queue, done_after_s=0, dead_after_s=0, every_s=60)
    task = asyncio.create_task(cleanup.run())
    await queue.enqueue("chat", {})
    [job] = await queue.claim({"chat": 1}, 1)
    assert await queue.complete(job)
    for _ in range(400):  # each minute of clock time may bring a run (bounded: 2 s of real time)
        clock.advance(61)
        if not (await queue.stats()).counts:
            break
        await asyncio.sleep(0.005)
    assert (await queue.stats()).counts == {}
    cleanup.stop()
    await asyncio.wait_for(task, 5)


async def test_a_simulated_week_of_traffic_keeps_the_database_bounded(
    tmp_path: Path, db: Database, queue: JobQueue, clock: ManualClock
) -> None:
    """A week of hourly traffic (60 answered messages an hour, with usage) under the real
    retention rules: after the first retention period, every table and the files stop growing."""
    conversations, usage = SqliteConversations(db), SqliteUsage(db)
    cleanup = make_cleanup(db, queue, history_ttl_days=1, usage_retention_days=2, full_every_s=6 * 3600)
    sizes: list[tuple[int, int, int, int]] = []
    next_full = clock.now()
    for hour in range(7 * 24):
        for i in range(60):
            job = (await queue.enqueue("chat", {"text": "x" * 200}, dedup_key=f"tg-update:{hour}:{i}")).job
            [claimed] = await queue.claim({"chat": 1}, 1)
            assert claimed.id == job.id and await queue.complete(claimed)
            await conversations.add_exchange(
                i, job_id=job.id, user_text="q" * 100, answer="a" * 400, now=clock.now()
            )
            await usage.record(
                Usage("chat", "m", 50, 100),
                key=f"k{job.id}",
                job_id=job.id,
                chat_id=i,
                user_id=i,
                now=clock.now(),
            )
            clock.advance(60)
        full = clock.now() >= next_full
        await cleanup.run_once(full=full)
        if full:
            next_full = clock.now() + 6 * 3600
        if hour % 24 == 23:
            rows = [
                (await db.fetchone(f"SELECT count(*) FROM {table}"))[0]
                for table in ("jobs", "messages", "usage")
            ]
            sizes.append((*rows, size_on_disk(tmp_path)))
    jobs, messages, usage_rows, _ = zip(*sizes, strict=True)
    assert max(jobs) <= 60  # only the last few minutes of done jobs are kept
    assert max(messages) <= 2 * 60 * 30  # at most a day and a cleanup interval of memory
    assert max(usage_rows) <= 60 * 54  # at most two days and a cleanup interval of usage
    file_sizes = [s[3] for s in sizes]
    assert max(file_sizes[3:]) <= 1.1 * max(file_sizes[:3])  # the files stop growing after day 3


def test_an_escaped_secret_is_redacted_too() -> None:
    odd = 'wk-"quoted\\back-ünïcode'
    out = io.StringIO()
    setup_logging("INFO", [odd], stream=out)
    try:
        logger.info("settings {!r}", {"key": odd})  # repr escapes it in the text log
    finally:
        logger.remove()
    assert "quoted" not in out.getvalue() and "[REDACTED]" in out.getvalue()
