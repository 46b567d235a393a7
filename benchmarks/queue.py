"""Job queue benchmark: ``python -m benchmarks.queue``. Prints one table, every row measured in
this run on this machine: our queue, a minimal raw-sqlite3 baseline, and two peers (Huey's
SqliteStorage and persist-queue's SQLiteAckQueue), all in WAL at the same ``synchronous``.

A *cycle* is claiming one job and recording it finished, each its own commit (the peers' way;
our worker claims in batches and writes completions that arrive together in one statement).
Enqueues are measured twice for our queue: one caller awaiting each ``enqueue`` in turn (bound by
the round trip to SQLite's thread), and 100 producer coroutines enqueueing at once, whose calls
share writes (group commit). Every other row enqueues one at a time from one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from botcore.clock import SystemClock
from botcore.jobqueue import JobQueue
from botcore.models import Job, NewJob
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.worker import JobKind, Worker

PAYLOAD = {"chat_id": 123456789, "text": "hello there, what is the weather like today?"}
GROUPS = 1000  # distinct chats in the workload
PRODUCERS = 100  # coroutines enqueueing at once


@dataclass
class Row:
    name: str
    enqueue: list[float] = field(default_factory=list)
    producers: list[float] = field(default_factory=list)  # enqueue/s, PRODUCERS callers at once
    drain: list[float] = field(default_factory=list)
    small: list[float] = field(default_factory=list)  # cycles/s, 1k jobs with 1k queued
    large: list[float] = field(default_factory=list)  # cycles/s, 1k jobs with 20k queued
    pickup: list[float] = field(default_factory=list)  # seconds, all samples of all repeats


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# -- our queue -------------------------------------------------------------------------------


async def _open(path: Path, sync: str) -> tuple[Database, JobQueue]:
    db = await Database.open(path, synchronous=sync)
    return db, JobQueue(SqliteJobStore(db), clock=SystemClock())


def _new(i: int) -> NewJob:
    return NewJob("bench", PAYLOAD, dedup_key=f"tg-update:{i}", group_key=f"chat:{i % GROUPS}")


async def ours_enqueue(path: Path, sync: str, n: int) -> float:
    db, queue = await _open(path, sync)
    t0 = time.perf_counter()
    for i in range(n):
        await queue.enqueue("bench", PAYLOAD, dedup_key=f"tg-update:{i}", group_key=f"chat:{i % GROUPS}")
    rate = n / (time.perf_counter() - t0)
    await db.close()
    return rate


async def ours_enqueue_concurrent(path: Path, sync: str, n: int) -> float:
    """PRODUCERS coroutines, each awaiting ``enqueue`` in a loop, n jobs in all."""
    db, queue = await _open(path, sync)

    async def produce(first: int) -> None:
        for i in range(first, n, PRODUCERS):
            await queue.enqueue("bench", PAYLOAD, dedup_key=f"tg-update:{i}", group_key=f"chat:{i % GROUPS}")

    t0 = time.perf_counter()
    await asyncio.gather(*(produce(p) for p in range(PRODUCERS)))
    rate = n / (time.perf_counter() - t0)
    assert (await queue.stats()).by_state() == {"queued": n}
    await db.close()
    return rate


async def _fill(queue: JobQueue, n: int) -> None:
    for start in range(0, n, 1000):
        await queue.enqueue_many([_new(i) for i in range(start, min(n, start + 1000))])


async def ours_worker_cycles(path: Path, sync: str, backlog: int, work: int, concurrency: int = 32) -> float:
    """Cycles/s of the real worker (no-op handler) doing ``work`` jobs of a ``backlog``."""
    db, queue = await _open(path, sync)
    await _fill(queue, backlog)
    handled = 0
    worker: Worker

    async def noop(job: Job) -> None:
        nonlocal handled
        handled += 1
        if handled == work:
            worker.request_stop()

    worker = Worker(queue, {"bench": JobKind(noop)}, concurrency=concurrency)
    t0 = time.perf_counter()
    await worker.run()  # returns after the stop, with every completion written
    rate = handled / (time.perf_counter() - t0)
    done = (await queue.stats()).by_state().get("done", 0)
    assert done == handled, (done, handled)
    await db.close()
    return rate


async def ours_api_cycles(path: Path, sync: str, backlog: int) -> float:
    """Claim one, complete one, through the queue API: the per-job cost without batching."""
    db, queue = await _open(path, sync)
    await _fill(queue, backlog)
    t0 = time.perf_counter()
    for _ in range(backlog):
        [job] = await queue.claim({"bench": 1}, 1)
        assert await queue.complete(job)
    rate = backlog / (time.perf_counter() - t0)
    await db.close()
    return rate


async def ours_pickup(path: Path, sync: str, samples: int) -> list[float]:
    """Idle worker: time from just before ``enqueue`` to the handler starting."""
    db, queue = await _open(path, sync)
    started: asyncio.Queue[float] = asyncio.Queue()

    async def record(job: Job) -> None:
        started.put_nowait(time.perf_counter())

    worker = Worker(queue, {"bench": JobKind(record)})
    task = asyncio.create_task(worker.run())
    out = []
    for i in range(samples):
        await asyncio.sleep(0.005 + (i % 7) * 0.002)  # let the worker go idle
        t0 = time.perf_counter()
        await queue.enqueue("bench", PAYLOAD, dedup_key=f"p:{i}", group_key=f"chat:{i % GROUPS}")
        out.append(await asyncio.wait_for(started.get(), 10) - t0)
    worker.request_stop()
    await task
    await db.close()
    return out


# -- raw sqlite3 baseline --------------------------------------------------------------------

RAW_SCHEMA = (
    "CREATE TABLE q (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, state INTEGER NOT NULL,"
    " run_at REAL NOT NULL, lease_until REAL)",
    "CREATE INDEX q_ready ON q (run_at, id) WHERE state = 0",
)
RAW_CLAIM = (
    "UPDATE q SET state = 1, lease_until = ? WHERE id = (SELECT id FROM q WHERE state = 0"
    " AND run_at <= ? ORDER BY run_at, id LIMIT 1) RETURNING id, payload"
)


def _raw(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    for stmt in RAW_SCHEMA:
        conn.execute(stmt)
    return conn


def raw_enqueue(path: Path, sync: str, n: int) -> float:
    conn = _raw(path, sync)
    t0 = time.perf_counter()
    for _ in range(n):
        conn.execute("INSERT INTO q (payload, state, run_at) VALUES (?, 0, ?)", ('{"a":1}', time.time()))
    rate = n / (time.perf_counter() - t0)
    conn.close()
    return rate


def raw_cycles(path: Path, sync: str, backlog: int, work: int) -> float:
    conn = _raw(path, sync)
    now = time.time()
    with conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO q (payload, state, run_at) VALUES (?, 0, ?)", [('{"a":1}', now)] * backlog
        )
    t0 = time.perf_counter()
    for _ in range(work):
        now = time.time()
        job_id, _payload = conn.execute(RAW_CLAIM, (now + 60, now)).fetchone()
        conn.execute("UPDATE q SET state = 2, lease_until = NULL WHERE id = ?", (job_id,))
    rate = work / (time.perf_counter() - t0)
    conn.close()
    return rate


# -- Huey's SqliteStorage --------------------------------------------------------------------


def _huey_storage(path: Path, sync: str):  # type: ignore[no-untyped-def]
    from huey.storage import SqliteStorage

    class Storage(SqliteStorage):
        def _create_connection(self):  # type: ignore[no-untyped-def]
            conn = super()._create_connection()
            conn.execute(f"PRAGMA synchronous = {sync}")  # Huey offers only FULL or OFF
            return conn

    return Storage(name="bench", filename=str(path))


def huey_enqueue(path: Path, sync: str, n: int) -> float:
    storage = _huey_storage(path, sync)
    t0 = time.perf_counter()
    for _ in range(n):
        storage.enqueue(b'{"a":1}')
    rate = n / (time.perf_counter() - t0)
    storage.close()
    return rate


def huey_cycles(path: Path, sync: str, backlog: int, work: int) -> float:
    """Huey's dequeue claims and deletes in one transaction: there is no lease and no ack."""
    storage = _huey_storage(path, sync)
    for _ in range(backlog):
        storage.enqueue(b'{"a":1}')
    t0 = time.perf_counter()
    for _ in range(work):
        assert storage.dequeue() is not None
    rate = work / (time.perf_counter() - t0)
    storage.close()
    return rate


def huey_pickup(path: Path, sync: str, samples: int) -> list[float]:
    """Huey's consumer (default options: one thread worker, polling from 0.1 s with backoff)."""
    import logging

    from huey import Huey

    logging.getLogger("huey").setLevel(logging.CRITICAL)
    huey = Huey("bench", storage_class=type(_huey_storage(path, sync)), filename=str(path))
    started: list[float] = []
    arrived = threading.Event()

    @huey.task()
    def record() -> None:
        started.append(time.perf_counter())
        arrived.set()

    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=False)
    consumer.start()
    out = []
    try:
        for i in range(samples):
            time.sleep(0.15 + (i % 5) * 0.05)
            arrived.clear()
            t0 = time.perf_counter()
            record()
            if not arrived.wait(30):
                raise RuntimeError("huey consumer did not pick up the task")
            out.append(started[-1] - t0)
    finally:
        consumer.stop(graceful=True)
        huey.storage.close()
    return out


# -- persist-queue's SQLiteAckQueue ----------------------------------------------------------


def _pq(path: Path, sync: str):  # type: ignore[no-untyped-def]
    from persistqueue import SQLiteAckQueue

    class Queue(SQLiteAckQueue):
        def _new_db_connection(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            conn = super()._new_db_connection(*args, **kwargs)
            conn.execute(f"PRAGMA synchronous = {sync}")
            return conn

    return Queue(str(path), auto_commit=True)


def pq_enqueue(path: Path, sync: str, n: int) -> float:
    q = _pq(path, sync)
    t0 = time.perf_counter()
    for _ in range(n):
        q.put({"a": 1})
    rate = n / (time.perf_counter() - t0)
    q.close()
    return rate


def pq_cycles(path: Path, sync: str, backlog: int, work: int) -> float:
    q = _pq(path, sync)
    for _ in range(backlog):
        q.put({"a": 1})
    t0 = time.perf_counter()
    for _ in range(work):
        q.ack(q.get(block=False))
    rate = work / (time.perf_counter() - t0)
    q.close()
    return rate


# -- driver ----------------------------------------------------------------------------------


class Scratch:
    """A fresh file (or folder) for each measurement, so none inherits another's pages."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._n = itertools.count()

    def __call__(self, folder: bool = False) -> Path:
        path = self._root / f"m{next(self._n)}"
        if folder:
            path.mkdir()
            return path
        return path.with_suffix(".db")


def measure(args: argparse.Namespace) -> list[Row]:
    n, small, sync = args.n, args.small, args.synchronous
    ours = Row("botcore worker (ours; default concurrency 32)")
    narrow = Row("botcore worker, concurrency 8")
    api = Row("botcore API, claim 1 + complete 1")
    raw = Row("raw sqlite3 (baseline)")
    huey = Row("Huey SqliteStorage")
    pq = Row("persist-queue SQLiteAckQueue")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        new = Scratch(Path(tmp))
        for r in range(args.repeat):
            print(f"round {r + 1}/{args.repeat} …", flush=True)
            raw.enqueue.append(raw_enqueue(new(), sync, n))
            raw.drain.append(raw_cycles(new(), sync, n, n))
            raw.small.append(raw_cycles(new(), sync, small, small))
            raw.large.append(raw_cycles(new(), sync, n, small))

            ours.enqueue.append(asyncio.run(ours_enqueue(new(), sync, n)))
            ours.producers.append(asyncio.run(ours_enqueue_concurrent(new(), sync, n)))
            ours.drain.append(asyncio.run(ours_worker_cycles(new(), sync, n, n)))
            ours.small.append(asyncio.run(ours_worker_cycles(new(), sync, small, small)))
            ours.large.append(asyncio.run(ours_worker_cycles(new(), sync, n, small)))
            ours.pickup += asyncio.run(ours_pickup(new(), sync, args.pickups))
            narrow.drain.append(asyncio.run(ours_worker_cycles(new(), sync, n, n, 8)))
            narrow.small.append(asyncio.run(ours_worker_cycles(new(), sync, small, small, 8)))
            narrow.large.append(asyncio.run(ours_worker_cycles(new(), sync, n, small, 8)))
            api.drain.append(asyncio.run(ours_api_cycles(new(), sync, n)))

            if not args.no_peers:
                huey.enqueue.append(huey_enqueue(new(), sync, n))
                huey.drain.append(huey_cycles(new(), sync, n, n))
                huey.small.append(huey_cycles(new(), sync, small, small))
                huey.large.append(huey_cycles(new(), sync, n, small))
                pq.enqueue.append(pq_enqueue(new(folder=True), sync, n))
                pq.drain.append(pq_cycles(new(folder=True), sync, n, n))
                pq.small.append(pq_cycles(new(folder=True), sync, small, small))
                pq.large.append(pq_cycles(new(folder=True), sync, n, small))
        if not args.no_peers and args.huey_pickups:
            huey.pickup = huey_pickup(new(), sync, args.huey_pickups)
    return [raw, ours, narrow, api, huey, pq] if not args.no_peers else [raw, ours, narrow, api]


def render(rows: list[Row], args: argparse.Namespace) -> str:
    def num(x: float | None) -> str:
        return "—" if x is None else f"{x:,.0f}"

    def ms(x: float | None) -> str:
        return "—" if x is None else f"{x * 1000:.2f} ms"

    k = f"{args.small // 1000}k" if args.small % 1000 == 0 else str(args.small)
    nk = f"{args.n // 1000}k" if args.n % 1000 == 0 else str(args.n)
    head = (
        f"| queue | enqueue/s | enqueue/s, {PRODUCERS} producers | cycle/s, drain {nk}"
        f" | cycle/s, {k} of {k} | cycle/s, {k} of {nk} | {k}÷{nk} slowdown | pickup p50 | pickup p99 |"
    )
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        s, lg = median(row.small), median(row.large)
        slow = "—" if not s or not lg else f"{s / lg:.2f}×"
        lines.append(
            f"| {row.name} | {num(median(row.enqueue))} | {num(median(row.producers))}"
            f" | {num(median(row.drain))} | {num(s)}"
            f" | {num(lg)} | {slow} | {ms(pct(row.pickup, 0.5))} | {ms(pct(row.pickup, 0.99))} |"
        )
    raw, ours, narrow = rows[0], rows[1], rows[2]
    ratio = median(ours.drain) / median(raw.drain)  # type: ignore[operator]
    narrow_ratio = median(narrow.drain) / median(raw.drain)  # type: ignore[operator]
    slow = median(ours.small) / median(ours.large)  # type: ignore[operator]
    p50, p99 = pct(ours.pickup, 0.5), pct(ours.pickup, 0.99)
    one = median(ours.enqueue) / median(raw.enqueue)  # type: ignore[operator]
    many = median(ours.producers) / median(raw.enqueue)  # type: ignore[operator]
    ok = lambda good: "met" if good else "MISSED"  # noqa: E731
    lines += [
        "",
        f"Targets: ours ÷ raw cycle/s = {ratio:.2f} (≥ 0.70: {ok(ratio >= 0.7)}),"
        f" {narrow_ratio:.2f} at concurrency 8; "
        f"pickup p50 {ms(p50)} (≤ 2 ms: {ok(p50 is not None and p50 <= 0.002)}), "
        f"p99 {ms(p99)} (≤ 10 ms: {ok(p99 is not None and p99 <= 0.010)}); "
        f"{k}÷{nk} slowdown {slow:.2f}× (≤ 1.15×: {ok(slow <= 1.15)}).",
        f"Enqueue ÷ raw: {PRODUCERS} producers at once {many:.2f} (≥ 0.5: {ok(many >= 0.5)});"
        f" one caller awaiting each in turn {one:.2f} (≥ 0.5: {ok(one >= 0.5)}; bound by the round"
        " trip to SQLite's thread, which no grouping shortens).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument(
        "--backend", choices=("sqlite", "postgres"), default="sqlite", help="postgres: benchmarks.pg_queue"
    )
    chosen, rest = backend.parse_known_args(argv)
    if chosen.backend == "postgres":
        from benchmarks import pg_queue

        pg_queue.main(rest)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[backend]
    )
    parser.add_argument("--n", type=int, default=20_000, help="jobs in the large backlog (20,000)")
    parser.add_argument("--small", type=int, default=1_000, help="jobs in the small backlog (1,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the table shows medians (3)")
    parser.add_argument("--pickups", type=int, default=200, help="pickup samples per round (200)")
    parser.add_argument("--huey-pickups", type=int, default=20, help="pickup samples of Huey's consumer (20)")
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--no-peers", action="store_true", help="skip Huey and persist-queue")
    parser.add_argument("--dir", default=None, help="where the scratch databases go (a temp dir)")
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()  # the worker's info lines would drown the table
    rows = measure(args)
    print()
    print(
        f"Job queue, N={args.n:,}, WAL + synchronous={args.synchronous}, SQLite {sqlite3.sqlite_version},"
        f" Python {platform.python_version()}, {os.cpu_count()} cores; medians of {args.repeat} rounds"
    )
    print()
    print(render(rows, args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
