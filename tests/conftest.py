"""Shared fixtures: a real SQLite file per test, a manual clock, and helpers that bound every wait."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from botcore.clock import Clock, ManualClock, SystemClock
from botcore.gate import Gate, RateLimits
from botcore.incoming import Incoming, parse_update
from botcore.jobqueue import JobQueue
from botcore.routing import Router
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.worker import Worker

from . import postgres as pg
from .fakes import FakeOpenAI, FakeTelegram

if TYPE_CHECKING:
    from .botproc import BotProcess

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456789:AAH4kq-EXAMPLE_token_value_abcdefghi"  # shaped like a real one, never valid
KEY = "sk-test-key-0123456789"


@pytest.fixture(scope="session")
def postgres() -> Iterator[pg.Cluster]:
    """A real PostgreSQL for the whole run: a throwaway cluster (or TEST_DATABASE_URL's server);
    the tests that use it skip, with the reason, where neither is possible."""
    reason = pg.unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = pg.start()
    try:
        yield cluster
    finally:
        pg.stop(cluster)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API server on 127.0.0.1."""
    server = await FakeTelegram(TOKEN).start()
    yield server
    await server.stop()


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    """A fake OpenAI-compatible server on 127.0.0.1."""
    server = await FakeOpenAI().start()
    yield server
    await server.stop()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "bot.db")
    yield database
    await database.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(db: Database, clock: ManualClock) -> JobQueue:
    return JobQueue(SqliteJobStore(db), clock=clock, rng=random.Random(7))


async def eventually(
    predicate: Callable[[], object], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll a cheap in-memory predicate until true; fail (not hang) after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def running(worker: Worker, *, stop_timeout: float = 15.0) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, stop_timeout)


@pytest.fixture
async def bot(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> AsyncIterator[BotProcess]:
    """``bot.py`` running against the test's fakes; on teardown it must stop cleanly (status 0),
    with no traceback and no secret in its log."""
    from .botproc import BotProcess  # it imports this module

    process = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        yield process
    finally:
        await process.stop_clean()


def make_gate(
    *,
    clock: Clock | None = None,
    admin_ids: frozenset[int] = frozenset(),
    per_user: int = 0,
    overall: int = 0,
) -> Gate:
    """The real gate as the fake Telegram's bot (id 4242, @test_bot) would have it: everyone
    allowed, and no rate limit unless given."""
    return Gate(
        clock=clock or SystemClock(),
        bot_id=4242,
        bot_username="test_bot",
        admin_ids=admin_ids,
        allowed_user_ids=None,
        allowed_chat_ids=None,
        rate_limits=RateLimits(per_user, overall),
    )


def make_router(**gate: object) -> Router:
    return Router(make_gate(**gate))  # type: ignore[arg-type]


def private_message(user: int, text: str, *, update_id: int = 1, message_id: int = 1) -> Incoming:
    """A text message from ``user`` in their private chat with the bot, parsed as intake would."""
    parsed = parse_update(
        {
            "update_id": update_id,
            "message": {
                "message_id": message_id,
                "chat": {"id": user, "type": "private"},
                "from": {"id": user, "first_name": "Ada"},
                "text": text,
            },
        }
    )
    assert parsed is not None
    return parsed
