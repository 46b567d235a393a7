"""Time as a collaborator: the one ``Clock`` every component is given (the real wall clock, or
a manual clock that tests advance by hand), and the UTC calendar arithmetic on its readings.
Persisted times (``run_at``, leases) are Unix seconds, so they survive a restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Protocol

DAY_S = 86_400.0


def day_start(now: float) -> float:
    """The start of ``now``'s UTC day."""
    return now - now % DAY_S


def utc_date(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def month_start(now: float) -> float:
    """The start of ``now``'s UTC month."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds: for what is stored, and for calendar days."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back, whatever NTP does to the wall clock: for intervals kept in
        memory (a circuit's reset, a stream's pace, a notice's window)."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Return when ``event`` is set or ``timeout`` seconds of this clock have passed."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if event.is_set():
            return
        if timeout is not None and timeout <= 0:
            return
        # asyncio.timeout, unlike wait_for, starts no extra task: this runs once per batch.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()


class ManualClock:
    """A clock that moves only when ``advance`` is called; waiters wake when their deadline passes."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._ticked = asyncio.Event()

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._ticked.set()
        self._ticked = asyncio.Event()

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        deadline = None if timeout is None else self._now + timeout
        while not event.is_set() and (deadline is None or self._now < deadline):
            ticked = self._ticked
            waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(ticked.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
