"""The circuit breaker, with a hand-moved monotonic clock."""

import asyncio

import pytest

from botcore.breaker import BreakerState, CircuitBreaker
from botcore.clock import ManualClock
from botcore.errors import LeaseLostError, PermanentError, TransientError, UpstreamUnavailable


async def attempt(breaker: CircuitBreaker, outcome: BaseException | None = None) -> None:
    async with breaker.call():
        if outcome is not None:
            raise outcome


async def fail(breaker: CircuitBreaker, n: int, exc: Exception | None = None) -> None:
    for _ in range(n):
        with pytest.raises((TransientError, UpstreamUnavailable)):
            await attempt(breaker, exc or TransientError("timeout"))


async def test_opens_after_five_counted_failures_and_refuses_without_calling() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("llm", clock=clock)
    await fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    await fail(breaker, 1, UpstreamUnavailable("429"))  # rate limiting counts
    assert breaker.state is BreakerState.OPEN
    called = False
    with pytest.raises(UpstreamUnavailable) as refused:
        async with breaker.call():
            called = True
    assert not called and refused.value.retry_after == pytest.approx(60)
    clock.advance(59)
    assert breaker.state is BreakerState.OPEN and breaker.retry_after() == pytest.approx(1)


async def test_a_success_resets_the_count_and_permanent_errors_do_not_count() -> None:
    breaker = CircuitBreaker("llm", clock=ManualClock())
    await fail(breaker, 4)
    await attempt(breaker)  # success
    await fail(breaker, 4)
    for _ in range(10):
        with pytest.raises(PermanentError):
            await attempt(breaker, PermanentError("400"))
    assert breaker.state is BreakerState.CLOSED


async def test_half_open_admits_one_trial_and_closes_after_two_successes() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("stt", clock=clock)
    await fail(breaker, 5)
    clock.advance(60)
    assert breaker.state is BreakerState.HALF_OPEN
    gate = asyncio.Event()

    async def slow_trial() -> None:
        async with breaker.call():
            await gate.wait()

    trial = asyncio.create_task(slow_trial())
    await asyncio.sleep(0)
    with pytest.raises(UpstreamUnavailable):  # a second caller waits while the trial runs
        await attempt(breaker)
    gate.set()
    await trial
    assert breaker.state is BreakerState.HALF_OPEN  # one success is not enough
    await attempt(breaker)
    assert breaker.state is BreakerState.CLOSED


async def test_a_failed_trial_reopens_for_a_full_period() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("llm", clock=clock)
    await fail(breaker, 5)
    clock.advance(61)
    await fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN and breaker.retry_after() == pytest.approx(60)


async def test_cancellation_is_never_counted() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("llm", fail_max=1, clock=clock)

    async def hang() -> None:
        async with breaker.call():
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is BreakerState.CLOSED
    # Nor in half-open: the trial slot is freed and the breaker stays half-open.
    await fail(breaker, 1)
    clock.advance(60)
    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is BreakerState.HALF_OPEN
    await attempt(breaker)  # the next trial may go


async def test_a_lost_lease_is_nobodys_failure() -> None:
    """A streamed answer whose job lost its lease stops with LeaseLostError: the upstream did
    nothing wrong, so it is counted neither way."""
    breaker = CircuitBreaker("llm", clock=ManualClock(), fail_max=2)
    for _ in range(5):
        with pytest.raises(LeaseLostError):
            await attempt(breaker, LeaseLostError("lost the job's lease"))
    assert breaker.state is BreakerState.CLOSED


async def test_a_failure_is_shared_only_when_other_callers_fail_too() -> None:
    breaker = CircuitBreaker("llm", clock=ManualClock(), fail_max=5)

    async def fails(caller: int) -> TransientError:
        with pytest.raises(TransientError) as failed:
            async with breaker.call(caller=caller):
                raise TransientError("HTTP 500")
        return failed.value

    assert not (await fails(1)).shared  # one request failing, so far alone
    assert not (await fails(1)).shared  # its retry: still alone
    async with breaker.call(caller=2):
        pass  # someone else is served: the service is fine, the first request is the problem
    assert not (await fails(1)).shared
    assert (await fails(3)).shared  # now a second caller fails in the same run: an outage
    assert (await fails(1)).shared
    await fail(breaker, 3)
    assert breaker.state is BreakerState.OPEN


async def test_one_conversation_failing_again_and_again_never_opens_it() -> None:
    """A prompt the server chokes on, retried and sent again by its user: one caller (the chat),
    so the service stays open to everyone else; a second chat failing in the same run opens it."""
    breaker = CircuitBreaker("llm", clock=ManualClock(), fail_max=5)

    async def fails(caller: int) -> None:
        with pytest.raises(TransientError):
            async with breaker.call(caller=caller):
                raise TransientError("HTTP 500")

    for _ in range(12):
        await fails(10)
    assert breaker.state is BreakerState.CLOSED
    await fails(20)
    assert breaker.state is BreakerState.OPEN
