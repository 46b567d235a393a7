"""PostgreSQL driver benchmark: ``python -m benchmarks.pg_drivers`` (dev requirements; PostgreSQL's
server programs, or TEST_DATABASE_URL). The job queue's hot path, a claim and a completion, run
through psycopg 3 (async, with psycopg_pool) and through asyncpg, on the same throwaway cluster in
the same run: a claim takes the oldest due job with ``FOR UPDATE SKIP LOCKED`` and leases it, a
completion marks it done with its fencing token checked. One worker, then four at once sharing a
pool of four connections. Medians of ``--repeat`` rounds, in cycles per second."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg_pool

from tests import postgres as pg

SCHEMA = """
DROP TABLE IF EXISTS bench_jobs;
CREATE TABLE bench_jobs (
    id bigserial PRIMARY KEY,
    state text NOT NULL DEFAULT 'queued',
    run_at double precision NOT NULL,
    lease_token bigint NOT NULL DEFAULT 0,
    payload jsonb NOT NULL
);
CREATE INDEX bench_jobs_due ON bench_jobs (run_at) WHERE state = 'queued';
"""
FILL = (
    "INSERT INTO bench_jobs (run_at, payload) SELECT g, '{{\"update_id\": 1}}' FROM generate_series(1, {n}) g"
)
CLAIM = """
UPDATE bench_jobs SET state = 'running', lease_token = lease_token + 1
WHERE id = (SELECT id FROM bench_jobs WHERE state = 'queued' ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, lease_token, payload
"""
COMPLETE_PSYCOPG = "UPDATE bench_jobs SET state = 'done' WHERE id = %s AND lease_token = %s"
COMPLETE_ASYNCPG = "UPDATE bench_jobs SET state = 'done' WHERE id = $1 AND lease_token = $2"

Cycle = Callable[[], Awaitable[bool]]  # one claim and completion; False when the queue is empty


async def _run_workers(cycle: Cycle, workers: int) -> int:
    done = 0

    async def worker() -> None:
        nonlocal done
        while await cycle():
            done += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return done


async def psycopg_rate(url: str, jobs: int, workers: int) -> float:
    async with psycopg_pool.AsyncConnectionPool(url, min_size=workers, max_size=workers, open=False) as pool:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute(SCHEMA)  # type: ignore[arg-type]
            await conn.execute(FILL.format(n=jobs))  # type: ignore[arg-type]

        async def cycle() -> bool:
            async with pool.connection() as conn:
                row = await (await conn.execute(CLAIM)).fetchone()  # type: ignore[arg-type]
                if row is None:
                    return False
                await conn.execute(COMPLETE_PSYCOPG, (row[0], row[1]))
                return True

        return await _timed(cycle, workers)


async def asyncpg_rate(url: str, jobs: int, workers: int) -> float:
    pool = await asyncpg.create_pool(url, min_size=workers, max_size=workers)
    try:
        async with pool.acquire() as conn:
            await conn.execute(SCHEMA)
            await conn.execute(FILL.format(n=jobs))

        async def cycle() -> bool:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(CLAIM)
                if row is None:
                    return False
                await conn.execute(COMPLETE_ASYNCPG, row["id"], row["lease_token"])
                return True

        return await _timed(cycle, workers)
    finally:
        await pool.close()


async def _timed(cycle: Cycle, workers: int) -> float:
    start = time.perf_counter()
    done = await _run_workers(cycle, workers)
    return done / (time.perf_counter() - start)


DRIVERS: dict[str, Callable[[str, int, int], Awaitable[float]]] = {
    "psycopg 3 (AsyncConnectionPool)": psycopg_rate,
    "asyncpg (create_pool)": asyncpg_rate,
}


async def amain(args: argparse.Namespace) -> None:
    cluster = pg.start()
    try:
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.repeat):
            for name, rate in DRIVERS.items():
                for workers in (1, 4):
                    value = await rate(cluster.url, args.jobs, workers)
                    results.setdefault((name, workers), []).append(value)
    finally:
        pg.stop(cluster)
    print(
        f"PostgreSQL drivers: claim (SKIP LOCKED) + complete cycles/s on {args.jobs} queued jobs,"
        f" medians of {args.repeat} rounds; a throwaway local cluster (fsync off)"
    )
    print()
    print("| driver | 1 worker | 4 workers |")
    print("|---|---|---|")
    table: dict[str, Any] = {}
    for (name, workers), values in results.items():
        table.setdefault(name, {})[workers] = statistics.median(values)
    for name, by_workers in table.items():
        print(f"| {name} | {by_workers[1]:,.0f} | {by_workers[4]:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
