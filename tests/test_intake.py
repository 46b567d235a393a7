"""The intake poller through the real python-telegram-bot against a tg Bot API server."""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import telegram
from loguru import logger

from botcore.clock import ManualClock, SystemClock
from botcore.health import HealthServer
from botcore.intake import UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.metrics import Metrics
from botcore.sqlite_data import SqliteKeyValue, SqliteUsage
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.telegram_api import make_bot

from .conftest import TOKEN, eventually, make_router
from .fakes import Failure, FakeTelegram


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    async with make_bot(TOKEN, tg.base_url) as b:
        yield b


def job_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as raw:
        keys = [k for (k,) in raw.execute("SELECT dedup_key FROM jobs ORDER BY id")]
    raw.close()
    return keys


async def run_poller(poller: UpdatePoller, until: object, timeout: float = 10) -> None:
    task = asyncio.create_task(poller.run())
    try:
        await eventually(until, timeout=timeout, what="the poller")  # type: ignore[arg-type]
    finally:
        poller.stop()
        await asyncio.wait_for(task, 10)


def make_poller(bot: telegram.Bot, db: Database) -> tuple[UpdatePoller, JobQueue]:
    queue = JobQueue(SqliteJobStore(db), clock=SystemClock())
    poller = UpdatePoller(
        bot,
        queue,
        SqliteKeyValue(db),
        route=make_router().route,
        clock=SystemClock(),
        poll_timeout_s=1,
        error_pause_s=0.05,
    )
    return poller, queue


async def test_updates_are_on_disk_before_telegram_is_told(
    tg: FakeTelegram, bot: telegram.Bot, db: Database
) -> None:
    missing: list[int] = []

    def check(offset: int) -> None:  # runs inside getUpdates, before the tg drops anything
        stored = set(job_keys(db.path))
        missing.extend(u for u in range(1000, offset) if f"tg-update:{u}" not in stored)

    tg.on_confirm = check
    ids = [tg.add_message(10, "one"), tg.add_message(11, "two"), tg.add_message(10, "three")]
    poller, queue = make_poller(bot, db)
    await run_poller(poller, lambda: tg.confirmed_below > ids[-1])
    assert missing == []
    assert job_keys(db.path) == [f"tg-update:{i}" for i in ids]
    jobs = [await queue.get(i) for i in (1, 2, 3)]
    assert [j.group_key for j in jobs] == ["chat:10", "chat:11", "chat:10"]
    assert jobs[0].payload["message"]["text"] == "one"


async def test_redelivered_updates_do_not_make_new_jobs(
    tg: FakeTelegram, bot: telegram.Bot, db: Database
) -> None:
    first = tg.add_message(10, "hello")
    poller, _ = make_poller(bot, db)
    await run_poller(poller, lambda: len(job_keys(db.path)) == 1)
    # As after a crash between storing and confirming: Telegram sends the same update again,
    # and this time the stored high-water mark is gone too, so only the dedup key stops it.
    await db.fetchall("DELETE FROM kv")
    tg.pending = [
        {
            "update_id": first,
            "message": {"message_id": 1, "date": 0, "chat": {"id": 10, "type": "private"}, "text": "hello"},
        }
    ]
    second = tg.add_message(10, "next")
    poller, _ = make_poller(bot, db)
    await run_poller(poller, lambda: tg.confirmed_below > second)
    assert job_keys(db.path) == [f"tg-update:{first}", f"tg-update:{second}"]


async def test_a_restart_resumes_from_the_stored_offset(
    tg: FakeTelegram, bot: telegram.Bot, db: Database
) -> None:
    old = tg.add_message(10, "stored and handled before the restart")
    await SqliteKeyValue(db).put("intake.offset", str(old + 1))  # its job may be purged by now
    new = tg.add_message(10, "new")
    poller, _ = make_poller(bot, db)
    await run_poller(poller, lambda: tg.confirmed_below > new)
    assert job_keys(db.path) == [f"tg-update:{new}"]  # the first call itself told Telegram


async def test_a_database_error_confirms_nothing_and_is_retried(
    tg: FakeTelegram, bot: telegram.Bot, tmp_path: Path
) -> None:
    db = await Database.open(tmp_path / "locked.db", busy_timeout_ms=20)
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        update = tg.add_message(10, "hello")
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        poller, _ = make_poller(bot, db)
        task = asyncio.create_task(poller.run())
        await eventually(lambda: [m for m, _ in tg.calls].count("getUpdates") >= 2, what="a retry")
        assert tg.confirmed_below == 0  # nothing confirmed while nothing could be stored
        other.execute("ROLLBACK")
        await eventually(lambda: tg.confirmed_below > update, what="the update stored and confirmed")
        poller.stop()
        await asyncio.wait_for(task, 10)
        assert job_keys(tmp_path / "locked.db") == [f"tg-update:{update}"]
    finally:
        other.close()
        await db.close()


async def test_get_updates_errors_are_retried(tg: FakeTelegram, bot: telegram.Bot, db: Database) -> None:
    tg.fail["getUpdates"] = [Failure(502, "Bad Gateway"), Failure(429, "Too Many Requests", retry_after=1)]
    update = tg.add_message(10, "hello")
    poller, _ = make_poller(bot, db)
    await run_poller(poller, lambda: f"tg-update:{update}" in job_keys(db.path))
    assert [m for m, _ in tg.calls].count("getUpdates") >= 3


async def test_an_update_the_library_cannot_parse_does_not_stop_intake(
    tg: FakeTelegram, bot: telegram.Bot, db: Database
) -> None:
    odd = tg.add_message(10, "from a newer Bot API")
    tg.pending[-1]["message"]["chat"].pop("type")  # python-telegram-bot requires it
    tg.add_message(11, "an ordinary message")
    poller, _ = make_poller(bot, db)
    await run_poller(poller, lambda: len(job_keys(db.path)) == 2)
    assert job_keys(db.path) == [f"tg-update:{odd}", f"tg-update:{odd + 1}"]  # both kept, in order
    tg.add_message(12, "and then")  # back to the library's parsing, resuming from the stored offset
    poller, _ = make_poller(bot, db)
    await run_poller(poller, lambda: len(job_keys(db.path)) == 3)


async def test_batches_that_cannot_be_stored_back_off_and_turn_health_red_after_a_minute(
    tg: FakeTelegram, bot: telegram.Bot, tmp_path: Path
) -> None:
    clock = ManualClock()
    db = await Database.open(tmp_path / "locked.db", busy_timeout_ms=20)
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    queue = JobQueue(SqliteJobStore(db), clock=clock)
    kv = SqliteKeyValue(db)
    poller = UpdatePoller(bot, queue, kv, route=make_router().route, clock=clock, poll_timeout_s=1)
    health = HealthServer(
        host="127.0.0.1",
        port=0,
        poller=poller,
        kv=kv,
        queue=queue,
        usage=SqliteUsage(db),
        metrics=Metrics(),
        workers_running=lambda: True,
        clock=clock,
    )
    failures: list[str] = []  # logged just before each pause
    sink = logger.add(lambda m: failures.append(str(m)), filter=lambda r: "intake failed" in r["message"])
    task = None
    try:
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        update = tg.add_message(10, "hello")
        task = asyncio.create_task(poller.run())
        await eventually(lambda: failures, what="a failed store")
        assert poller.store_failing_since is not None
        polls = [m for m, _ in tg.calls].count("getUpdates")
        for _ in range(5):  # the clock stands still: no poll without the pause passing
            await asyncio.sleep(0.05)
        assert [m for m, _ in tg.calls].count("getUpdates") == polls
        for pause in (1, 2, 4, 8, 16, 30, 30):  # 1 s doubling to 30 s
            assert failures[-1].rstrip().endswith(f"retrying in {pause} s")
            clock.advance(pause)
            seen = len(failures)
            await eventually(lambda n=seen: len(failures) > n, what="the next try to fail")
        assert [m for m, _ in tg.calls].count("getUpdates") == polls + 7  # one poll per pause
        assert any("could not be stored for" in p for p in await health.problems())  # past 60 s
        other.execute("ROLLBACK")
        clock.advance(30)
        await eventually(lambda: tg.confirmed_below > update, what="the update stored and confirmed")
        assert poller.store_failing_since is None
        clock.advance(10)  # the write probe is cached for a few seconds
        assert not any("stored" in p for p in await health.problems())
    finally:
        logger.remove(sink)
        poller.stop()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await health.aclose()
        other.close()
        await db.close()
