"""Scale-out benchmark: ``python -m benchmarks.scale`` (dev requirements; PostgreSQL's server
programs, or BENCH_DATABASE_URL). When the LLM is the bottleneck, do more processes answer more?

The fake LLM takes ``--llm-s`` (1 s) per answer and each process may run ``--llm-concurrency``
(4) calls at once, so one process can answer at most 4 a second. ``--messages`` (240) messages
from ``--chats`` (80) chats are queued at once; the same burst is then answered by 1 process and
by 3 processes sharing one PostgreSQL database (a fresh one per round, on the same server), one
of them polling. Throughput is answers per second from the burst to the last answer; medians of
``--repeat`` rounds, both rows measured in this run."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg

from benchmarks.harness import OURS, bot_env, ready, start_bot, stop_bot
from tests import postgres as pg
from tests.fakes import FakeOpenAI, FakeTelegram, Scripted


async def until(done: Callable[[], bool]) -> None:
    while not done():  # noqa: ASYNC110  # the fake records calls; no event says "all answered"
        await asyncio.sleep(0.02)


async def fresh_database(url: str) -> str:
    name = "scale_" + uuid.uuid4().hex[:10]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


async def one_round(server_url: str, processes: int, args: argparse.Namespace, workdir: Path) -> float:
    """Answers per second of one burst, with ``processes`` bot processes."""
    database = await fresh_database(server_url)
    tg, llm = (
        await FakeTelegram("123456789:AAH4kq-EXAMPLE_token_value_abcdefghi").start(),
        await FakeOpenAI().start(),
    )
    llm.by_marker[""] = Scripted(delay_s=args.llm_s)
    procs = []
    try:
        for i in range(processes):
            place = workdir / f"r{uuid.uuid4().hex[:6]}-{i}"
            place.mkdir()
            env = bot_env(
                tg,
                llm,
                place,
                DATABASE_URL=database,
                LLM_CONCURRENCY=str(args.llm_concurrency),
                STREAM="false",
                REACTIONS="off",
            )
            procs.append(await start_bot(OURS, place, env, "bot.log"))
        await ready(tg)  # one of them polls
        await asyncio.sleep(1.0)  # the others are up and listening too
        started = time.perf_counter()
        for i in range(args.messages):
            tg.add_message(1 + i % args.chats, f"question {i}")
        await until(
            lambda: sum(1 for s in tg.sent if (s.get("text") or "").startswith("echo: ")) >= args.messages
        )
        return args.messages / (time.perf_counter() - started)
    finally:
        await asyncio.gather(*(stop_bot(proc) for proc in procs))
        await tg.stop()
        await llm.stop()


async def measure(args: argparse.Namespace) -> dict[int, list[float]]:
    cluster = None
    url = args.database_url
    if url is None:
        reason = pg.unavailable()
        if reason is not None:
            raise SystemExit(reason)
        cluster = pg.start()
        url = cluster.url
    results: dict[int, list[float]] = {1: [], 3: []}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for _ in range(args.repeat):
                for processes in results:  # interleaved: both rows see the same machine
                    results[processes].append(await one_round(url, processes, args, Path(scratch)))
    finally:
        if cluster is not None:
            pg.stop(cluster)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=240)
    parser.add_argument("--chats", type=int, default=80)
    parser.add_argument("--llm-s", type=float, default=1.0)
    parser.add_argument("--llm-concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="an existing server (default: a throwaway one)")
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    one, three = statistics.median(results[1]), statistics.median(results[3])
    print(
        f"{args.messages} messages from {args.chats} chats at once; the fake LLM takes {args.llm_s:g} s"
        f" per answer; LLM_CONCURRENCY={args.llm_concurrency} per process; medians of {args.repeat} rounds"
    )
    print("| processes on one PostgreSQL | answers/s | × one process |")
    print("|---|---|---|")
    print(f"| 1 (baseline) | {one:.2f} | 1.00 |")
    print(f"| 3 | {three:.2f} | {three / one:.2f} |")
    print(f"ceiling: {args.llm_concurrency / args.llm_s:.1f} answers/s per process")


if __name__ == "__main__":
    main()
