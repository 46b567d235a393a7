"""The SQLite backend as one ``storage.Storage``: opens the database (pragmas, migrations) and
hands out its stores. The default backend: one file, no server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from botcore.sqlite_data import SqliteChatPrefs, SqliteConversations, SqliteKeyValue, SqliteUsage
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.storage import (
    ChatPrefsStore,
    ConversationStore,
    JobStore,
    KeyValueStore,
    RateCounter,
    UsageStore,
)


class SoleLeadership:
    """A process that holds the data directory's lock is the only one: it holds every role."""

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        pass


class SqliteStorage:
    shared = False  # one process: the data directory's lock proves it

    def __init__(self, db: Database) -> None:
        self.db = db
        # Typed as the protocols: a caller of the bundle sees only what every backend offers.
        self.jobs: JobStore = SqliteJobStore(db)
        self.conversations: ConversationStore = SqliteConversations(db)
        self.usage: UsageStore = SqliteUsage(db)
        self.kv: KeyValueStore = SqliteKeyValue(db)
        self.prefs: ChatPrefsStore = SqliteChatPrefs(db)
        self.rates: RateCounter | None = None  # one process: its in-memory limits are the bot's

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "NORMAL") -> SqliteStorage:
        return cls(await Database.open(path, synchronous=synchronous))

    @property
    def description(self) -> str:
        return f"SQLite at {self.db.path}"

    def leadership(self, name: str) -> SoleLeadership:
        return SoleLeadership()

    async def watch_enqueues(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """No other process queues jobs here."""

    async def maintain(self) -> None:
        await self.db.maintain()

    async def close(self) -> None:
        await self.db.close()
