"""Telegram's flood limits for every Bot API call (overall per second, per group per minute, as
python-telegram-bot's AIORateLimiter keeps them, with aiolimiter's buckets), in two lanes: an
answer goes first; a cosmetic call (typing, a receipt, a streamed preview), made with a ``Lane``,
takes only a turn no answer is waiting for, so under load it costs answers nothing, and a
``Lane`` tells whether its call has left, so one that has not can still be called off."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.ext import BaseRateLimiter

_GROUPS_KEPT = 512  # per-group buckets; beyond this, the idle ones are forgotten
Result = bool | dict[str, Any] | list[dict[str, Any]]


class Lane:
    """One cosmetic call's place: passed as the call's ``rate_limit_args``; ``started`` once the
    call has gone to Telegram (calling it off then could lose what it did)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


class PacedLimiter(BaseRateLimiter[Lane]):
    """``rate_per_s`` 0 turns pacing off (a cosmetic call then goes at once, as any other).

    Only calls to a chat are paced, as Telegram counts them. An answer to a group waits for that
    group's bucket before it counts as waiting overall, so a busy group does not hold back the
    cosmetic calls of other chats; within the group, a cosmetic call takes only a turn that no
    answer to the group is waiting for."""

    def __init__(self, *, rate_per_s: float, group_rate_per_min: float) -> None:
        self._rate_per_s = rate_per_s
        self._group_rate_per_min = group_rate_per_min
        self._overall = _bucket(rate_per_s, 1) if rate_per_s > 0 else None
        self._group_rate = group_rate_per_min if rate_per_s > 0 else 0.0
        self._groups: dict[int | str, AsyncLimiter] = {}
        self.shares = 1  # how many processes share the bot's limits (this one takes its part)
        self._group_answers: Counter[int | str] = Counter()  # answers waiting for a group's turn
        self._answers_waiting = 0
        self._no_answer_waiting = asyncio.Event()
        self._no_answer_waiting.set()
        self._cosmetic: deque[asyncio.Future[None]] = deque()  # in the order they came
        self._usher: asyncio.Task[None] | None = None

    async def initialize(self) -> None:
        pass

    def share(self, processes: int) -> None:
        """Take one ``processes``-th of Telegram's limits: that many processes send for this bot.
        Calls already waiting finish at the old pace; the next ones take the new one."""
        processes = max(1, processes)
        if processes == self.shares or self._overall is None:
            return
        self.shares = processes
        self._overall = _bucket(self._rate_per_s / processes, 1)
        self._group_rate = self._group_rate_per_min / processes
        self._groups.clear()  # new buckets at the new rate, as groups come

    async def shutdown(self) -> None:
        if self._usher is not None:
            self._usher.cancel()
            await asyncio.gather(self._usher, return_exceptions=True)
        while self._cosmetic:  # no turn will come: their calls are called off
            self._cosmetic.popleft().cancel()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: Lane | None,
    ) -> Result:
        chat_id = data.get("chat_id")
        with contextlib.suppress(ValueError, TypeError):
            chat_id = int(chat_id)  # type: ignore[arg-type]
        group = self._group_bucket(chat_id)
        paced = chat_id is not None and self._overall is not None
        if rate_limit_args is None:  # an answer: its group's turn, then the overall one
            if group is not None:
                await self._group_answer_turn(chat_id, group)
            if paced:
                await self._answer_turn(self._overall)  # type: ignore[arg-type]
            return await callback(*args, **kwargs)
        # A cosmetic call: the overall turn first, so one called off while it waits has taken
        # nothing from its group's 20 a minute.
        if paced:
            await self._cosmetic_turn(self._overall)  # type: ignore[arg-type]
        if group is not None:
            await self._spare(group, lambda: not self._group_answers[chat_id])
        rate_limit_args.started = True
        return await callback(*args, **kwargs)

    def _group_bucket(self, chat_id: Any) -> AsyncLimiter | None:
        is_group = (isinstance(chat_id, int) and chat_id < 0) or isinstance(chat_id, str)
        if not is_group or not self._group_rate:
            return None
        if chat_id not in self._groups and len(self._groups) >= _GROUPS_KEPT:
            for key, bucket in list(self._groups.items()):
                if bucket.has_capacity(bucket.max_rate):  # idle for a whole minute: nothing to keep
                    del self._groups[key]
        bucket = self._groups.get(chat_id)
        if bucket is None:
            bucket = self._groups[chat_id] = _bucket(self._group_rate, 60)
        return bucket

    async def _group_answer_turn(self, chat_id: int | str, group: AsyncLimiter) -> None:
        self._group_answers[chat_id] += 1
        try:
            await group.acquire()
        finally:
            self._group_answers[chat_id] -= 1
            if not self._group_answers[chat_id]:
                del self._group_answers[chat_id]

    async def _answer_turn(self, overall: AsyncLimiter) -> None:
        self._answers_waiting += 1
        self._no_answer_waiting.clear()
        try:
            await overall.acquire()
        finally:
            self._answers_waiting -= 1
            if not self._answers_waiting:
                self._no_answer_waiting.set()

    async def _cosmetic_turn(self, overall: AsyncLimiter) -> None:
        if not self._answers_waiting and not self._cosmetic and overall.has_capacity():
            await overall.acquire()  # a free turn: at once
            return
        turn = asyncio.get_running_loop().create_future()
        self._cosmetic.append(turn)
        if self._usher is None or self._usher.done():
            self._usher = asyncio.get_running_loop().create_task(self._let_in(overall))
        await turn  # called off (cancelled) while waiting: the usher passes it over

    async def _let_in(self, overall: AsyncLimiter) -> None:
        """Cosmetic calls, one at a time, each when no answer waits and the bucket has room."""
        while self._cosmetic:
            await self._no_answer_waiting.wait()
            await self._spare(overall, lambda: not self._answers_waiting)
            while self._cosmetic:  # the turn is the next cosmetic call's still waiting
                turn = self._cosmetic.popleft()
                if not turn.done():
                    turn.set_result(None)
                    break

    @staticmethod
    async def _spare(bucket: AsyncLimiter, free: Callable[[], bool]) -> None:
        """A turn from ``bucket`` taken only when it has room now and ``free()`` (no answer waits
        for it): never queued in the bucket, where it would go ahead of answers that come later."""
        # Room comes with time, and no event says so: a look each time a turn may have come.
        while not (free() and bucket.has_capacity()):  # noqa: ASYNC110
            await asyncio.sleep(bucket.time_period / bucket.max_rate)
        await bucket.acquire()  # at once: it has room


def _bucket(rate: float, period: float) -> AsyncLimiter:
    """``rate`` calls per ``period`` seconds; under one, as one call per longer period (aiolimiter
    cannot take a turn from a bucket smaller than one)."""
    return AsyncLimiter(rate, period) if rate >= 1 else AsyncLimiter(1, period / rate)
