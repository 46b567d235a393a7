"""PostgreSQL job queue benchmark: ``python -m benchmarks.pg_queue`` (or ``python -m
benchmarks.queue --backend postgres``). Our queue (``PgJobStore`` + ``JobQueue`` + ``Worker``)
beside procrastinate, the established PostgreSQL task queue (psycopg 3), in the same run on the
same server; the table shows medians of ``--repeat`` rounds.

Each queue gets a database of its own on one server: a throwaway cluster from ``tests/postgres.py``
(fsync off), or ``--database-url`` / ``BENCH_DATABASE_URL`` (the role needs CREATEDB; the two
databases are dropped afterwards). Before every measurement the queue's tables are truncated.

Enqueue: N jobs (about ``--groups`` distinct chats, the payload of a short message) inserted from
one coroutine, one awaited call per job, then in batches of ``--batch`` (ours ``enqueue_many``,
procrastinate ``batch_defer_jobs_async``); then ``ANALYZE``, as a live table would have statistics.

Cycle: a job claimed, run by a no-op handler and recorded done. N queued jobs are drained by 1, 2
and 4 worker processes (spawned; each opens its own pool, sets up, then waits for one start
signal). Ours run the real ``Worker`` (concurrency ``--concurrency``) and listen for enqueues as
a multi-process deployment must; procrastinate runs ``App.run_worker_async`` with the same
concurrency, the same pool size, ``wait=True`` and its defaults otherwise. Each job carries its
chat as procrastinate's ``lock``: like our ``group_key`` it runs a chat's jobs one at a time in id
order (``queueing_lock`` would instead refuse a second waiting job of a chat). Our dedup key has
no procrastinate equivalent and is not given to it. The clock runs from the start signal until a
poll (every 10 ms; an ``EXISTS`` on a partial index, under 1 ms) finds no job left queued or
running; every job must then be done.

Beside each drain: CPU seconds of the worker processes and of the PostgreSQL server (throwaway
cluster only) per 1,000 cycles, and write transactions per 1,000 cycles (the server's next
transaction id before and after; server-wide). "Extra runs" counts handler calls beyond N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from loguru import logger

from benchmarks.harness import cpu_seconds
from botcore.clock import SystemClock
from botcore.jobqueue import JobQueue
from botcore.models import Job, NewJob
from botcore.pg_storage import PgStorage
from botcore.worker import JobKind, Worker
from tests import postgres as pg

PAYLOAD = {"chat_id": 123456789, "text": "hello there, what is the weather like today?"}
KIND = "bench"
POOL = 10  # connections per process, both queues (PgStorage's default)
POLL_S = 0.01
WAIT_S = 120.0  # bound on any one setup, drain or shutdown


def chat(i: int, groups: int) -> str:
    return f"chat:{i % groups}"


def batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


@dataclass(frozen=True)
class Settings:
    n: int
    groups: int
    batch: int
    concurrency: int
    processes: tuple[int, ...]
    repeat: int


@dataclass(frozen=True)
class Signals:
    """Shared with every worker process: all set up (barrier), start, stop."""

    ready: Any  # multiprocessing Barrier
    go: Any  # multiprocessing Event
    stop: Any


class Queue(Protocol):
    key: str
    name: str
    url: str
    pending: str  # SQL: whether any job is still queued or running
    done: str  # SQL: how many jobs are done

    async def reset(self) -> None: ...
    async def enqueue_one(self, n: int, groups: int) -> None: ...
    async def enqueue_batches(self, n: int, groups: int, size: int) -> None: ...
    async def analyze(self) -> None: ...


# -- our queue -------------------------------------------------------------------------------


class Ours:
    key = "ours"
    name = "ours (PgJobStore+Worker)"
    pending = "SELECT EXISTS (SELECT 1 FROM jobs WHERE state IN ('queued', 'running'))"
    done = "SELECT count(*) FROM jobs WHERE state = 'done'"

    def __init__(self, url: str, storage: PgStorage) -> None:
        self.url = url
        self._storage = storage
        self._queue = JobQueue(storage.jobs, clock=SystemClock())

    async def reset(self) -> None:
        await self._storage.db.execute("TRUNCATE jobs RESTART IDENTITY")

    async def enqueue_one(self, n: int, groups: int) -> None:
        for i in range(n):
            await self._queue.enqueue(KIND, PAYLOAD, dedup_key=f"tg-update:{i}", group_key=chat(i, groups))

    async def enqueue_batches(self, n: int, groups: int, size: int) -> None:
        for batch in batches(n, size):
            await self._queue.enqueue_many(
                [NewJob(KIND, PAYLOAD, f"tg-update:{i}", chat(i, groups)) for i in batch]
            )

    async def analyze(self) -> None:
        await self._storage.db.execute("ANALYZE jobs")


async def ours_worker(url: str, concurrency: int, signals: Signals) -> int:
    logger.remove()  # lost-lease warnings would interleave with the table; extra runs are counted
    storage = await PgStorage.open(url, max_connections=POOL)
    queue = JobQueue(storage.jobs, clock=SystemClock())
    runs = 0

    async def noop(job: Job) -> None:
        nonlocal runs
        runs += 1

    worker = Worker(queue, {KIND: JobKind(noop)}, concurrency=concurrency, alone=False)
    unlisten = asyncio.Event()
    listener = asyncio.create_task(storage.watch_enqueues(queue.wake.set, unlisten))
    try:
        await started(signals)
        running = asyncio.create_task(worker.run())
        await stopped(signals)
        worker.request_stop()
        await running
    finally:
        unlisten.set()
        await listener
        await storage.close()
    return runs


# -- procrastinate ---------------------------------------------------------------------------

TASK = "noop"
PRO_TABLES = "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"


def procrastinate_app(url: str, on_run: Callable[[], None] = lambda: None) -> Any:
    import procrastinate

    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=POOL)
    app = procrastinate.App(connector=connector)

    async def noop(**payload: Any) -> None:
        on_run()

    app.task(name=TASK)(noop)
    return app


class Procrastinate:
    key = "procrastinate"
    pending = "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status IN ('todo', 'doing'))"
    done = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"

    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.name = f"procrastinate {importlib.metadata.version('procrastinate')}"
        self._app = app

    async def reset(self) -> None:
        await self._app.connector.execute_query_async(f"TRUNCATE {PRO_TABLES} RESTART IDENTITY CASCADE")

    async def enqueue_one(self, n: int, groups: int) -> None:
        task = self._app.tasks[TASK]
        for i in range(n):
            await task.configure(lock=chat(i, groups)).defer_async(**PAYLOAD)

    async def enqueue_batches(self, n: int, groups: int, size: int) -> None:
        task = self._app.tasks[TASK]
        for batch in batches(n, size):
            jobs = [task.configure(lock=chat(i, groups)).make_new_job(**PAYLOAD) for i in batch]
            await self._app.job_manager.batch_defer_jobs_async(jobs)

    async def analyze(self) -> None:
        await self._app.connector.execute_query_async("ANALYZE procrastinate_jobs")


async def procrastinate_worker(url: str, concurrency: int, signals: Signals) -> int:
    runs = 0

    def ran() -> None:
        nonlocal runs
        runs += 1

    app = procrastinate_app(url, ran)
    async with app.open_async():
        await started(signals)
        options = {"concurrency": concurrency, "wait": True, "install_signal_handlers": False}
        worker = asyncio.create_task(app.run_worker_async(**options))
        await stopped(signals)
        worker.cancel()  # its documented way to stop: running jobs finish first
        await asyncio.gather(worker, return_exceptions=True)
    return runs


# -- worker processes ------------------------------------------------------------------------

WORKERS: dict[str, Callable[[str, int, Signals], Awaitable[int]]] = {
    "ours": ours_worker,
    "procrastinate": procrastinate_worker,
}


def child(key: str, url: str, concurrency: int, signals: Signals, results: Any) -> None:
    """A worker process's entry point: its handler runs go back through ``results``."""
    results.put(asyncio.run(WORKERS[key](url, concurrency, signals)))


async def started(signals: Signals) -> None:
    await asyncio.to_thread(signals.ready.wait, WAIT_S)
    if not await asyncio.to_thread(signals.go.wait, WAIT_S):
        raise TimeoutError("no start signal")


async def stopped(signals: Signals) -> None:
    await asyncio.to_thread(signals.stop.wait, 2 * WAIT_S)


@dataclass(frozen=True)
class Usage:
    workers_cpu: float
    server_cpu: dict[int, float] | None  # pid -> CPU seconds
    next_xid: int  # write transactions are numbered: the difference counts them

    def server_since(self, before: Usage) -> float | None:
        if self.server_cpu is None or before.server_cpu is None:
            return None
        return sum(cpu - before.server_cpu.get(pid, 0.0) for pid, cpu in self.server_cpu.items())


def server_cpu(postmaster: int | None) -> dict[int, float] | None:
    if postmaster is None:
        return None
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    out = {}
    for pid in [postmaster, *map(int, children)]:
        with contextlib.suppress(OSError):  # a backend that just ended
            out[pid] = cpu_seconds(pid)
    return out


async def usage(conn: asyncpg.Connection, pids: list[int], postmaster: int | None) -> Usage:
    next_xid = await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    return Usage(sum(cpu_seconds(pid) for pid in pids), server_cpu(postmaster), next_xid)


@dataclass(frozen=True)
class Drain:
    rate: float  # cycles/s
    workers_ms: float  # worker processes' CPU per 1,000 cycles
    server_ms: float | None  # the server's CPU per 1,000 cycles
    writes: float  # write transactions per 1,000 cycles (server-wide)
    extra_runs: int  # handler calls beyond N


async def drain(queue: Queue, processes: int, s: Settings, postmaster: int | None) -> Drain:
    """N queued jobs run by ``processes`` fresh worker processes, started together."""
    ctx = multiprocessing.get_context("spawn")
    signals = Signals(ctx.Barrier(processes + 1), ctx.Event(), ctx.Event())
    results = ctx.Queue()
    procs = [
        ctx.Process(target=child, args=(queue.key, queue.url, s.concurrency, signals, results), daemon=True)
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        elapsed, before, after = await timed(queue, procs, signals, s.n, postmaster)
        signals.stop.set()
        runs = sum([await asyncio.to_thread(results.get, True, WAIT_S) for _ in procs])
    finally:
        signals.stop.set()
        await asyncio.gather(*(asyncio.to_thread(end, proc) for proc in procs))
    per_k = 1000 / s.n
    server = after.server_since(before)
    return Drain(
        rate=s.n / elapsed,
        workers_ms=(after.workers_cpu - before.workers_cpu) * 1000 * per_k,
        server_ms=None if server is None else server * 1000 * per_k,
        writes=(after.next_xid - before.next_xid) * per_k,
        extra_runs=runs - s.n,
    )


async def timed(
    queue: Queue, procs: list[Any], signals: Signals, n: int, postmaster: int | None
) -> tuple[float, Usage, Usage]:
    """Seconds from the start signal until all ``n`` jobs are done; usage before and after."""
    conn = await asyncpg.connect(queue.url)
    try:
        await asyncio.to_thread(signals.ready.wait, WAIT_S)
        pids = [p.pid for p in procs]
        before = await usage(conn, pids, postmaster)
        t0 = time.perf_counter()
        signals.go.set()
        await until_drained(conn, queue.pending, procs)
        elapsed = time.perf_counter() - t0
        after = await usage(conn, pids, postmaster)
        done = await conn.fetchval(queue.done)
    finally:
        await conn.close()
    if done != n:
        raise RuntimeError(f"{queue.name}: {done} of {n} jobs done")
    return elapsed, before, after


async def until_drained(conn: asyncpg.Connection, pending: str, procs: list[Any]) -> None:
    deadline = time.perf_counter() + WAIT_S
    while await conn.fetchval(pending):
        if any(p.exitcode is not None for p in procs):
            raise RuntimeError(f"a worker process ended early: exit codes {[p.exitcode for p in procs]}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"jobs left after {WAIT_S:g} s")
        await asyncio.sleep(POLL_S)


def end(proc: Any) -> None:
    proc.join(WAIT_S)
    if proc.is_alive():
        proc.kill()
        proc.join()


# -- driver ----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    enqueue_one: list[float] = field(default_factory=list)
    enqueue_batch: list[float] = field(default_factory=list)
    drains: dict[int, list[Drain]] = field(default_factory=dict)


async def rate(work: Awaitable[None], n: int) -> float:
    t0 = time.perf_counter()
    await work
    return n / (time.perf_counter() - t0)


async def measure_round(queue: Queue, row: Row, s: Settings, postmaster: int | None) -> None:
    """One drain per process count; the first after one-at-a-time enqueues, the rest batched."""
    for i, processes in enumerate(s.processes):
        await queue.reset()
        if i == 0:
            row.enqueue_one.append(await rate(queue.enqueue_one(s.n, s.groups), s.n))
        else:
            row.enqueue_batch.append(await rate(queue.enqueue_batches(s.n, s.groups, s.batch), s.n))
        await queue.analyze()
        row.drains.setdefault(processes, []).append(await drain(queue, processes, s, postmaster))


def database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def database(url: str, name: str) -> AsyncIterator[str]:
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(url, name)
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def open_queues(url: str, peers: bool, stack: contextlib.AsyncExitStack) -> list[Queue]:
    tag = os.getpid()
    ours_url = await stack.enter_async_context(database(url, f"bench_ours_{tag}"))
    storage = await PgStorage.open(ours_url, max_connections=POOL)  # migrates once, here
    stack.push_async_callback(storage.close)
    queues: list[Queue] = [Ours(ours_url, storage)]
    if peers:
        pro_url = await stack.enter_async_context(database(url, f"bench_procrastinate_{tag}"))
        app = procrastinate_app(pro_url)
        await stack.enter_async_context(app.open_async())
        await app.schema_manager.apply_schema_async()
        queues.append(Procrastinate(pro_url, app))
    return queues


async def measure(url: str, postmaster: int | None, s: Settings, peers: bool) -> tuple[list[Row], str]:
    async with contextlib.AsyncExitStack() as stack:
        queues = await open_queues(url, peers, stack)
        rows = {q.key: Row(q.name) for q in queues}
        for r in range(s.repeat):
            print(f"round {r + 1}/{s.repeat} …", flush=True)
            for queue in queues if r % 2 == 0 else queues[::-1]:  # neither always goes first
                await measure_round(queue, rows[queue.key], s, postmaster)
        conn = await asyncpg.connect(url)
        try:
            version = await conn.fetchval("SHOW server_version")
            version += f", fsync={await conn.fetchval('SHOW fsync')}"
        finally:
            await conn.close()
    return list(rows.values()), version


@contextlib.contextmanager
def server(url: str | None) -> Iterator[tuple[str, int | None]]:
    """The server's URL and its postmaster's pid (None: not ours, CPU not measured)."""
    if url:
        yield url, None
        return
    cluster = pg.start()
    try:
        assert cluster.directory is not None
        postmaster = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
        yield cluster.url, postmaster
    finally:
        pg.stop(cluster)


# -- output ----------------------------------------------------------------------------------


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}×"


def columns(row: Row, s: Settings) -> list[float | None]:
    rates = [med([d.rate for d in row.drains.get(p, [])]) for p in s.processes]
    return [med(row.enqueue_one), med(row.enqueue_batch), *rates]


def table(rows: list[Row], s: Settings) -> list[str]:
    procs = [f"cycles/s, {p} proc{'s' if p > 1 else ''}" for p in s.processes]
    head = ["queue", "enqueue/s, 1 at a time", f"enqueue/s, batches of {s.batch}", *procs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    values = [columns(row, s) for row in rows]
    for row, vals in zip(rows, values, strict=True):
        lines.append(f"| {row.name} | " + " | ".join(num(v) for v in vals) + " |")
    if len(rows) == 2:
        ratios = [ratio(a, b) for a, b in zip(*values, strict=True)]
        lines.append("| ours ÷ procrastinate | " + " | ".join(ratios) + " |")
    return lines


def costs(rows: list[Row], s: Settings) -> list[str]:
    head = (
        "| queue | processes | workers' CPU ms/1k cycles | server CPU ms/1k | write xacts/1k | extra runs |"
    )
    lines = [head, "|" + "---|" * 6]
    for row in rows:
        for p in s.processes:
            drains = row.drains.get(p, [])
            server = [d.server_ms for d in drains if d.server_ms is not None]
            lines.append(
                f"| {row.name} | {p} | {num(med([d.workers_ms for d in drains]))} | {num(med(server))}"
                f" | {num(med([d.writes for d in drains]))} | {sum(d.extra_runs for d in drains)} |"
            )
    return lines


def report(rows: list[Row], s: Settings, version: str) -> str:
    settings = (
        f"N={s.n:,} jobs over {s.groups:,} chats (group_key / procrastinate lock); worker concurrency"
        f" {s.concurrency} per process, pool of {POOL} connections per process; no-op handlers; done rows"
        f" kept; medians of {s.repeat} rounds (extra runs: summed)."
    )
    machine = (
        f"PostgreSQL {version}; Python {platform.python_version()}; {os.cpu_count()} CPUs"
        f" (processes beyond that oversubscribe them, with the server on the same CPUs)."
    )
    return "\n".join([machine, settings, "", *table(rows, s), "", *costs(rows, s)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=5_000, help="jobs per drain and per enqueue run (5,000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the table shows medians (3)")
    parser.add_argument("--groups", type=int, default=1_000, help="distinct chats (1,000)")
    parser.add_argument("--processes", default="1,2,4", help="worker process counts (1,2,4)")
    parser.add_argument("--concurrency", type=int, default=32, help="jobs in flight per process (32)")
    parser.add_argument("--batch", type=int, default=1_000, help="jobs per batched enqueue (1,000)")
    parser.add_argument("--no-peers", action="store_true", help="skip procrastinate")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="an existing server (role with CREATEDB); default: a throwaway cluster",
    )
    args = parser.parse_args(argv)
    s = Settings(
        args.n,
        args.groups,
        args.batch,
        args.concurrency,
        tuple(int(p) for p in args.processes.split(",")),
        args.repeat,
    )
    logger.remove()
    t0 = time.perf_counter()
    with server(args.database_url) as (url, postmaster):
        rows, version = asyncio.run(measure(url, postmaster, s, not args.no_peers))
    print()
    print(report(rows, s, version))
    print(f"\n(run took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    # Run from the module under its own name: procrastinate warns about an App made in __main__.
    from benchmarks import pg_queue

    with contextlib.suppress(KeyboardInterrupt):
        pg_queue.main()
