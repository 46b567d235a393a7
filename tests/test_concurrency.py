"""The LLM concurrency limit, against simulated servers on a manual clock (no real time passes,
so "drains within 1.3× the time" is simulated seconds, not a timed test): one that answers in
1 s however many calls run at once, and one that slows down past 4 at once and refuses past 8."""

from __future__ import annotations

import pytest

from benchmarks.concurrency import batches_of_4, flat, simulate, varied
from botcore.clock import ManualClock
from botcore.concurrency import LlmLimit, LlmLimits
from botcore.errors import Cause, UpstreamUnavailable


async def test_a_server_that_takes_any_load_gets_it_and_the_backlog_drains_nearly_as_fast_as_unlimited() -> (
    None
):
    unlimited = await simulate(flat(ManualClock()), None, rate=25, seconds=10, until=60)
    clock = ManualClock()
    limit = LlmLimit(clock=clock, fixed=None)
    adaptive = await simulate(flat(clock), limit, rate=25, seconds=10, until=60)
    assert unlimited.drained_at is not None and adaptive.drained_at is not None
    assert adaptive.drained_at <= 1.3 * unlimited.drained_at, (adaptive.drained_at, unlimited.drained_at)
    assert max(limit for _, limit in adaptive.limits) >= 25  # it grew to the load
    assert adaptive.limits[0][1] == 4  # from a low start


async def test_a_server_that_slows_past_4_and_refuses_past_8_settles_near_4_with_few_refusals() -> None:
    clock = ManualClock()
    server = batches_of_4(clock)
    limit = LlmLimit(clock=clock, fixed=None)
    run = await simulate(server, limit, rate=25, seconds=60, until=60)
    settled = [value for second, value in run.limits if second >= 15]
    assert settled and min(settled) >= 3 and max(settled) <= 6, run.limits
    assert server.refused <= 0.05 * server.calls, (server.refused, server.calls)


async def test_a_fixed_limit_stays_fixed() -> None:
    clock = ManualClock()
    server = batches_of_4(clock)
    limit = LlmLimit(clock=clock, fixed=3)
    run = await simulate(server, limit, rate=10, seconds=5, until=10)
    assert {value for _, value in run.limits} == {3}
    assert server.refused == 0


async def test_answers_of_very_different_lengths_do_not_hold_the_limit_down() -> None:
    """The wait for the first token is the signal, not the whole answer's time: answers of 20 to
    800 tokens (0.9 to 16.5 s) on a server that takes any load must not look like strain."""
    clock = ManualClock()
    limit = LlmLimit(clock=clock, fixed=None)
    adaptive = await simulate(varied(clock), limit, rate=10, seconds=30, until=300)
    clock = ManualClock()
    fixed = await simulate(varied(clock), LlmLimit(clock=clock, fixed=64), rate=10, seconds=30, until=300)
    assert adaptive.drained_at is not None and fixed.drained_at is not None
    assert adaptive.drained_at <= 1.3 * fixed.drained_at, (adaptive.drained_at, fixed.drained_at)
    assert max(value for _, value in adaptive.limits) >= 32


async def _calls(limit: LlmLimit, clock: ManualClock, first_token_s: list[float | None], rounds: int) -> None:
    """One call at a time, in turn for each wait: a stream that waits so long for its first
    token and takes a second more, or (None) a plain call of 50 tokens in a second."""
    for _ in range(rounds):
        for wait in first_token_s:
            async with limit.slot() as call:
                if wait is None:
                    call.tokens = 50
                else:
                    clock.advance(wait)
                    call.first_token()
                clock.advance(1.0)


async def _refused(limit: LlmLimit) -> None:
    """A 429: it halves the limit and ends the slow start (from then on latency can shrink it)."""
    with pytest.raises(UpstreamUnavailable):
        async with limit.slot():
            raise UpstreamUnavailable("LLM: rate limited", cause=Cause.RATE_LIMITED)


async def test_streamed_and_plain_calls_are_measured_apart() -> None:
    """One chat streams, another does not: a stream's wait for its first token (0.5 s) is not
    compared with a plain call's time per token (0.02 s), which would look like a long queue."""
    clock = ManualClock()
    mixed = LlmLimit(clock=clock, fixed=None, maximum=8)
    await _refused(mixed)
    before = mixed.limit
    await _calls(mixed, clock, [0.5, None], rounds=20)
    assert mixed.limit == before
    # Streams that do wait longer and longer for their first token: that is a queue.
    queued = LlmLimit(clock=clock, fixed=None, maximum=8)
    await _refused(queued)
    await _calls(queued, clock, [0.5], rounds=1)
    await _calls(queued, clock, [3.0], rounds=20)
    assert queued.limit < before


async def test_each_model_has_its_own_limit() -> None:
    """A busy model a chat chose (a free one that answers 429) halves its own limit only."""
    clock = ManualClock()
    limits = LlmLimits(clock=clock, fixed=None, default="main")
    await _refused(limits.of("free-model"))
    assert limits.of("free-model").limit == 2
    assert limits.of("main").limit == 4
    assert [model for model, _ in limits.items()] == ["main", "free-model"]
    fixed = LlmLimits(clock=clock, fixed=3)
    assert fixed.of("a").limit == fixed.of("b").limit == 3
    for n in range(40):  # typed names without end: past 32 models they share one limit
        fixed.of(f"typed-{n}")
    assert len(fixed.items()) <= 33
