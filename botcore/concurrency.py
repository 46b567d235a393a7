"""How many LLM calls may run at once: a number (``LLM_CONCURRENCY=8``), or found out
(``auto``, the default) the way TCP Vegas finds a connection's room, on the signals an LLM server
gives plainly: a refusal for load, and answers that slow down as more run at once.

- Queue estimate: with ``limit`` calls in flight, each costing ``cost`` where the best seen is
  ``best``, about ``limit × (1 − best / cost)`` of them wait in the server rather than being
  worked on (a server that works on 4 and queues the rest, at a limit of 6, shows calls 1.5
  times slower: 2 waiting). The cost of a stream is its wait for the first token, which a
  queueing server lengthens whatever the answer's length (and which no Telegram edit delays);
  of a plain call, its time per token written.
- It starts at 4 and grows by one per answer (doubling per round of answers) while nothing
  waits; then, once a round, by one while under one call waits, and back by one past 1.5. It
  grows only while the calls in flight fill it.
- A refusal for load (429, a timeout) halves it, once a round.
- Between 1 and ``LLM_MAX_CONCURRENCY``.
- One limit per model (``LlmLimits``); within one, streams and plain calls are measured apart.

Chosen over additive-increase-multiplicative-decrease on latency alone: with a server that is
always busy (a backlog), a latency threshold drifts up with the load it causes, and the limit
creeps past the server's parallelism; the queue estimate holds still. Over a gradient limiter
(Netflix's): fewer constants, each explained here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from loguru import logger

from botcore.clock import Clock
from botcore.errors import Cause, JobError

_START = 4
_MODELS_KEPT = 32  # models with a limit of their own
_GROW_BELOW, _SHRINK_ABOVE = 1.0, 1.5  # calls estimated waiting in the server
# Refusals for load. Not UNAVAILABLE: a server that is down or restarting is not a full one, and
# the breaker keeps calls away from it meanwhile.
_CAUSES_OF_STRAIN = (Cause.RATE_LIMITED, Cause.TIMEOUT)


@dataclass(slots=True)
class Call:
    """One call holding a slot. A stream says when its first token came (``first_token``); a
    plain call how many tokens it wrote, if it knows."""

    clock: Clock
    started: float
    tokens: int = 0
    first_token_after: float | None = None  # seconds from the start

    def first_token(self) -> None:
        if self.first_token_after is None:
            self.first_token_after = self.clock.monotonic() - self.started

    def cost(self, elapsed: float) -> float:
        """What the server's load shows in: the wait for the first token of a stream (a server
        that queues makes it grow, whatever the answer's length), else time per token."""
        if self.first_token_after is not None:
            return self.first_token_after
        return elapsed / max(1, self.tokens)


class LlmLimit:
    def __init__(self, *, clock: Clock, fixed: int | None, maximum: int = 64) -> None:
        self._clock = clock
        self.adaptive = fixed is None
        self._maximum = maximum
        self._limit = float(fixed if fixed is not None else min(_START, maximum))
        self._slow_start = True
        self._in_use = 0
        self._waiting = 0  # calls waiting for a slot: the limit is what holds them
        self._freed = asyncio.Condition()
        # The lowest cost seen (the server unloaded) and the cost lately (smoothed), for streams
        # (the wait for a first token) and for plain calls (time per token) apart: a chat may
        # turn streaming off, and the two measures differ twentyfold.
        self._best: dict[bool, float] = {}
        self._cost: dict[bool, float] = {}
        self._round_s = 1.0  # how long a call takes lately (smoothed): one round of answers
        self._next_round = 0.0  # no other change before this (monotonic)
        self._log = logger.bind(component="llm-limit")

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    @property
    def maximum(self) -> int:
        return self._maximum

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[Call]:
        async with self._freed:
            self._waiting += 1
            try:
                await self._freed.wait_for(lambda: self._in_use < self.limit)
            finally:
                self._waiting -= 1
            self._in_use += 1
            call = Call(self._clock, self._clock.monotonic())
        try:
            yield call
        except BaseException as exc:
            if isinstance(exc, JobError) and exc.cause in _CAUSES_OF_STRAIN:
                self._refused(exc.cause)
            raise
        else:
            self._succeeded(call)
        finally:
            async with self._freed:
                self._in_use -= 1
                self._freed.notify_all()

    def _succeeded(self, call: Call) -> None:
        if not self.adaptive:
            return
        now = self._clock.monotonic()
        elapsed = now - call.started
        self._round_s = 0.8 * self._round_s + 0.2 * elapsed
        cost, streamed = call.cost(elapsed), call.first_token_after is not None
        best = self._best[streamed] = min(self._best.get(streamed, cost), cost)
        lately = self._cost[streamed] = 0.7 * self._cost.get(streamed, cost) + 0.3 * cost
        waiting = self._limit * (1 - best / lately) if lately > 0 else 0.0
        wanted = self._waiting > 0  # more calls than slots: room would be used
        if self._slow_start and waiting < _GROW_BELOW:
            if wanted:
                self._limit = min(self._maximum, self._limit + 1)  # waiters hear of it as this slot frees
            return
        if now < self._next_round:
            return
        self._next_round = now + self._round_s
        if waiting > _SHRINK_ABOVE:
            self._resize(self._limit - 1, f"about {waiting:.0f} answers wait in the server")
        elif waiting < _GROW_BELOW and wanted:
            self._resize(min(self._maximum, self._limit + 1), "")

    def _refused(self, cause: Cause) -> None:
        now = self._clock.monotonic()
        if self.adaptive and now >= self._next_round:
            self._next_round = now + self._round_s  # the calls already in flight count once
            self._resize(self._limit / 2, f"the server refused for load ({cause})")

    def _resize(self, limit: float, why: str) -> None:
        before = self.limit
        self._limit = max(1.0, limit)
        if self._limit < before:
            self._slow_start = False
        if why and self.limit != before:
            self._log.info("LLM calls at once: {} → {} ({})", before, self.limit, why)


class LlmLimits:
    """A limit per model, made on first use: OpenAI's and OpenRouter's rate limits, and Ollama's
    parallel slots (OLLAMA_NUM_PARALLEL, per loaded model), are each model's, so one model's
    refusals (a busy free model a chat chose) must not hold the others down, nor a slower model
    look like a queue. Past ``_MODELS_KEPT`` models (typed names on a server that lists none),
    the rest share one."""

    def __init__(self, *, clock: Clock, fixed: int | None, maximum: int = 64, default: str = "") -> None:
        self._clock = clock
        self._fixed = fixed
        self.maximum = maximum
        self.adaptive = fixed is None
        self.default = default
        self._limits: dict[str, LlmLimit] = {}
        self.of(default)

    def of(self, model: str) -> LlmLimit:
        limit = self._limits.get(model)
        if limit is None:
            if len(self._limits) >= _MODELS_KEPT:
                return self.of("")
            limit = self._limits[model] = LlmLimit(clock=self._clock, fixed=self._fixed, maximum=self.maximum)
        return limit

    def items(self) -> list[tuple[str, LlmLimit]]:
        """Each model's limit, the default's first."""
        return list(self._limits.items())

    @property
    def in_use(self) -> int:
        return sum(limit.in_use for limit in self._limits.values())
