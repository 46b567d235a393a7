"""The process's PostgreSQL connections (asyncpg): a pool for the stores, migrations, and the
server's "refuses work for now" errors translated into ``StorageUnavailable``. Also the two
things only a server offers several processes: ``LISTEN``/``NOTIFY`` wake-ups and advisory
locks that say which process leads. Knows no table beyond its own schema-version row; the
PostgreSQL stores own their SQL and call in through ``PgDatabase``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from loguru import logger

from botcore.errors import SchemaTooNewError, StartupError, StorageUnavailable
from botcore.pg_migrations import MIGRATIONS

Row = asyncpg.Record
JOBS_CHANNEL = "bot_jobs"  # NOTIFY'd when jobs are queued: idle workers in every process look
_PING_EVERY_S, _PING_TIMEOUT_S = 30.0, 10.0  # a dedicated connection is checked this often
_CLOCK_WARNED_S, _CLOCK_REFUSED_S = 1.0, 10.0  # this machine's clock against the server's
_MIGRATION_LOCK = 0x626F7401  # advisory lock held while migrating: processes starting together
# Errors that say the server refuses work for now, or the connection is gone: retried later.
_OUTAGE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,  # disk full, too many connections
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.PostgresSystemError,  # I/O error and the like
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, or a failover in progress
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection back in the pool needs beyond asyncpg's own rollback of an unfinished
    transaction: nothing. The pool's connections keep no session state (listening and advisory
    session locks have connections of their own), so asyncpg's reset query would only cost a
    round trip on every release."""


_SECRET_PARAMS = ("password", "sslpassword")  # libpq's and asyncpg's URL query parameters


def redacted(url: str) -> str:
    """``url`` without its password (in the user part, or as a query parameter), for logs, the
    startup line and error messages."""
    parts = urlsplit(url)
    head, mark, query = url.partition("?")
    if parts.password is not None:
        hidden = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
        head = head.replace(parts.netloc, hidden, 1)
    query = "&".join(
        f"{name}=***" if name.lower() in _SECRET_PARAMS else f"{name}{sep}{value}"
        for name, sep, value in (pair.partition("=") for pair in query.split("&") if pair)
    )
    return head + mark + query


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except _OUTAGE as exc:
        raise StorageUnavailable(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    # The class and the server's message: never the DSN (an OSError names host and port only).
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PgDatabase:
    """A pool of connections; each call takes one for as long as it runs. ``schema`` (tests)
    keeps one database's data apart per schema, through ``search_path``."""

    def __init__(self, pool: asyncpg.Pool, url: str, schema: str | None) -> None:
        self._pool = pool
        self._url = url
        self._schema = schema
        self.description = f"PostgreSQL at {redacted(url)}" + (f" (schema {schema})" if schema else "")

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10
    ) -> PgDatabase:
        settings = {"search_path": schema} if schema else {}
        try:
            if schema:  # the schema must exist before a pool with it as search_path is useful
                conn = await asyncpg.connect(url, timeout=10)
                try:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                finally:
                    await conn.close()
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=10,
                command_timeout=60,
                server_settings=settings,
                reset=_keep_session,
            )
        except (*_OUTAGE, asyncpg.PostgresError, ValueError) as exc:
            raise StartupError(
                f"DATABASE_URL: cannot connect to {redacted(url)} ({_describe(exc)})"
            ) from None
        db = cls(pool, url, schema)
        try:
            await db._migrate()
            await db._check_clock()
        except (StorageUnavailable, asyncpg.PostgresError) as exc:
            await pool.close()
            raise StartupError(f"DATABASE_URL: {redacted(url)}: {exc}") from None
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        await self._pool.close()

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with translated():
            return await self._pool.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with translated():
            return await self._pool.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        with translated():
            return await self._pool.execute(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One connection inside ``BEGIN`` … ``COMMIT``; rolled back on any exception."""
        with translated():
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn

    async def delete_in_batches(self, table: str, where: str, *args: Any, batch: int = 1000) -> int:
        """``DELETE FROM table WHERE where``, ``batch`` rows per statement. ``table`` and
        ``where`` are our own constants; ``where``'s parameters start at $2 ($1 is the batch)."""
        sql = (
            f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {table} WHERE {where} LIMIT $1)) RETURNING 1) SELECT count(*) FROM gone"
        )
        total = 0
        while True:
            row = await self.fetchrow(sql, batch, *args)
            removed = int(row[0]) if row else 0
            total += removed
            if removed < batch:
                return total

    async def _check_clock(self) -> None:
        """Leases, retries and heartbeats are times written by one process and read by others,
        each by its own clock: refuse a clock far off the server's, and warn of one a little off.
        (Leases of JOB_LEASE_S, renewed every third of it, tolerate skews well below that.)"""
        before = time.time()
        row = await self.fetchrow("SELECT extract(epoch FROM clock_timestamp())::float8")
        after = time.time()
        skew = (before + after) / 2 - float(row[0]) if row else 0.0
        if abs(skew) > _CLOCK_REFUSED_S:
            raise StartupError(
                f"this machine's clock is {skew:+.0f} s off the database server's: set both right"
                " (NTP, e.g. systemd-timesyncd or chrony) before several processes share the queue"
            )
        if abs(skew) > _CLOCK_WARNED_S:
            logger.bind(component="db").warning(
                "this machine's clock is {:+.1f} s off the database server's; keep them in sync (NTP)", skew
            )

    async def _migrate(self) -> None:
        """Apply the migrations this database lacks, one transaction each, under an advisory
        lock: several processes starting at once migrate once."""
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS bot_schema (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),"
                " version INTEGER NOT NULL)"
            )
            current = await conn.fetchval("SELECT version FROM bot_schema") or 0
            latest = len(MIGRATIONS)
            if current > latest:
                raise SchemaTooNewError(
                    f"the database has schema version {current} but this version of the bot knows "
                    f"only up to {latest}: run a newer release, or restore a backup made for this one"
                )
            for version in range(current + 1, latest + 1):
                async with conn.transaction():  # a savepoint: each migration whole or not at all
                    for statement in MIGRATIONS[version - 1]:
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO bot_schema (version) VALUES ($1)"
                        " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                        version,
                    )
                logger.bind(component="db").info("database migrated to schema version {}", version)

    # -- several processes -------------------------------------------------------------------

    async def listen(self, channel: str, on_notify: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``on_notify`` whenever ``channel`` is notified, until ``stop``; a dedicated
        connection, opened again after it drops (each reconnection calls ``on_notify`` once,
        since a notification may have been missed while it was down)."""
        log = logger.bind(component="db")
        pause = 1.0
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ended=lost: ended.set())
                await conn.add_listener(channel, lambda *_: on_notify())
                on_notify()
                pause = 1.0
                while not (stop.is_set() or lost.is_set()):
                    await _first(stop.wait(), lost.wait(), asyncio.sleep(_PING_EVERY_S))
                    if not (stop.is_set() or lost.is_set()):  # a connection a network dropped
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), _PING_TIMEOUT_S)  # says nothing
                if lost.is_set() and not stop.is_set():
                    log.warning("the connection that listens for new jobs dropped; reconnecting")
            except Exception as exc:
                if stop.is_set():
                    break
                log.warning("cannot listen for new jobs ({}); retrying in {:g} s", _describe(exc), pause)
                await _first(stop.wait(), asyncio.sleep(pause))
                pause = min(pause * 2, 30.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def leader_connection(self) -> asyncpg.Connection:
        """A connection of its own, outside the pool, for session advisory locks: the lock lives
        exactly as long as the connection, so a process that dies lets go of it."""
        return await self._connect()

    async def _connect(self) -> asyncpg.Connection:
        """A connection of its own (listening, leading). The server probes it every few seconds
        once idle, so a process cut off by the network lets go of its locks within a minute;
        its own calls time out, so this side finds out too."""
        settings = {"search_path": self._schema} if self._schema else {}
        settings |= {"tcp_keepalives_idle": "15", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}
        with translated():
            return await asyncpg.connect(
                self._url, timeout=10, command_timeout=_PING_TIMEOUT_S, server_settings=settings
            )


def text(value: str | None) -> str | None:
    """``value`` as PostgreSQL's text takes it: a NUL (which it refuses, and SQLite keeps) becomes
    U+FFFD. Applied to free text we store: remembered messages, errors, settings, values."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def lock_key(name: str) -> int:
    """A stable advisory-lock number for ``name`` (a role such as "polling"), in the bot's own
    range (the high 32 bits say "bot") so it cannot meet another application's small numbers."""
    return (0x626F74 << 32) | zlib.crc32(name.encode())


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def params(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Columns of ``rows``: what ``unnest($1::…[], $2::…[], …)`` takes, one array per column."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else []
