"""The SQLite backend as one ``storage.Storage``: opens the database (pragmas, migrations) and
hands out its stores. The default backend: one file, no server."""

from __future__ import annotations

from pathlib import Path

from botcore.sqlite_data import SqliteChatPrefs, SqliteConversations, SqliteKeyValue, SqliteUsage
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.storage import ChatPrefsStore, ConversationStore, JobStore, KeyValueStore, UsageStore


class SqliteStorage:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Typed as the protocols: a caller of the bundle sees only what every backend offers.
        self.jobs: JobStore = SqliteJobStore(db)
        self.conversations: ConversationStore = SqliteConversations(db)
        self.usage: UsageStore = SqliteUsage(db)
        self.kv: KeyValueStore = SqliteKeyValue(db)
        self.prefs: ChatPrefsStore = SqliteChatPrefs(db)

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "NORMAL") -> SqliteStorage:
        return cls(await Database.open(path, synchronous=synchronous))

    @property
    def description(self) -> str:
        return f"SQLite at {self.db.path}"

    async def maintain(self) -> None:
        await self.db.maintain()

    async def close(self) -> None:
        await self.db.close()
