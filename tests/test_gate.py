"""The gate on its own, with a real python-telegram-bot against the fake Bot API server for its
notices: one verdict per update however often Telegram delivers it, one sender rule, commands
that are really ours, and rate-limit memory that does not grow with every user ever seen."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from botcore.gate import Gate, RateLimits
from botcore.incoming import Sender, sender_of
from botcore.intake import route_to_update_job
from botcore.messenger import Messenger
from botcore.telegram_api import make_bot

from .conftest import TOKEN, eventually
from .fakes import FakeTelegram

GROUP = {"id": -100, "type": "supergroup", "title": "Friends"}


def update(
    update_id: int, text: str, *, user: int = 7, chat: dict[str, Any] | None = None, **extra: Any
) -> dict:
    chat = chat or {"id": user, "type": "private"}
    message = {"message_id": update_id, "chat": chat, "from": {"id": user, "first_name": "Ada"}, "text": text}
    return {"update_id": update_id, "message": {**message, **extra}}


@pytest.fixture
async def gate(tg: FakeTelegram) -> AsyncIterator[Gate]:
    async with make_bot(TOKEN, tg.base_url) as bot:
        g = Gate(
            route_to_update_job,
            Messenger(bot),
            bot_id=4242,
            bot_username="test_bot",
            admin_ids={1},
            allowed_user_ids=None,
            allowed_chat_ids=None,
            rate_limits=RateLimits(3, 100),
        )
        yield g
        await g.aclose()


async def test_a_redelivered_update_gets_its_first_verdict_and_spends_no_quota(
    gate: Gate, tg: FakeTelegram
) -> None:
    batch = [update(10 + n, f"m{n}") for n in range(3)]  # exactly the user's limit of 3
    for _ in range(4):  # the batch could not be stored three times: Telegram sends it again
        assert [len(gate.route(u)) for u in batch] == [1, 1, 1]
    assert gate.route(update(20, "one too many")) == []  # the fourth new message is over
    await eventually(lambda: len(tg.sent) == 1, what="the notice")
    assert "faster than I can take them" in tg.sent[0]["text"]
    assert gate.route(update(20, "one too many")) == []  # and stays refused when delivered again
    await asyncio.sleep(0.1)
    assert len(tg.sent) == 1


def test_one_sender_rule() -> None:
    anonymous_admin = {
        "from": {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"},
        "sender_chat": GROUP,
    }
    assert sender_of(anonymous_admin) == Sender(-100, "Friends")  # the group, not the shared stand-in
    assert sender_of({"from": {"id": 5, "first_name": "Grace", "last_name": "Hopper"}}) == Sender(
        5, "Grace Hopper"
    )
    assert sender_of({"from": {"id": 5, "username": "gh"}}) == Sender(5, "gh")
    for odd in ({}, {"from": {"id": "5"}}, {"from": {"id": True}}, {"from": {"id": 2**70}}, {"from": []}):
        assert sender_of(odd) is None


async def test_in_a_group_a_forwarded_command_is_text_and_another_bots_command_is_not_ours(
    gate: Gate,
) -> None:
    assert gate.route(update(1, "/help", chat=GROUP))
    assert gate.route(update(2, "/help@test_bot", chat=GROUP))
    assert not gate.route(update(3, "/help@other_bot", chat=GROUP))
    forwarded = update(4, "/reset everything", chat=GROUP, forward_origin={"type": "hidden_user", "date": 0})
    assert not gate.route(forwarded)  # somebody's text that starts with "/", not a command to us
    assert not gate.route(update(5, "just chatting", chat=GROUP))
    assert gate.route(update(6, "/start", chat=GROUP, forward_origin={"type": "user"})) == []


def test_rate_limit_memory_stays_bounded_however_many_users_come() -> None:
    """Rounds of 20,000 new users each: once a round's window (here 1 s) has passed, its counters
    expire and the next round reuses the room, so memory does not grow with every user ever
    seen (the moving-window strategy kept an entry per key for ever)."""
    limits = RateLimits(10, 0, window_s=1)
    retained = []
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for round_ in range(3):
            for user in range(round_ * 20_000, (round_ + 1) * 20_000):
                assert limits.hit(user) is None
            time.sleep(2.2)  # the window has passed for every one of them
            limits.hit(-1)  # a hit lets the storage expire what is old
            time.sleep(0.2)
            gc.collect()
            retained.append(tracemalloc.get_traced_memory()[0] - base)
    finally:
        tracemalloc.stop()
    # The first round's peak sizes the tables; later rounds add nothing lasting.
    assert retained[2] < retained[0] * 1.2 + 100_000, retained
