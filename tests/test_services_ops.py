"""The operational services on a manual clock: budgets across UTC days and months and the daily
cost alert (Spending), what /cancel can stop (Cancels), how often a refused sender is told
(Gate), and /healthz turning red when polling has gone quiet (HealthServer, through a real HTTP
request)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from botcore import texts
from botcore.assemble import build_spending
from botcore.cancels import Cancels
from botcore.clock import ManualClock
from botcore.errors import StoppedByUser
from botcore.gate import Gate, RateLimits
from botcore.health import HealthServer
from botcore.incoming import Incoming, parse_update
from botcore.intake import UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.metrics import Metrics
from botcore.models import Usage
from botcore.spending import Spending
from botcore.sqlite_storage import SqliteStorage
from botcore.telegram_api import make_bot

from .conftest import TOKEN, eventually, make_router, private_message
from .fakes import FakeOpenAI, FakeTelegram
from .services import Services, services

ADMIN = 1
PRICES = {"PRICE_INPUT_PER_1M": "100000", "PRICE_OUTPUT_PER_1M": "0"}  # $0.10 a prompt token
_keys = itertools.count()


def utc(*moment: int) -> float:
    return datetime(*moment, tzinfo=UTC).timestamp()  # type: ignore[misc]


async def spend(s: Services | Spending, user: int, tokens: int) -> None:
    """One billed call of ``user``: ``tokens`` prompt tokens, $0.10 each."""
    spending = s.spending if isinstance(s, Services) else s
    usage = Usage("chat", "fake-model", prompt_tokens=tokens)
    await spending.record(usage, key=f"call:{next(_keys)}", job_id=0, chat_id=user, user_id=user)


# -- Spending ----------------------------------------------------------------------------------


async def test_a_users_daily_budget_ends_at_midnight_utc_and_admins_are_exempt(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    clock = ManualClock(utc(2023, 11, 14, 23, 0))
    env = {"USER_DAILY_BUDGET_USD": "0.25", "ADMIN_USER_IDS": str(ADMIN), **PRICES}
    async with services(tmp_path, tg, llm, clock, **env) as s:
        await spend(s, 7, 2)
        assert await s.spending.refusal(7) is None  # $0.20 of $0.25
        await spend(s, 7, 1)
        assert await s.spending.refusal(7) == texts.BUDGET_USER_DAY.format(limit=0.25)
        assert await s.spending.refusal(8) is None  # per user
        await spend(s, ADMIN, 10)
        assert await s.spending.refusal(ADMIN) is None
        clock.advance(3599)  # 23:59:59
        assert await s.spending.refusal(7) is not None
        clock.advance(1)  # midnight UTC: a new day
        assert await s.spending.refusal(7) is None


async def test_a_users_monthly_budget_ends_on_the_first_of_the_month_utc(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    clock = ManualClock(utc(2023, 11, 29, 12, 0))
    env = {"USER_DAILY_BUDGET_USD": "1", "USER_MONTHLY_BUDGET_USD": "0.5", **PRICES}
    async with services(tmp_path, tg, llm, clock, **env) as s:
        await spend(s, 7, 3)
        clock.advance(86_400)  # November 30th
        assert await s.spending.refusal(7) is None  # today $0.00, this month $0.30
        await spend(s, 7, 3)
        assert await s.spending.refusal(7) == texts.BUDGET_USER_MONTH.format(limit=0.5)
        day, month = await s.spending.of_user(7)
        assert (day.cost_usd, month.cost_usd) == (pytest.approx(0.3), pytest.approx(0.6))
        clock.advance(12 * 3600 - 1)  # 23:59:59 on the last day of the month
        assert await s.spending.refusal(7) is not None
        clock.advance(1)  # December 1st
        assert await s.spending.refusal(7) is None
        day, month = await s.spending.of_user(7)
        assert (day.requests, month.requests) == (0, 0)


async def test_the_global_daily_budget_stops_everyone_until_midnight_utc(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    clock = ManualClock(utc(2023, 11, 14, 23, 0))
    env = {"GLOBAL_DAILY_BUDGET_USD": "1", "ADMIN_USER_IDS": str(ADMIN), **PRICES}
    async with services(tmp_path, tg, llm, clock, **env) as s:
        await spend(s, 7, 6)
        assert await s.spending.refusal(8) is None
        await spend(s, 8, 5)  # $1.10 today in all
        for user in (7, 9, ADMIN, None):  # admins and senders without a user id too
            assert await s.spending.refusal(user) == texts.BUDGET_GLOBAL
        clock.advance(3600)
        for user in (7, 9, ADMIN, None):
            assert await s.spending.refusal(user) is None
        await spend(s, 9, 9)  # the new day's total starts from nothing
        assert await s.spending.refusal(7) is None
        await spend(s, 9, 1)
        assert await s.spending.refusal(7) == texts.BUDGET_GLOBAL


async def test_the_daily_cost_alert_comes_once_a_day_even_across_a_restart(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    clock = ManualClock(utc(2023, 11, 14, 20, 0))
    env = {"DAILY_COST_ALERT_USD": "0.5", "ADMIN_USER_IDS": str(ADMIN), **PRICES}
    async with services(tmp_path, tg, llm, clock, **env) as s:
        await spend(s, 7, 3)
        assert tg.texts_to(ADMIN) == []  # $0.30 of $0.50
        await spend(s, 8, 3)
        await spend(s, 9, 3)
        # The same stores, a new Spending: as after a restart, with nothing in memory.
        restarted = build_spending(s.settings, s.storage, s.alerts, Metrics(), clock)
        await spend(restarted, 9, 3)
        assert tg.texts_to(ADMIN) == [
            texts.ADMIN_ALERT.format(detail=texts.ALERT_DAILY_COST.format(spent=0.6, limit=0.5))
        ]
        clock.advance(6 * 3600)  # 02:00 the next day
        await spend(s, 7, 7)
        await spend(s, 7, 1)
        assert len(tg.texts_to(ADMIN)) == 2
        assert "today's cost has reached $0.70" in tg.texts_to(ADMIN)[1]


async def test_the_next_days_alert_comes_even_in_the_same_words_within_the_hour(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """The alerts' hourly repeat guard must not swallow a new day's cost alert: its own key
    already makes it once a day."""
    clock = ManualClock(utc(2023, 11, 14, 23, 50))
    env = {"DAILY_COST_ALERT_USD": "0.5", "ADMIN_USER_IDS": str(ADMIN), **PRICES}
    async with services(tmp_path, tg, llm, clock, **env) as s:
        await spend(s, 7, 6)  # $0.60 at 23:50
        clock.advance(30 * 60)  # 00:20 the next day
        await spend(s, 7, 6)  # $0.60 again: the same sentence
        alert = texts.ADMIN_ALERT.format(detail=texts.ALERT_DAILY_COST.format(spent=0.6, limit=0.5))
        assert tg.texts_to(ADMIN) == [alert, alert]


# -- Cancels -----------------------------------------------------------------------------------


async def test_cancel_stops_what_runs_in_its_chat_and_nothing_else() -> None:
    cancels = Cancels()
    assert cancels.cancel(10) == 0  # nothing running

    async def work(chat_id: int, job_id: int, started: asyncio.Event) -> None:
        async with cancels.scope(chat_id, job_id):
            started.set()
            await asyncio.Event().wait()  # until stopped

    starts = [asyncio.Event() for _ in range(3)]
    tasks = [
        asyncio.create_task(work(chat, job, started))
        for (chat, job), started in zip([(10, 1), (10, 2), (20, 3)], starts, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(s.wait() for s in starts)), 5)
    assert cancels.cancel(10) == 2
    for task in tasks[:2]:
        with pytest.raises(StoppedByUser):
            await asyncio.wait_for(task, 5)
        assert task.cancelling() == 0  # its cancellation was ours and ended there
    assert not tasks[2].done()  # another chat's work goes on
    assert cancels.cancel(10) == 0  # the stopped ones are gone from the table
    tasks[2].cancel()  # not through /cancel (a shutdown): it stays a cancellation
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(tasks[2], 5)
    assert cancels.cancel(20) == 0


# -- Gate --------------------------------------------------------------------------------------


def group_message(user: int, text: str, update_id: int) -> Incoming:
    """A message from ``user`` in group -200 (not allowed) that mentions the bot."""
    entity = {"type": "mention", "offset": text.index("@test_bot"), "length": len("@test_bot")}
    raw = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "chat": {"id": -200, "type": "supergroup", "title": "Elsewhere"},
            "from": {"id": user, "first_name": "Ada"},
            "text": text,
            "entities": [entity],
        },
    }
    parsed = parse_update(raw)
    assert parsed is not None
    return parsed


def test_a_refused_sender_is_told_once_per_window_of_the_clock(clock: ManualClock) -> None:
    gate = Gate(
        clock=clock,
        bot_id=4242,
        bot_username="test_bot",
        admin_ids={ADMIN},
        allowed_user_ids={7},
        allowed_chat_ids={-100},
        rate_limits=RateLimits(per_user=1, overall=0),
        notice_every_s=60,
    )
    update_ids = itertools.count(1)

    def notice(user: int, text: str = "hi", *, group: bool = False) -> str | None:
        update_id = next(update_ids)
        incoming = (
            group_message(user, text, update_id)
            if group
            else private_message(user, text, update_id=update_id)
        )
        refusal = gate.admit(incoming)
        assert refusal is not None
        return refusal.notice

    stranger = texts.NOT_ALLOWED.format(user_id=50)
    assert notice(50) == stranger
    assert notice(50) is None
    assert notice(51) == texts.NOT_ALLOWED.format(user_id=51)  # per chat
    clock.advance(59.9)
    assert notice(50) is None
    clock.advance(0.1)  # the window has passed on the gate's clock
    assert notice(50) == stranger
    assert notice(50) is None

    group = texts.GROUP_NOT_ALLOWED.format(chat_id=-200)
    assert notice(7, "@test_bot hi", group=True) == group
    assert notice(7, "@test_bot hi", group=True) is None
    clock.advance(60)
    assert notice(7, "@test_bot hi", group=True) == group

    # Over the rate limit (its window is the limits library's, on the system clock): the notice
    # of it still keeps the gate's window.
    assert gate.admit(private_message(7, "one", update_id=next(update_ids))) is None
    assert (notice(7) or "").startswith("⏳ You're sending messages faster")
    assert notice(7) is None
    clock.advance(60)
    assert (notice(7) or "").startswith("⏳ You're sending messages faster")


# -- HealthServer ------------------------------------------------------------------------------


def free_port() -> int:
    """A port the system picks (port 0), for the server to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_healthz_turns_red_when_the_last_poll_is_stale(
    tmp_path: Path, tg: FakeTelegram, clock: ManualClock
) -> None:
    workers = [True]
    storage = await SqliteStorage.open(tmp_path / "bot.db")
    queue = JobQueue(storage.jobs, clock=clock)
    try:
        async with make_bot(TOKEN, tg.base_url) as bot:
            poller = UpdatePoller(
                bot, queue, storage.kv, route=make_router(clock=clock).route, clock=clock, poll_timeout_s=1
            )
            port = free_port()
            health = HealthServer(
                host="127.0.0.1",
                port=port,
                poller=poller,
                kv=storage.kv,
                queue=queue,
                usage=storage.usage,
                metrics=Metrics(),
                workers_running=lambda: workers[0],
                clock=clock,
            )
            await health.start()
            tg.add_message(10, "hello")  # the first poll returns at once
            polling = asyncio.create_task(poller.run())
            try:
                await eventually(lambda: poller.last_poll_at is not None, what="a poll")
                poller.stop()
                await asyncio.wait_for(polling, 10)
                url = f"http://127.0.0.1:{port}/healthz"
                assert await get(url) == (200, "ok\n")
                clock.advance(90)  # 90 s since the last poll: not yet stale
                assert await get(url) == (200, "ok\n")
                clock.advance(1)
                assert await get(url) == (503, "polling Telegram has not succeeded lately\n")
                workers[0] = False
                status, body = await get(url)
                assert status == 503 and body.splitlines() == [
                    "polling Telegram has not succeeded lately",
                    "the workers are not running",
                ]
            finally:
                poller.stop()
                await asyncio.wait_for(polling, 10)
                await health.aclose()
                await poller.aclose()
    finally:
        await storage.close()
