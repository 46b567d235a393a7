"""Limits that hold for several processes on one PostgreSQL: message rate limits counted in the
database, the global budget seeing other processes' spending, and Telegram's pace divided by
the processes alive. Each "process" here is its own ``PgStorage`` (its own connections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore import texts
from botcore.alerts import Alerts
from botcore.clock import ManualClock
from botcore.gate import Gate, RateLimits, SharedRateLimits
from botcore.incoming import parse_update
from botcore.messenger import Messenger
from botcore.models import Prices, Usage
from botcore.pacing import PacedLimiter
from botcore.peers import Peers
from botcore.pg_storage import PgStorage
from botcore.spending import Spending
from botcore.storage import Storage
from botcore.telegram_api import make_bot

from .conftest import TOKEN
from .fakes import FakeTelegram
from .storage_backends import schema_for


@pytest.fixture
async def two(postgres, tmp_path: Path) -> AsyncIterator[list[Storage]]:
    opened = [
        await PgStorage.open(postgres.url, schema=schema_for(tmp_path), max_connections=8) for _ in range(2)
    ]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def test_a_rate_limit_holds_for_all_processes_hitting_it_at_once(two: list[Storage]) -> None:
    clock = ManualClock(start=6_000.0)  # the start of a window
    limits = [SharedRateLimits(store.rates, clock, per_user=5, overall=8) for store in two if store.rates]
    verdicts = await asyncio.gather(*(limits[i % 2].hit(7) for i in range(12)))
    assert verdicts.count(None) == 5  # user 7's five, whichever process counted them
    assert {v[0] for v in verdicts if v is not None} == {"user"}
    others = await asyncio.gather(*(limits[i % 2].hit(100 + i) for i in range(6)))
    assert others.count(None) == 3  # 5 + 3 = the overall 8
    assert {v[0] for v in others if v is not None} == {"global"}
    refused = [v for v in others if v is not None]
    assert all(0 < wait <= 60 for _, wait in refused)


async def test_the_window_slides_so_room_comes_back_gradually(two: list[Storage]) -> None:
    clock = ManualClock(start=6_000.0)
    a, b = (SharedRateLimits(s.rates, clock, per_user=4, overall=0) for s in two if s.rates)
    assert [await a.hit(1) for _ in range(4)] == [None] * 4
    assert await b.hit(1) is not None
    clock.advance(60 + 30)  # half way through the next window: the 4 count as 2
    assert [await b.hit(1) for _ in range(3)] == [None, None, ("user", 30.0)]
    clock.advance(60)  # two windows on: all forgotten
    assert await a.hit(1) is None


async def test_the_global_budget_sees_what_other_processes_spent(
    two: list[Storage], tg: FakeTelegram
) -> None:
    clock = ManualClock()
    async with make_bot(TOKEN, tg.base_url) as bot:
        alerts = Alerts(Messenger(bot), [], clock=clock)
        prices = Prices(input_per_1m=1e6, output_per_1m=0, transcription_per_min=0)  # $1 a token
        spending = [
            Spending(s.usage, s.kv, alerts, prices=prices, clock=clock, global_daily_usd=1.0, reread_s=5.0)
            for s in two
        ]
        assert await spending[1].refusal(42) is None  # reads today's total: nothing yet
        await spending[0].record(
            Usage("chat", "m", prompt_tokens=2), key="k1", job_id=1, chat_id=1, user_id=1
        )
        assert await spending[1].refusal(42) is None  # within reread_s: the total read before
        clock.advance(5)
        assert await spending[1].refusal(42) == texts.BUDGET_GLOBAL


async def test_telegrams_pace_is_divided_among_the_live_processes(two: list[Storage]) -> None:
    clock = ManualClock()
    limiters = [PacedLimiter(rate_per_s=30, group_rate_per_min=20) for _ in two]
    peers = [Peers(s.kv, clock, limiter.share, stale_s=7) for s, limiter in zip(two, limiters, strict=True)]
    assert await peers[0].beat() == 1 and limiters[0].shares == 1
    assert await peers[1].beat() == 2 and limiters[1].shares == 2
    assert await peers[0].beat() == 2 and limiters[0].shares == 2
    clock.advance(8)  # the second process died without a word: its heartbeat goes stale
    assert await peers[0].beat() == 1 and limiters[0].shares == 1
    assert await two[0].kv.with_prefix("peer:") == {peers[0]._key: repr(clock.now())}


async def test_a_shared_limiter_paces_at_its_part(tg: FakeTelegram) -> None:
    """With the pace shared by 3 processes, 30 calls a second become 10 for this one."""
    limiter = PacedLimiter(rate_per_s=30, group_rate_per_min=20)
    limiter.share(3)
    calls = 0

    async def call() -> bool:
        nonlocal calls
        calls += 1
        return True

    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(25):
        await limiter.process_request(call, (), {}, "sendMessage", {"chat_id": 5}, None)
    elapsed = loop.time() - started
    assert calls == 25
    assert elapsed >= 1.2  # 10 a second after a first burst of 10: at least 1.5 s, with slack


def shared_gate(storage: Storage, clock: ManualClock, per_user: int) -> Gate:
    """The gate of one process of several: its rate limits and albums shared through ``storage``."""
    assert storage.rates is not None
    return Gate(
        clock=clock,
        bot_id=4242,
        bot_username="test_bot",
        admin_ids=frozenset(),
        allowed_user_ids=None,
        allowed_chat_ids=None,
        rate_limits=RateLimits(per_user, 0),
        shared=SharedRateLimits(storage.rates, clock, per_user=per_user, overall=0, kv=storage.kv),
    )


def message(update_id: int, chat: dict | None = None, **extra: object) -> dict:
    sender = {"id": 7, "first_name": "A"}
    body = {"message_id": update_id, "chat": chat or {"id": 7, "type": "private"}, "from": sender}
    return {"update_id": update_id, "message": {**body, **extra}}


PHOTO = [{"file_id": "p", "file_unique_id": "u", "width": 10, "height": 10}]


async def test_an_album_counts_once_against_shared_limits_as_it_does_alone(two: list[Storage]) -> None:
    clock = ManualClock(start=6_000.0)
    gate = shared_gate(two[0], clock, per_user=2)
    album = [message(10 + n, photo=PHOTO, media_group_id="a1") for n in range(5)]
    batch = [parse_update(raw) for raw in [*album, message(20, text="after"), message(21, text="over")]]
    for parsed in batch:  # as the intake does: every update of the batch prepared, then routed
        assert parsed is not None
        await gate.prepare(parsed)
    verdicts = [gate.admit(parsed) for parsed in batch if parsed is not None]
    assert [v is None for v in verdicts] == [True] * 6 + [False]  # the album is one message of two


async def test_a_group_albums_parts_are_let_in_by_whichever_process_they_reach(two: list[Storage]) -> None:
    """In a group only the captioned photo names the bot; Telegram may deliver the others to
    another process, which must know the album was let in (and count it no more)."""
    clock = ManualClock(start=6_000.0)
    gates = [shared_gate(storage, clock, per_user=2) for storage in two]
    group = {"id": -100, "type": "supergroup", "title": "Friends"}
    first = message(30, group, photo=PHOTO, media_group_id="g1", caption="@test_bot what are these?")
    first["message"]["caption_entities"] = [{"type": "mention", "offset": 0, "length": 9}]
    parts = [first, *(message(31 + n, group, photo=PHOTO, media_group_id="g1") for n in range(3))]
    verdicts = []
    for n, raw in enumerate(parts):  # one at a time, alternately to each process
        parsed = parse_update(raw)
        assert parsed is not None
        gate = gates[n % 2]
        await gate.prepare(parsed)
        verdicts.append(gate.admit(parsed))
    assert verdicts == [None] * 4
    stranger = parse_update(message(40, group, photo=PHOTO, media_group_id="other"))
    assert stranger is not None
    await gates[1].prepare(stranger)
    refusal = gates[1].admit(stranger)
    assert refusal is not None and refusal.reason == "not addressed to the bot"
    later = parse_update(message(41, text="one more"))  # the album counted once: room for one more
    assert later is not None
    await gates[1].prepare(later)
    assert gates[1].admit(later) is None
