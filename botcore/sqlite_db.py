"""The process's one SQLite connection: pragmas, migrations, and serialised access, with
SQLite's "the database refuses for now" errors translated into ``StorageUnavailable``.
Knows no table; the SQLite stores own their SQL and call in through ``Database``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from loguru import logger

from botcore.errors import SchemaTooNewError, StartupError, StorageUnavailable
from botcore.migrations import MIGRATIONS

Params = Sequence[Any] | dict[str, Any]
Row = tuple[Any, ...]
_MIN_SQLITE = (3, 35, 0)  # UPDATE … RETURNING


def _outage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the database refuses work for now (locked by another program, disk
    full, an I/O error), as opposed to refusing one piece of data."""
    return isinstance(exc, sqlite3.OperationalError) or (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.ProgrammingError)
    )


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        if _outage(exc):
            raise StorageUnavailable(str(exc)) from exc
        raise


class Database:
    """One aiosqlite connection in autocommit mode. Every call holds one asyncio lock, so a
    multi-statement ``transaction()`` never interleaves with another coroutine's statements."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        self._busy_timeout_ms = 5000

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000) -> Database:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StartupError(
                f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or newer is needed "
                "(install a newer Python or pysqlite3)"
            )
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(f"{path}: cannot open the database: {exc}") from None
        db = cls(conn, path)
        try:
            version = await db._schema_version()  # before any pragma writes to the file
            mode = await db.fetchone("PRAGMA journal_mode = WAL")
            if mode is None or str(mode[0]).lower() != "wal":
                raise StartupError(f"{path}: could not switch the database to WAL mode")
            await db.fetchall(f"PRAGMA synchronous = {synchronous}")
            db._busy_timeout_ms = int(busy_timeout_ms)
            await db.fetchall(f"PRAGMA busy_timeout = {db._busy_timeout_ms}")
            await db.fetchall("PRAGMA journal_size_limit = 67108864")  # the WAL shrinks back to 64 MB
            # SQLite's default 2 MB page cache is smaller than a 20k-job backlog (about 5 MB): the
            # claim then re-reads its index pages from the OS on every batch. The cache grows only
            # as pages are read, so a small database still uses little memory.
            await db.fetchall("PRAGMA cache_size = -32768")  # KiB: 32 MB
            await db.fetchall("PRAGMA foreign_keys = ON")
            await db._migrate(version)
        except (sqlite3.Error, StorageUnavailable) as exc:  # locked, not a database, read-only…
            await conn.close()
            raise StartupError(f"{path}: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            with _translated():
                return list(await self._conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def maintain(self) -> None:
        """Let SQLite refresh its planner statistics, and fold the WAL back into the database
        file and truncate it, so neither file grows without bound."""
        await self.fetchall("PRAGMA optimize")
        # A reader (a backup, a sqlite3 shell) makes TRUNCATE wait for the busy timeout while it
        # holds our one connection: wait 100 ms at most; a checkpoint that gives up is partial,
        # and journal_size_limit still bounds the file.
        async with self._lock:
            with _translated():
                await self._conn.execute("PRAGMA busy_timeout = 100")
                try:
                    await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    await self._conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    async def delete_in_batches(self, table: str, where: str, params: Params, *, batch: int = 1000) -> int:
        """``DELETE FROM table WHERE where``, ``batch`` rows per statement, so no other write waits
        long behind it. ``table`` and ``where`` are our own constants, never user input."""
        sql = (
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT ?)"
            " RETURNING 1"
        )
        total = 0
        while True:
            rows = await self.fetchall(sql, (*params, batch))
            total += len(rows)
            if len(rows) < batch:
                return total

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception, cancellation included."""
        async with self._lock:
            try:
                with _translated():
                    await self._conn.execute_fetchall("BEGIN IMMEDIATE")
                    yield Transaction(self._conn)
                    await self._conn.execute_fetchall("COMMIT")
            except BaseException:
                # Also when BEGIN or COMMIT was cancelled or failed: aiosqlite runs calls in order
                # on its thread, so this rollback runs after them and before any later statement,
                # and it is a no-op when no transaction is open.
                await self._conn.rollback()
                raise

    async def _schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        current = int(row[0]) if row else 0
        if current > len(MIGRATIONS):
            raise SchemaTooNewError(
                f"{self.path} has schema version {current} but this version of the bot knows "
                f"only up to {len(MIGRATIONS)}: run a newer release, or restore a backup made for this one"
            )
        return current

    async def _migrate(self, current: int) -> None:
        latest = len(MIGRATIONS)
        for version in range(current + 1, latest + 1):
            async with self.transaction() as tx:
                for statement in MIGRATIONS[version - 1]:
                    await tx.fetchall(statement)
                await tx.fetchall(f"PRAGMA user_version = {version}")
            logger.bind(component="db").info("database migrated to schema version {}", version)


class Transaction:
    """Statements inside an open transaction; only valid within ``Database.transaction()``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        cursor = await self._conn.executemany(sql, rows)
        await cursor.close()
