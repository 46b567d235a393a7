"""The gate and the router on their own, on a manual clock: one verdict per update however often
Telegram delivers it, one sender rule, commands that are really ours, and rate-limit memory that
does not grow with every user ever seen."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any

import pytest

from botcore.clock import ManualClock
from botcore.gate import Gate, RateLimits
from botcore.incoming import Incoming, Sender, parse_update, sender_of
from botcore.routing import Router

from .conftest import make_gate

GROUP = {"id": -100, "type": "supergroup", "title": "Friends"}


def update(
    update_id: int, text: str, *, user: int = 7, chat: dict[str, Any] | None = None, **extra: Any
) -> dict:
    chat = chat or {"id": user, "type": "private"}
    message = {"message_id": update_id, "chat": chat, "from": {"id": user, "first_name": "Ada"}, "text": text}
    return {"update_id": update_id, "message": {**message, **extra}}


def incoming(raw: dict[str, Any]) -> Incoming:
    parsed = parse_update(raw)
    assert parsed is not None
    return parsed


@pytest.fixture
def gate() -> Gate:
    return make_gate(clock=ManualClock(), admin_ids=frozenset({1}), per_user=3, overall=100)


def test_a_redelivered_update_gets_its_first_verdict_and_spends_no_quota(gate: Gate) -> None:
    batch = [incoming(update(10 + n, f"m{n}")) for n in range(3)]  # exactly the user's limit of 3
    for _ in range(4):  # the batch could not be stored three times: Telegram sends it again
        assert [gate.admit(u) for u in batch] == [None, None, None]
    over = gate.admit(incoming(update(20, "one too many")))  # the fourth new message is over
    assert over is not None and over.notice is not None
    assert "faster than I can take them" in over.notice
    again = gate.admit(incoming(update(20, "one too many")))  # and stays refused when delivered again
    assert again is not None and again.notice is None  # told once within the window


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


def test_in_a_group_a_forwarded_command_is_text_and_another_bots_command_is_not_ours(gate: Gate) -> None:
    def route(raw: dict[str, Any]) -> bool:
        return bool(Router(gate).route(incoming(raw)).jobs)

    assert route(update(1, "/help", chat=GROUP))
    assert route(update(2, "/help@test_bot", chat=GROUP))
    assert not route(update(3, "/help@other_bot", chat=GROUP))
    forwarded = update(4, "/reset everything", chat=GROUP, forward_origin={"type": "hidden_user", "date": 0})
    assert not route(forwarded)  # somebody's text that starts with "/", not a command to us
    assert not route(update(5, "just chatting", chat=GROUP))
    assert not route(update(6, "/start", chat=GROUP, forward_origin={"type": "user"}))


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
