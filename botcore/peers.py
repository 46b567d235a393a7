"""How many bot processes share the database right now, so limits that no database holds can be
divided among them: Telegram's outgoing pace (30 calls a second overall, 20 a minute per group)
is one budget for the whole bot, so each process takes its part of it. Each process writes a
heartbeat (a key-value row) every ``every_s`` and counts the rows fresher than ``stale_s``; a
process that died stops counting after that long, and its row is deleted by whoever sees it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from loguru import logger

from botcore.clock import Clock
from botcore.storage import PEER_PREFIX, KeyValueStore


class Peers:
    def __init__(
        self,
        kv: KeyValueStore,
        clock: Clock,
        on_count: Callable[[int], None],
        *,
        every_s: float = 2.0,
        stale_s: float = 7.0,
    ) -> None:
        self._kv = kv
        self._clock = clock
        self._on_count = on_count
        self._every_s = every_s
        self._stale_s = stale_s
        self._key = PEER_PREFIX + uuid.uuid4().hex[:12]
        self._stop = asyncio.Event()
        self._log = logger.bind(component="peers")
        self.count = 1

    def stop(self) -> None:
        self._stop.set()

    async def beat(self) -> int:
        """Say this process is alive, and count the live ones (this one included)."""
        now = self._clock.now()
        await self._kv.put(self._key, repr(now))
        live = 0
        for key, seen in (await self._kv.with_prefix(PEER_PREFIX)).items():
            try:
                fresh = now - float(seen) < self._stale_s
            except ValueError:
                fresh = False
            if fresh:
                live += 1
            elif key != self._key:
                await self._kv.delete(key)
        live = max(1, live)
        if live != self.count:
            self._log.info(
                "{} bot process(es) share the database; this one takes 1/{} of Telegram's pace", live, live
            )
        self.count = live
        self._on_count(live)
        return live

    async def run(self) -> None:
        """Beat until stopped, then remove this process's row (the others count it out at once)."""
        try:
            while not self._stop.is_set():
                try:
                    await self.beat()
                except Exception as exc:  # the database refuses for now: keep the last count
                    self._log.warning("could not count the bot processes ({})", type(exc).__name__)
                await self._clock.wait(self._stop, self._every_s)
        finally:
            try:
                await self._kv.delete(self._key)
            except Exception as exc:
                self._log.warning("could not remove this process's heartbeat ({})", type(exc).__name__)
