"""The PostgreSQL backend as one ``storage.Storage``: several processes, on one machine or many,
share its queue, memory, usage and settings. Adds what a shared database must offer them:
wake-ups through ``LISTEN``/``NOTIFY`` and leadership through session advisory locks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg
from loguru import logger

from botcore.pg_data import PgChatPrefs, PgConversations, PgKeyValue, PgRateCounter, PgUsage
from botcore.pg_db import JOBS_CHANNEL, PgDatabase, lock_key, translated
from botcore.pg_jobs import PgJobStore
from botcore.storage import (
    ChatPrefsStore,
    ConversationStore,
    JobStore,
    KeyValueStore,
    RateCounter,
    UsageStore,
)

_HOLD_TIMEOUT_S = 5.0


class PgLeadership:
    """Whether this process holds the named role ("cleanup", "polling"): a session advisory lock
    on a connection of its own. The server lets go of it the moment that connection ends, so a
    process that dies hands the role on at once, and one cut off by the network within a minute
    (the server's keepalive probes), while it stops doing the work itself within seconds."""

    def __init__(self, db: PgDatabase, name: str) -> None:
        self._db = db
        self._name = name
        self._key = lock_key(name)
        self._conn: asyncpg.Connection | None = None
        self._held = False

    async def hold(self) -> bool:
        """True while this process holds the role: takes it if free, and checks that a held one
        is still held (its connection alive). Never raises, and answers within a few seconds:
        an unreachable or silent server means "not"."""
        try:
            return await asyncio.wait_for(self._hold(), _HOLD_TIMEOUT_S)
        except Exception as exc:
            if self._held:
                logger.bind(component="db").warning("lost the lead of {}: {}", self._name, type(exc).__name__)
            await self.release()
            return False

    async def _hold(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._held = False
            self._conn = await self._db.leader_connection()
        if self._held:
            with translated():
                await self._conn.fetchval("SELECT 1")
            return True
        with translated():
            self._held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self._key))
        if self._held:
            logger.bind(component="db").info("this process now leads: {}", self._name)
        return self._held

    async def release(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
            if not conn.is_closed():
                conn.terminate()  # a server that does not answer: the socket goes, the lock with it


class PgStorage:
    shared = True  # other processes may be working the same tables right now

    def __init__(self, db: PgDatabase) -> None:
        self.db = db
        self.jobs: JobStore = PgJobStore(db)
        self.conversations: ConversationStore = PgConversations(db)
        self.usage: UsageStore = PgUsage(db)
        self.kv: KeyValueStore = PgKeyValue(db)
        self.prefs: ChatPrefsStore = PgChatPrefs(db)
        self.rates: RateCounter | None = PgRateCounter(db)

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None, max_connections: int = 10) -> PgStorage:
        return cls(await PgDatabase.open(url, schema=schema, max_size=max_connections))

    @property
    def description(self) -> str:
        return self.db.description

    def leadership(self, name: str) -> PgLeadership:
        return PgLeadership(self.db, name)

    async def watch_enqueues(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        await self.db.listen(JOBS_CHANNEL, wake, stop)

    async def maintain(self) -> None:
        """Forget rate-limit windows over an hour old; PostgreSQL's autovacuum does the rest."""
        await PgRateCounter(self.db).purge(before=time.time() - 3600)

    async def close(self) -> None:
        await self.db.close()
