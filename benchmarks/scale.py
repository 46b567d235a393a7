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


async def one_round(
    server_url: str, processes: int, args: argparse.Namespace, workdir: Path, *, paced: bool = False
) -> tuple[float, int]:
    """Answers per second of one burst with ``processes`` bot processes, and the most answers
    sent in any one second. ``paced``: Telegram's pace on (30 a second for the bot), an instant
    LLM and ``--burst`` messages from as many chats; else the slow LLM, unpaced."""
    database = await fresh_database(server_url)
    tg = await FakeTelegram("123456789:AAH4kq-EXAMPLE_token_value_abcdefghi").start()
    llm = await FakeOpenAI().start()
    if not paced:
        llm.by_marker[""] = Scripted(delay_s=args.llm_s)
    messages, chats = (args.burst, args.burst) if paced else (args.messages, args.chats)
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
                TELEGRAM_RATE_PER_S="30" if paced else "0",
            )
            procs.append(await start_bot(OURS, place, env, "bot.log"))
        await ready(tg)  # one of them polls
        await asyncio.sleep(3.0)  # the others are up, listening, and counted (heartbeats: 2 s)
        started = time.perf_counter()
        for i in range(messages):
            tg.add_message(1 + i % chats, f"question {i}")
        await until(lambda: sum(1 for s in tg.sent if (s.get("text") or "").startswith("echo: ")) >= messages)
        rate = messages / (time.perf_counter() - started)
        sends = sorted(
            t for (method, _), t in zip(tg.calls, tg.call_times, strict=True) if method == "sendMessage"
        )
        return rate, max(sum(1 for t in sends if start <= t < start + 1.0) for start in sends)
    finally:
        await asyncio.gather(*(stop_bot(proc) for proc in procs))
        await tg.stop()
        await llm.stop()


async def measure(args: argparse.Namespace) -> dict[tuple[str, int], list[tuple[float, int]]]:
    cluster = None
    url = args.database_url
    if url is None:
        reason = pg.unavailable()
        if reason is not None:
            raise SystemExit(reason)
        cluster = pg.start()
        url = cluster.url
    rows = [("llm", 1), ("llm", 3), ("paced", 1), ("paced", 2)]
    results: dict[tuple[str, int], list[tuple[float, int]]] = {row: [] for row in rows}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for _ in range(args.repeat):
                for mode, processes in rows:  # interleaved: every row sees the same machine
                    measured = await one_round(url, processes, args, Path(scratch), paced=mode == "paced")
                    results[(mode, processes)].append(measured)
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
    parser.add_argument("--burst", type=int, default=300, help="messages of the paced burst (300)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="an existing server (default: a throwaway one)")
    args = parser.parse_args()
    results = asyncio.run(measure(args))

    def rate(row: tuple[str, int]) -> float:
        return statistics.median(r for r, _ in results[row])

    one, three = rate(("llm", 1)), rate(("llm", 3))
    print(
        f"{args.messages} messages from {args.chats} chats at once; the fake LLM takes {args.llm_s:g} s"
        f" per answer; LLM_CONCURRENCY={args.llm_concurrency} per process; medians of {args.repeat} rounds"
    )
    print("| processes on one PostgreSQL | answers/s | × one process |")
    print("|---|---|---|")
    print(f"| 1 (baseline) | {one:.2f} | 1.00 |")
    print(f"| 3 | {three:.2f} | {three / one:.2f} |")
    print(f"ceiling: {args.llm_concurrency / args.llm_s:.1f} answers/s per process\n")
    print(
        f"{args.burst} messages from {args.burst} chats at once, an instant LLM, TELEGRAM_RATE_PER_S=30"
        f" (the bot's, shared); medians of {args.repeat} rounds"
    )
    print("| processes | answers/s | most answers sent in one second |")
    print("|---|---|---|")
    for processes in (1, 2):
        busiest = statistics.median(b for _, b in results[("paced", processes)])
        label = "1 (baseline)" if processes == 1 else str(processes)
        print(f"| {label} | {rate(('paced', processes)):.1f} | {busiest:g} |")


if __name__ == "__main__":
    main()
