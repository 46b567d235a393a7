"""A circuit breaker per upstream (chat LLM, transcription).

Our own small module rather than aiobreaker 1.2: that one closes on the first half-open success,
lets every concurrent call through while half-open, counts excluded errors as successes and
mixes naive UTC and local datetimes (FIELD_NOTES). The rules here:

- CLOSED: calls go through; ``fail_max`` consecutive counted failures open it, when they come
  from more than one caller (a conversation: one chat's failing prompt is not an outage).
- OPEN: no call reaches the upstream (``UpstreamUnavailable`` with the time left) for ``reset_s``.
- HALF_OPEN: one trial call at a time; ``success_threshold`` consecutive successes close it,
  a failed trial opens it again.

Counted as failures: our ``TransientError`` (timeouts, connection errors, 5xx, 408) and
``UpstreamUnavailable`` (429 rate limiting). ``PermanentError`` (400, 401, 403, 404, 413, 422,
content filter) counts as neither success nor failure, and neither does a lost lease,
cancellation or a bug of ours. Time is a monotonic clock, injected.

The breaker also tells an outage from one request that fails: a ``TransientError`` leaving it
is marked ``shared`` when the circuit is not closed or when another caller's failure is part of
the same run of failures (or when it was shared already: an unreachable server is everyone's).
A prompt that fails alone is not shared. Calls with no caller (None), rate limits (429) and an
unreachable server are nobody in particular: their failures open the circuit as in a plain
breaker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from enum import StrEnum

from loguru import logger

from botcore.clock import Clock
from botcore.errors import Cause, TransientError, UpstreamUnavailable


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_s: float = 60.0,
        success_threshold: int = 2,
        clock: Clock,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.name = name
        self._fail_max = fail_max
        self._reset_s = reset_s
        self._success_threshold = success_threshold
        self._clock = clock
        self._observe = observe  # told (name, "ok" or "failed", seconds) of each call made
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._failing_callers: set[object] = set()  # who failed since the last success
        self._log = logger.bind(component="breaker")

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock.monotonic() - self._opened_at >= self._reset_s:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until a call may be tried again (0 when one may go now)."""
        state = self.state
        if state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self._reset_s - self._clock.monotonic())
        if state is BreakerState.HALF_OPEN and self._trial_in_flight:
            return 1.0  # the trial's outcome decides; look again shortly
        return 0.0

    def refuse_if_open(self) -> None:
        """Raise ``UpstreamUnavailable`` if a call would be refused now (before costly work for it)."""
        state = self.state
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._trial_in_flight):
            raise UpstreamUnavailable(
                f"{self.name} is unavailable (circuit open)",
                retry_after=self.retry_after(),
                cause=Cause.CIRCUIT_OPEN,
            )

    @asynccontextmanager
    async def call(self, caller: object = None) -> AsyncIterator[None]:
        """Wrap one upstream call on behalf of ``caller`` (a chat: its messages and their retries
        are one caller). Raises ``UpstreamUnavailable`` without calling when open."""
        self.refuse_if_open()
        trial = self.state is BreakerState.HALF_OPEN
        if trial:
            self._trial_in_flight = True
        started = self._clock.monotonic()
        try:
            yield
        except (TransientError, UpstreamUnavailable) as exc:
            # A rate limit or an unreachable server is nobody's prompt: it counts as everyone's.
            everyone = isinstance(exc, UpstreamUnavailable) or exc.shared
            self._failing_callers.add(None if everyone else caller)
            self._failure(trial)
            if isinstance(exc, TransientError):
                others = len(self._failing_callers) > 1
                exc.shared = exc.shared or others or self._state is not BreakerState.CLOSED
            self._observed("failed", started)
            raise
        except BaseException:  # permanent errors, cancellation, our bugs: the upstream is not to blame
            raise
        else:
            self._success(trial)
            self._observed("ok", started)
        finally:
            if trial:
                self._trial_in_flight = False

    def _observed(self, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(self.name, outcome, self._clock.monotonic() - started)

    def _success(self, trial: bool) -> None:
        self._failures = 0
        self._failing_callers.clear()
        if trial:
            self._successes += 1
            if self._successes >= self._success_threshold:
                self._move(BreakerState.CLOSED)

    def _failure(self, trial: bool) -> None:
        if trial:
            self._move(BreakerState.OPEN)
            return
        if self._state is BreakerState.CLOSED:
            self._failures += 1
            # One conversation's prompt that keeps failing (its retries, the user sending it
            # again) must not close the service to everyone: it takes failures seen by two.
            one_caller = len(self._failing_callers) == 1 and None not in self._failing_callers
            if self._failures >= self._fail_max and not one_caller:
                self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        if state is self._state:
            return
        level = "INFO" if state is BreakerState.CLOSED else "WARNING"  # recovery is good news
        self._log.log(level, "{}: circuit {} -> {}", self.name, self._state, state)
        self._state = state
        self._failures = 0
        self._successes = 0
        if state is BreakerState.OPEN:
            self._opened_at = self._clock.monotonic()
