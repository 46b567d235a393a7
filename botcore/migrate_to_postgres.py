"""``python -m botcore.migrate_to_postgres``: copy the bot's SQLite database into PostgreSQL, so
several bot processes can share one PostgreSQL. Stop the bot first, then run (from the bot's
directory, where ``.env`` is):

    python -m botcore.migrate_to_postgres --database-url postgresql://bot:PASSWORD@host/bot

``--database-url`` defaults to ``DATABASE_URL`` and ``--data-dir`` to ``DATA_DIR`` (else ./data),
from the environment or ``.env``; the SQLite file is ``<data-dir>/bot.db``, or ``--sqlite PATH``.
``--dry-run`` copies inside a transaction it rolls back: it reports what would be copied, and
only creates the PostgreSQL schema if it is missing.

Copies every table (jobs, memory, usage, small values such as the polling offset, chat
settings), keeping the ids, in one transaction: an interrupted run copies nothing. Jobs that
were running are queued again with their attempt given back. The same transaction writes the
``migrated-from-sqlite`` row in ``kv`` (the file, its size, its highest job id and row counts,
the time): a later run finds it and copies nothing, since by then the bot has run on PostgreSQL
and purged done jobs and expired memory that a second copy would bring back (old jobs would run
again). Only an empty PostgreSQL is copied into (``kv`` rows aside): one a bot already ran on
holds other rows under the same ids. ``--merge`` copies into it anyway, keeping what is there,
and reports the rows left out because their id (or dedup/billing key) belongs to a different
row, whose links by job id may then be wrong. Exit status 2 when it refuses (the bot holds the
data directory, PostgreSQL has running jobs, or data without ``--merge``), 1 when the copy
failed (nothing was copied). Owns no schema: both databases are migrated by their own modules
first."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
from dotenv import load_dotenv
from loguru import logger

from botcore.errors import BotError, StartupError
from botcore.lockfile import DataDirLock
from botcore.pg_db import PgDatabase, lock_key, params, redacted, text
from botcore.sqlite_db import Database

BATCH = 1000  # rows read from SQLite and inserted into PostgreSQL at a time
MARKER_KEY = "migrated-from-sqlite"  # kv: this PostgreSQL holds a copy of a SQLite database
_SCHEMES = ("postgresql://", "postgres://")
_HELD = ("jobs", "messages", "usage", "chat_prefs")  # rows here: a bot ran on this PostgreSQL


@dataclass(frozen=True)
class Table:
    """One table to copy: its columns and their PostgreSQL types (``"id:bigint kind:text"``), the
    unique column it is read in order of, the columns that make a row already there the same
    row, and the SQLite expression read for a column when not the column itself."""

    name: str
    spec: str
    key: str
    same: str  # a row under the same key with these values is the same row, else another one
    identity: bool = False  # ids drawn from an identity: kept, then the identity moved past them
    reads: Mapping[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(name, kind) for name, _, kind in (item.partition(":") for item in self.spec.split())]


# The SQLite process is stopped: a job it was running goes back to the queue, attempt given back.
_REQUEUED = {
    "state": "CASE WHEN state = 'running' THEN 'queued' ELSE state END",
    "attempts": "CASE WHEN state = 'running' THEN max(attempts - 1, 0) ELSE attempts END",
    "lease_token": "CASE WHEN state = 'running' THEN NULL ELSE lease_token END",
    "lease_until": "CASE WHEN state = 'running' THEN NULL ELSE lease_until END",
}
_JOBS = (
    "id:bigint kind:text payload:text dedup_key:text group_key:text state:text attempts:int max_attempts:int"
    " run_at:float8 created_at:float8 updated_at:float8 lease_token:text lease_until:float8"
    " deferred_since:float8 finished_at:float8 last_error:text checkpoint:text"
)
_MESSAGES = "id:bigint chat_id:bigint role:text content:text created_at:float8 job_id:bigint images:text"
_USAGE = (
    "id:bigint created_at:float8 billing_key:text job_id:bigint chat_id:bigint user_id:bigint kind:text"
    " model:text prompt_tokens:bigint completion_tokens:bigint audio_seconds:float8 cost_usd:float8"
    " estimated:bool images:int spoken_chars:bigint"
)
_PREFS = "chat_id:bigint model:text persona:text stream:bool memory:bool voice:text updated_at:float8"
TABLES = (
    Table("jobs", _JOBS, "id", "dedup_key kind payload", identity=True, reads=_REQUEUED),
    Table("messages", _MESSAGES, "id", "chat_id role content", identity=True),
    Table("usage", _USAGE, "id", "billing_key", identity=True),
    Table("kv", "key:text value:text", "key", "value"),
    Table("chat_prefs", _PREFS, "chat_id", "model persona stream memory voice"),
)
# SQLite's loose values as PostgreSQL's types take them (a NUL in text becomes U+FFFD).
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "bigint": int,
    "int": int,
    "float8": float,
    "bool": bool,
    "text": lambda value: text(str(value)),
}
# Moves an identity past the highest id (and past SQLite's own counter: ids are never reused),
# never back: PostgreSQL may have handed out higher ones already.
_ADVANCE = """
SELECT setval(seq, top) FROM (
    SELECT pg_get_serial_sequence($1, 'id')::regclass AS seq,
           greatest((SELECT max(id) FROM {table}), $2::bigint) AS top
) AS s WHERE top > coalesce(pg_sequence_last_value(seq), 0)
"""


class Counted(NamedTuple):
    table: str
    in_sqlite: int
    copied: int
    same: int  # left out: PostgreSQL had the same row

    @property
    def taken(self) -> int:
        """Left out: PostgreSQL had a different row under its id (or unique key)."""
        return self.in_sqlite - self.copied - self.same


@dataclass(frozen=True)
class Outcome:
    counts: list[Counted]
    earlier: Mapping[str, Any] | None = None  # an earlier migration's marker: nothing was copied


def _select_sql(table: Table, *, after: bool) -> str:
    reads = ", ".join(table.reads.get(name, name) for name, _ in table.columns)
    where = f" WHERE {table.key} > ?" if after else ""
    return f"SELECT {reads} FROM {table.name}{where} ORDER BY {table.key} LIMIT ?"


def _insert_sql(table: Table) -> str:
    """Inserts a batch; counts the rows inserted, and those left out for a row of the same key
    and content. Every part of one statement sees the table as it was before it, so the join
    finds only rows that were already there."""
    names = ", ".join(name for name, _ in table.columns)
    arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(table.columns, 1))
    override = " OVERRIDING SYSTEM VALUE" if table.identity else ""
    there, ours = (", ".join(f"{side}.{name}" for name in table.same.split()) for side in "ti")
    return (
        f"WITH incoming AS (SELECT * FROM unnest({arrays}) AS i({names})),"
        f" added AS (INSERT INTO {table.name} ({names}){override} SELECT * FROM incoming"
        " ON CONFLICT DO NOTHING RETURNING 1)"
        f" SELECT (SELECT count(*) FROM added),"
        f" count(t.{table.key}) FILTER (WHERE ROW({there}) IS NOT DISTINCT FROM ROW({ours}))"
        f" FROM incoming AS i LEFT JOIN {table.name} AS t ON t.{table.key} = i.{table.key}"
    )


async def _copy_table(sqlite: Database, conn: asyncpg.Connection, table: Table, batch: int) -> Counted:
    """``table``'s rows, ``batch`` at a time in key order; a row whose key (or any unique value,
    such as a job's dedup key) PostgreSQL already has is left out, counted as the same row or
    as a different one."""
    insert = _insert_sql(table)
    convert = [_CONVERT[kind] for _, kind in table.columns]
    at = [name for name, _ in table.columns].index(table.key)
    seen = copied = same = 0
    after: tuple[Any, ...] = ()
    while True:
        rows = await sqlite.fetchall(_select_sql(table, after=bool(after)), (*after, batch))
        values = [[None if v is None else f(v) for v, f in zip(row, convert, strict=True)] for row in rows]
        if values:
            added, alike = await conn.fetchrow(insert, *params(values))
            copied, same = copied + added, same + alike
        seen += len(rows)
        if len(rows) < batch:
            return Counted(table.name, seen, copied, same)
        after = (rows[-1][at],)


async def _advance_identities(sqlite: Database, conn: asyncpg.Connection) -> None:
    row = await sqlite.fetchone("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'")
    floors = {"jobs": int(row[0]) if row else 0}
    for table in TABLES:
        if table.identity:
            await conn.execute(_ADVANCE.format(table=table.name), table.name, floors.get(table.name, 0))


async def _marker(sqlite: Database, sqlite_path: Path, counts: Sequence[Counted]) -> str:
    """What the marker says: which file was copied, a fingerprint of it, and when."""
    top = await sqlite.fetchone("SELECT max(id) FROM jobs")
    where, facts = await asyncio.gather(
        asyncio.to_thread(sqlite_path.resolve), asyncio.to_thread(sqlite_path.stat)
    )
    return json.dumps(
        {
            "sqlite": str(where),
            "size": facts.st_size,
            "max_job_id": top[0] if top else None,
            "rows": {c.table: c.in_sqlite for c in counts},
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def _earlier(value: str) -> Mapping[str, Any]:
    try:
        marker = json.loads(value)
    except ValueError:
        marker = None
    return marker if isinstance(marker, dict) else {"sqlite": "?", "at": value}


async def _refuse(conn: asyncpg.Connection, where: str, *, merge: bool) -> None:
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'running')"):
        raise StartupError(f"{where} has running jobs: the bot seems to be running against it; stop it first")
    held = [name for name in _HELD if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {name})")]
    if held and not merge:
        raise StartupError(
            f"{where} already has data ({', '.join(held)}): a bot ran on it; migrate into an empty"
            " database, or pass --merge to copy anyway, keeping what is there"
        )


async def _copy(
    sqlite: Database, sqlite_path: Path, pg: PgDatabase, *, dry_run: bool, merge: bool, batch: int
) -> Outcome:
    async with pg.transaction() as conn:
        # Two runs at once: the second waits, then finds the first one's marker.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(MARKER_KEY))
        marker = await conn.fetchval("SELECT value FROM kv WHERE key = $1", MARKER_KEY)
        if marker is not None:
            return Outcome([], _earlier(marker))
        await _refuse(conn, pg.description, merge=merge)
        await conn.execute("SAVEPOINT copy")
        counts = [await _copy_table(sqlite, conn, table, batch) for table in TABLES]
        if dry_run:
            await conn.execute("ROLLBACK TO SAVEPOINT copy")
        else:  # setval is not transactional: only once everything else is written
            marked = await _marker(sqlite, sqlite_path, counts)
            await conn.execute("INSERT INTO kv (key, value) VALUES ($1, $2)", MARKER_KEY, marked)
            await _advance_identities(sqlite, conn)
    return Outcome(counts)


async def migrate(
    sqlite_path: Path, url: str, *, dry_run: bool = False, merge: bool = False, batch: int = BATCH
) -> Outcome:
    """Copy the SQLite database at ``sqlite_path`` (migrated first) to PostgreSQL at ``url``."""
    pg = await PgDatabase.open(url, max_size=1)
    try:
        sqlite = await Database.open(sqlite_path)
        try:
            return await _copy(sqlite, sqlite_path, pg, dry_run=dry_run, merge=merge, batch=batch)
        finally:
            await sqlite.close()
    finally:
        await pg.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m botcore.migrate_to_postgres",
        description=(
            "Copy the bot's SQLite database to an empty PostgreSQL (stop the bot first). Copies once:"
            " a later run finds the 'migrated-from-sqlite' row it wrote and copies nothing."
        ),
    )
    parser.add_argument("--data-dir", help="the bot's data directory (default: DATA_DIR, else ./data)")
    parser.add_argument("--sqlite", help="the SQLite file (default: <data-dir>/bot.db)")
    parser.add_argument("--database-url", help="postgresql://user:password@host/db (default: DATABASE_URL)")
    parser.add_argument("--dry-run", action="store_true", help="report what would be copied; copy nothing")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="copy even though PostgreSQL already has data (a bot ran on it), keeping what is there;"
        " rows whose id belongs to a different row are left out and reported",
    )
    return parser


def _places(args: argparse.Namespace) -> tuple[Path, Path]:
    """The SQLite file, and the data directory to lock: ``--sqlite``'s own directory when only
    it is given, else ``--data-dir`` (or DATA_DIR, or ./data)."""
    if args.sqlite and not args.data_dir:
        path = Path(args.sqlite)
        return path, path.parent
    data_dir = Path(args.data_dir or os.environ.get("DATA_DIR") or "./data")
    return (Path(args.sqlite) if args.sqlite else data_dir / "bot.db"), data_dir


def _check(url: str, sqlite_path: Path) -> None:
    if not url:
        raise StartupError("no PostgreSQL to copy to: give --database-url or set DATABASE_URL")
    if not url.startswith(_SCHEMES):
        raise StartupError("the database URL must start with postgresql:// or postgres://")
    if not sqlite_path.is_file():
        raise StartupError(f"{sqlite_path}: no such SQLite file (give --data-dir or --sqlite)")


def _summary(counts: Sequence[Counted], *, dry_run: bool) -> str:
    head = f"{'table':<12}{'in SQLite':>12}{'to copy' if dry_run else 'copied':>10}"
    lines = [f"{head}{'already there':>16}{'id taken':>10}"]
    lines += [f"{c.table:<12}{c.in_sqlite:>12}{c.copied:>10}{c.same:>16}{c.taken:>10}" for c in counts]
    return "\n".join(lines)


def _warning(counts: Sequence[Counted]) -> str | None:
    taken = {c.table: c.taken for c in counts if c.taken}
    if not taken:
        return None
    return (
        f"warning: rows left out ({', '.join(f'{t} {n}' for t, n in taken.items())}): PostgreSQL holds a"
        " different row under the same id or unique key (column 'id taken') and kept it. Memory and"
        " usage rows that refer to a job by id may now point at an unrelated job."
    )


def _report(outcome: Outcome, sqlite_path: Path, url: str, *, dry_run: bool) -> None:
    if outcome.earlier is not None:
        print(
            f"PostgreSQL at {redacted(url)} was already migrated, on {outcome.earlier.get('at', '?')}"
            f" from SQLite at {outcome.earlier.get('sqlite', '?')}: nothing copied."
        )
        return
    verb = "Would copy" if dry_run else "Copied"
    print(f"{verb} SQLite at {sqlite_path} to PostgreSQL at {redacted(url)}:")
    print(_summary(outcome.counts, dry_run=dry_run))
    warning = _warning(outcome.counts)
    if warning:
        print(warning, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logger.remove()  # the databases' migration notes, as plain lines
    logger.add(sys.stderr, level="INFO", format="{message}", backtrace=False, diagnose=False)
    try:
        try:
            load_dotenv(".env", override=False)  # as the bot does: the environment wins
        except (OSError, UnicodeDecodeError) as exc:
            raise StartupError(f".env: cannot read it ({exc})") from None
        url = args.database_url or os.environ.get("DATABASE_URL", "")
        sqlite_path, data_dir = _places(args)
        _check(url, sqlite_path)
        with DataDirLock(data_dir):
            outcome = asyncio.run(migrate(sqlite_path, url, dry_run=args.dry_run, merge=args.merge))
    except StartupError as exc:
        print(f"migrate_to_postgres: {exc}", file=sys.stderr)
        return 2
    except (BotError, asyncpg.PostgresError) as exc:
        print(f"migrate_to_postgres: the copy failed, nothing was copied: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    _report(outcome, sqlite_path, url, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
