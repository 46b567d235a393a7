"""``python -m botcore.migrate_to_postgres``, run as a subprocess: a SQLite database the bot's own
stores wrote is copied into a database of its own on the test cluster, then read back through
the PostgreSQL stores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from botcore.lockfile import DataDirLock
from botcore.migrate_to_postgres import MARKER_KEY, migrate
from botcore.migrations import MIGRATIONS
from botcore.models import ChatPrefs, JobState, NewJob, Usage
from botcore.pg_storage import PgStorage
from botcore.sqlite_storage import SqliteStorage
from botcore.storage import OFFSET_KEY, Storage

from . import postgres as pg

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_000.0
PASSWORD = "secret-pw"


def with_database(url: str, name: str, *, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}:{PASSWORD}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))


@pytest.fixture
async def target(postgres: pg.Cluster) -> AsyncIterator[str]:
    """An empty database of this test's own, owned by a role with a password; its URL (with it)."""
    name = "mig_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(postgres.url, timeout=10)
    try:
        await admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
        await admin.execute(f"CREATE DATABASE {name} OWNER {name}")
        yield with_database(postgres.url, name, user=name)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.execute(f"DROP ROLE {name}")
    finally:
        await admin.close()


async def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command, from ``cwd``, with neither DATABASE_URL nor DATA_DIR from this environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "botcore.migrate_to_postgres", *args]
    return await asyncio.to_thread(
        subprocess.run, argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def fill(storage: Storage) -> None:
    """Jobs in every state (one running, with a checkpoint), memory with images, usage, the
    polling offset and a chat's settings."""
    await storage.jobs.insert_many(
        [
            NewJob("chat", {"text": "what is this?"}, dedup_key="u:1", group_key="c:100"),
            NewJob("chat", {"text": "Grüße"}, dedup_key="u:2", group_key="c:200"),
            NewJob("voice", {"file": "AwAD"}, dedup_key="u:3", group_key="c:300"),
            NewJob("chat", dedup_key="u:4", dead_reason="an unusable update"),
        ],
        max_attempts=3,
        now=T0,
    )
    _, (first, second) = await storage.jobs.finish_and_claim([], {"chat": 2}, limit=2, now=T0 + 1, lease_s=60)
    assert first.lease_token and second.lease_token
    await storage.jobs.finish_and_claim([(first.id, first.lease_token)], {}, limit=0, now=T0 + 2, lease_s=60)
    assert await storage.jobs.save_checkpoint(second.id, second.lease_token, {"answer": "half"}, now=T0 + 3)
    talk = storage.conversations
    await talk.add_exchange(100, job_id=first.id, user_text="what is this?", answer="a cat", now=T0 + 2)
    await talk.add_exchange(
        100, job_id=9, user_text="and this?", answer="a\x00dog", now=T0 + 3, user_images=["AgA1"]
    )
    usage = Usage("chat", "gpt-4o-mini", prompt_tokens=10, completion_tokens=5, cost_usd=0.25, estimated=True)
    await storage.usage.record(usage, key="job:1:chat", job_id=first.id, chat_id=100, user_id=100, now=T0 + 2)
    heard = Usage("transcription", "whisper-1", audio_seconds=3.5)
    await storage.usage.record(heard, key="k2", job_id=None, chat_id=None, user_id=None, now=T0 + 3)
    await storage.kv.put(OFFSET_KEY, "123457")
    await storage.prefs.put(100, ChatPrefs(model="gpt-4o", stream=False, memory=True, voice="auto"), now=T0)


async def snapshot(storage: Storage) -> dict[str, Any]:
    """What the stores say about the data ``fill`` wrote."""
    return {
        "jobs": [await storage.jobs.get(job_id) for job_id in range(1, 5)],
        "transcript": await storage.conversations.transcript(100, since=0, limit=10),
        "history": await storage.conversations.history(100, limit=10, since=0),
        "usage": await storage.usage.summary(since=0),
        "top": await storage.usage.top_users(since=0),
        "offset": await storage.kv.get(OFFSET_KEY),
        "prefs": [await storage.prefs.get(100), await storage.prefs.get(200)],
    }


@pytest.fixture
async def sqlite_data(tmp_path: Path) -> dict[str, Any]:
    """``tmp_path/data/bot.db`` filled by the SQLite stores; what they say about it."""
    storage = await SqliteStorage.open(tmp_path / "data" / "bot.db")
    try:
        await fill(storage)
        return await snapshot(storage)
    finally:
        await storage.close()


async def in_postgres(url: str) -> dict[str, Any]:
    storage = await PgStorage.open(url, max_connections=2)
    try:
        return await snapshot(storage)
    finally:
        await storage.close()


def as_copied(before: dict[str, Any]) -> dict[str, Any]:
    """``before`` as the copy should have it: the running job queued, its attempt given back;
    PostgreSQL's text cannot hold a NUL."""
    jobs = list(before["jobs"])
    assert jobs[1].state is JobState.RUNNING and jobs[1].attempts == 1
    jobs[1] = jobs[1]._replace(state=JobState.QUEUED, attempts=0, lease_token=None, lease_until=None)
    swap = [t._replace(content=t.content.replace("\x00", "\ufffd")) for t in before["transcript"]]
    said = [replace(t, content=t.content.replace("\x00", "\ufffd")) for t in before["history"]]
    return {**before, "jobs": jobs, "transcript": swap, "history": said}


def counts(stdout: str) -> dict[str, list[int]]:
    """The summary table: each table's rows in SQLite, copied, already there, id taken."""
    rows = [line.split() for line in stdout.splitlines()]
    return {row[0]: [int(n) for n in row[1:]] for row in rows if len(row) == 5 and row[1].isdigit()}


async def marker(url: str) -> dict[str, Any] | None:
    storage = await PgStorage.open(url, max_connections=2)
    try:
        value = await storage.kv.get(MARKER_KEY)
        return None if value is None else json.loads(value)
    finally:
        await storage.close()


async def test_everything_is_copied_once_keeping_ids(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str
) -> None:
    done = await run(tmp_path, "--data-dir", "data", "--database-url", target)
    assert done.returncode == 0, done.stderr
    expected = {"jobs": [4, 4, 0, 0], "messages": [4, 4, 0, 0], "usage": [2, 2, 0, 0], "kv": [1, 1, 0, 0]}
    assert counts(done.stdout) == {**expected, "chat_prefs": [1, 1, 0, 0]}
    assert PASSWORD not in done.stdout + done.stderr and ":***@" in done.stdout
    copied = await in_postgres(target)
    assert copied == as_copied(sqlite_data)
    assert copied["jobs"][1].checkpoint == {"answer": "half"}
    assert copied["transcript"][-2].images == ("AgA1",)
    marked = await marker(target)
    assert marked is not None and marked["sqlite"] == str((tmp_path / "data" / "bot.db").resolve())
    assert marked["max_job_id"] == 4 and marked["rows"] == {
        t: n for t, (n, *_) in counts(done.stdout).items()
    }

    # The bot runs on PostgreSQL for a while: it queues a job, purges done jobs and old memory.
    storage = await PgStorage.open(target, max_connections=2)
    try:
        [new] = await storage.jobs.insert_many([NewJob("chat", dedup_key="u:5")], max_attempts=3, now=T0)
        [old] = await storage.jobs.insert_many([NewJob("chat", dedup_key="u:2")], max_attempts=3, now=T0)
        assert new.created and new.job.id > 4
        assert (old.created, old.job) == (False, copied["jobs"][1])
        await storage.jobs.purge(done_before=T0 + 10, dead_before=T0 + 10)
        assert await storage.conversations.purge_expired(before=T0 + 10) == 4
    finally:
        await storage.close()
    ran = await in_postgres(target)
    assert ran["jobs"][0] is None and ran["transcript"] == []

    # Again, with the URL and data directory from .env, with --merge too: already migrated,
    # nothing copied, the purged jobs and memory do not come back.
    (tmp_path / ".env").write_text(f"DATABASE_URL={target}\nDATA_DIR=data\n")
    for args in ([], ["--merge"]):
        again = await run(tmp_path, *args)
        assert again.returncode == 0, again.stderr
        assert "already migrated" in again.stdout and marked["at"] in again.stdout
        assert marked["sqlite"] in again.stdout and counts(again.stdout) == {}
        assert await in_postgres(target) == ran
    assert await marker(target) == marked
    storage = await PgStorage.open(target, max_connections=2)
    try:  # the identity did not move back
        [newer] = await storage.jobs.insert_many([NewJob("chat")], max_attempts=3, now=T0)
        assert newer.job.id > new.job.id
    finally:
        await storage.close()


async def test_a_dry_run_reports_and_copies_nothing(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str
) -> None:
    done = await run(tmp_path, "--sqlite", "data/bot.db", "--database-url", target, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert counts(done.stdout)["jobs"] == [4, 4, 0, 0]
    assert (await in_postgres(target))["jobs"] == [None] * 4
    assert await marker(target) is None


async def bot_ran_on(url: str) -> None:
    """A bot ran on the PostgreSQL at ``url``: job 1 is the same as SQLite's job 1, job 2 another
    one than SQLite's job 2."""
    storage = await PgStorage.open(url, max_connections=2)
    try:
        same = NewJob("chat", {"text": "what is this?"}, dedup_key="u:1", group_key="c:100")
        other = NewJob("chat", {"text": "hello"}, dedup_key="u:77", group_key="c:700")
        await storage.jobs.insert_many([same, other], max_attempts=3, now=T0 + 50)
    finally:
        await storage.close()


async def test_it_refuses_a_postgresql_a_bot_ran_on(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str
) -> None:
    await bot_ran_on(target)
    before = await in_postgres(target)
    for args in ([], ["--dry-run"]):
        done = await run(tmp_path, "--data-dir", "data", "--database-url", target, *args)
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert "already has data (jobs)" in done.stderr and "--merge" in done.stderr
        assert len(done.stderr.splitlines()) == 1 and PASSWORD not in done.stderr
    assert await in_postgres(target) == before and before["jobs"][2] is None
    assert await marker(target) is None


async def test_merge_copies_into_a_postgresql_a_bot_ran_on_and_reports_taken_ids(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str
) -> None:
    await bot_ran_on(target)
    before = await in_postgres(target)
    done = await run(tmp_path, "--data-dir", "data", "--database-url", target, "--merge")
    assert done.returncode == 0, done.stderr
    assert counts(done.stdout)["jobs"] == [4, 2, 1, 1]
    assert counts(done.stdout)["messages"] == [4, 4, 0, 0]
    assert "rows left out (jobs 1)" in done.stderr and "unrelated job" in done.stderr
    after = await in_postgres(target)
    assert after["jobs"][:2] == before["jobs"][:2]  # PostgreSQL's rows were kept
    assert after["jobs"][2:] == as_copied(sqlite_data)["jobs"][2:]
    assert (await marker(target) or {}).get("rows", {}).get("jobs") == 4


async def test_it_refuses_while_the_bot_holds_the_data_directory(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str
) -> None:
    with DataDirLock(tmp_path / "data"):
        done = await run(tmp_path, "--data-dir", "data", "--database-url", target)
    assert done.returncode == 2
    assert "stop it first" in done.stderr and len(done.stderr.splitlines()) == 1


async def test_it_refuses_while_bots_run_against_postgresql(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str
) -> None:
    storage = await PgStorage.open(target, max_connections=2)
    try:
        await storage.jobs.insert_many([NewJob("chat")], max_attempts=3, now=T0)
        await storage.jobs.finish_and_claim([], {"chat": 1}, limit=1, now=T0, lease_s=60)
    finally:
        await storage.close()
    done = await run(tmp_path, "--data-dir", "data", "--database-url", target)
    assert done.returncode == 2
    assert "seems to be running" in done.stderr and PASSWORD not in done.stderr


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--data-dir", "nowhere", "--database-url", "postgresql://u@127.0.0.1/db"], "no such SQLite file"),
        (["--data-dir", "data"], "give --database-url or set DATABASE_URL"),
        (["--data-dir", "data", "--database-url", "mysql://u@host/db"], "must start with postgresql://"),
        (
            [
                "--data-dir",
                "data",
                "--database-url",
                f"postgresql://u:{PASSWORD}@127.0.0.1:{closed_port()}/db",
            ],
            "cannot connect",
        ),
    ],
    ids=["no-sqlite-file", "no-url", "not-postgresql", "unreachable"],
)
async def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path, sqlite_data: dict[str, Any], args: list[str], says: str
) -> None:
    done = await run(tmp_path, *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert says in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert PASSWORD not in done.stderr
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("batch", [1, 3])
async def test_batches_of_any_size_copy_every_row(
    tmp_path: Path, sqlite_data: dict[str, Any], target: str, batch: int
) -> None:
    counted = (await migrate(tmp_path / "data" / "bot.db", target, batch=batch)).counts
    assert [(c.table, c.in_sqlite, c.copied) for c in counted] == [
        ("jobs", 4, 4), ("messages", 4, 4), ("usage", 2, 2), ("kv", 1, 1), ("chat_prefs", 1, 1)
    ]  # fmt: skip
    assert await in_postgres(target) == as_copied(sqlite_data)


async def test_an_older_sqlite_database_is_brought_up_to_date_first(tmp_path: Path, target: str) -> None:
    (tmp_path / "data").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "bot.db")) as old:
        for statement in (s for migration in MIGRATIONS[:3] for s in migration):
            old.execute(statement)
        old.execute(
            "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at, updated_at)"
            " VALUES ('chat', '{}', 'done', 3, 1, 1, 1)"
        )
        old.execute(
            "INSERT INTO usage (created_at, job_id, kind, model, cost_usd) VALUES (5, 1, 'chat', 'm', 2)"
        )
        old.execute("PRAGMA user_version = 3")
        old.commit()
    done = await run(tmp_path, "--database-url", target)
    assert done.returncode == 0, done.stderr
    storage = await PgStorage.open(target, max_connections=2)
    try:
        assert (await storage.usage.summary(since=0)).cost_usd == 2
        # Its billing key came with it: the same call is not recorded twice.
        again = Usage("chat", "m", cost_usd=2)
        assert not await storage.usage.record(
            again, key="job:1:chat", job_id=1, chat_id=None, user_id=None, now=9
        )
    finally:
        await storage.close()
