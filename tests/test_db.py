import asyncio
import sqlite3
from pathlib import Path

import pytest

from botcore.errors import AlreadyRunningError, SchemaTooNewError, StartupError
from botcore.lockfile import DataDirLock
from botcore.migrations import MIGRATIONS
from botcore.sqlite_db import Database


async def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"
        assert (await db.fetchone("PRAGMA synchronous"))[0] == 1  # NORMAL
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1
        assert (await db.fetchone("PRAGMA busy_timeout"))[0] == 5000
        assert (await db.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS)
    finally:
        await db.close()


async def test_synchronous_full_is_selectable(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "bot.db", synchronous="FULL")
    try:
        assert (await db.fetchone("PRAGMA synchronous"))[0] == 2
    finally:
        await db.close()


async def test_reopen_does_not_migrate_again(tmp_path: Path) -> None:
    for _ in range(2):
        db = await Database.open(tmp_path / "bot.db")
        await db.close()
    with sqlite3.connect(tmp_path / "bot.db") as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'").fetchone()[0] == 1


async def test_newer_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE future (x)")
        raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError, match=r"newer release|knows only up to"):
        await Database.open(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 5
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'jobs'").fetchone()[0] == 0
    raw.close()
    assert path.read_bytes()[:100] == before[:100]


async def test_transaction_rolls_back_on_error(db: Database) -> None:
    await db.fetchall("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.fetchall("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
    assert (await db.fetchone("SELECT count(*) FROM t"))[0] == 0


async def test_other_coroutines_never_join_an_open_transaction(db: Database) -> None:
    """A statement issued by another coroutine while a transaction is open must not be
    swallowed by that transaction's rollback: it waits, then commits on its own."""
    await db.fetchall("CREATE TABLE t (x INTEGER)")
    inside = asyncio.Event()

    async def failing_transaction() -> None:
        async with db.transaction() as tx:
            await tx.fetchall("INSERT INTO t VALUES (1)")
            inside.set()
            await asyncio.sleep(0.05)  # give the other coroutine every chance to interleave
            raise RuntimeError("roll back")

    async def outsider() -> None:
        await inside.wait()
        await db.fetchall("INSERT INTO t VALUES (2)")

    results = await asyncio.gather(failing_transaction(), outsider(), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert await db.fetchall("SELECT x FROM t") == [(2,)]


async def test_cancelled_transaction_rolls_back(db: Database) -> None:
    await db.fetchall("CREATE TABLE t (x INTEGER)")
    inside = asyncio.Event()

    async def slow() -> None:
        async with db.transaction() as tx:
            await tx.fetchall("INSERT INTO t VALUES (1)")
            inside.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(slow())
    await asyncio.wait_for(inside.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await db.fetchone("SELECT count(*) FROM t"))[0] == 0
    await db.fetchall("INSERT INTO t VALUES (3)")  # the connection is usable afterwards
    assert (await db.fetchone("SELECT count(*) FROM t"))[0] == 1


def test_one_process_per_data_directory(tmp_path: Path) -> None:
    # flock is per open file description, so a second open in this process conflicts too.
    with (
        DataDirLock(tmp_path),
        pytest.raises(AlreadyRunningError, match="already using"),
        DataDirLock(tmp_path),
    ):
        pass
    with DataDirLock(tmp_path):  # released on exit
        pass


async def test_unreadable_database_is_a_clean_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(b"this is not a database, just some text that is long enough" * 100)
    with pytest.raises(StartupError, match="file is not a database"):
        await Database.open(path)


async def test_cancelled_while_waiting_to_begin_leaves_no_open_transaction(tmp_path: Path) -> None:
    """Cancelled during BEGIN (waiting on another program's lock): the later statements of other
    coroutines must still commit, not run inside a transaction nobody will end."""
    db = await Database.open(tmp_path / "bot.db", busy_timeout_ms=2000)
    await db.fetchall("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    reopened: Database | None = None
    try:
        other.execute("BEGIN IMMEDIATE")

        async def writer() -> None:
            async with db.transaction() as tx:
                await tx.fetchall("INSERT INTO t VALUES (1)")

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.1)  # now waiting inside BEGIN IMMEDIATE on the database thread
        task.cancel()
        # The other program lets go soon after, so the cancelled BEGIN still succeeds.
        asyncio.get_running_loop().call_later(0.1, other.execute, "ROLLBACK")
        with pytest.raises(asyncio.CancelledError):
            await task
        await db.fetchall("INSERT INTO t VALUES (2)")
        await db.close()
        reopened = await Database.open(tmp_path / "bot.db")
        assert await reopened.fetchall("SELECT x FROM t") == [(2,)]
    finally:
        other.close()
        await db.close()  # closing twice is harmless; a failed test must not leave its thread
        if reopened is not None:
            await reopened.close()


async def test_an_older_database_is_migrated_forward_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as raw:
        for statement in MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("PRAGMA user_version = 1")
        raw.execute(
            "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at, updated_at)"
            " VALUES ('chat', '{}', 'queued', 4, 0, 0, 0)"
        )
    raw.close()
    db = await Database.open(path)
    try:
        assert (await db.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS) > 1
        assert (await db.fetchone("SELECT count(*) FROM jobs"))[0] == 1
        assert (await db.fetchone("SELECT count(*) FROM messages"))[0] == 0
    finally:
        await db.close()
