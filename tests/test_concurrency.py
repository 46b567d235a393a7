"""The LLM concurrency limit, against simulated servers on a manual clock (no real time passes,
so "drains within 1.3× the time" is simulated seconds, not a timed test): one that answers in
1 s however many calls run at once, and one that slows down past 4 at once and refuses past 8."""

from __future__ import annotations

import pytest

from benchmarks.concurrency import batches_of_4, flat, simulate, varied
from botcore.clock import ManualClock
from botcore.concurrency import LlmLimit
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


async def _calls(limit: LlmLimit, clock: ManualClock, first_token_s: dict[str, float], rounds: int) -> None:
    """One call at a time, in turn for each model, each waiting ``first_token_s`` for its first
    token and taking a second more."""
    for _ in range(rounds):
        for model, wait in first_token_s.items():
            async with limit.slot(model) as call:
                clock.advance(wait)
                call.first_token()
                clock.advance(1.0)


async def _refused(limit: LlmLimit) -> None:
    """A 429: it halves the limit and ends the slow start (from then on latency can shrink it)."""
    with pytest.raises(UpstreamUnavailable):
        async with limit.slot():
            raise UpstreamUnavailable("LLM: rate limited", cause=Cause.RATE_LIMITED)


async def test_a_slower_model_is_not_taken_for_a_queueing_server() -> None:
    """Chats may use different models on one server: each is judged against its own best, so a
    model six times slower than another does not look like calls waiting in the server."""
    clock = ManualClock()
    two_models = LlmLimit(clock=clock, fixed=None, maximum=8)
    await _refused(two_models)
    before = two_models.limit
    await _calls(two_models, clock, {"fast": 0.5, "slow": 3.0}, rounds=20)
    assert two_models.limit == before
    # The same waits from one model: the slow calls look like a queue, and the limit shrinks.
    one_model = LlmLimit(clock=clock, fixed=None, maximum=8)
    await _refused(one_model)
    await _calls(one_model, clock, {"m": 0.5}, rounds=1)
    await _calls(one_model, clock, {"m": 3.0}, rounds=20)
    assert one_model.limit < before
