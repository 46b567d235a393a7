"""LLM concurrency benchmark: ``python -m benchmarks.concurrency``. Two simulated LLM servers on
a manual clock (deterministic, and quick: no real second passes; the figures are simulated
seconds): one that answers in 1 s however many calls run at once; one that works on 4 at a time
(latency grows with more) and refuses past 8; and one that takes any load with answers of very
different lengths. Each row is measured in this run: our adaptive limit
(``LLM_CONCURRENCY=auto``) against no limit at all (the baseline) and the old fixed 8."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from botcore.clock import ManualClock
from botcore.concurrency import Call, LlmLimit
from botcore.errors import Cause, UpstreamUnavailable

TICK = 0.05  # simulated seconds per step


@dataclass
class Server:
    """A streaming LLM server: the first token after ``first_token(n)`` seconds, then ``tokens()``
    tokens at ``per_token(n)`` seconds each, ``n`` being the calls running at once."""

    clock: ManualClock
    first_token: Callable[[int], float]
    per_token: Callable[[int], float]
    tokens: Callable[[], int] = lambda: 40
    refuse_past: int | None = None  # 429 when more than this many run at once
    in_flight: int = 0
    calls: int = 0
    refused: int = 0

    async def call(self, call: Call | None = None) -> None:
        self.calls += 1
        self.in_flight += 1
        try:
            n = self.in_flight
            if self.refuse_past is not None and n > self.refuse_past:
                self.refused += 1
                raise UpstreamUnavailable("LLM: rate limited", cause=Cause.RATE_LIMITED)
            await self.clock.wait(asyncio.Event(), self.first_token(n))
            if call is not None:
                call.first_token()
            await self.clock.wait(asyncio.Event(), self.tokens() * self.per_token(n))
        finally:
            self.in_flight -= 1


@dataclass
class Run:
    drained_at: float | None = None
    limits: list[tuple[float, int]] = field(default_factory=list)  # (second, limit)


async def simulate(
    server: Server, limit: LlmLimit | None, *, rate: float, seconds: float, until: float
) -> Run:
    """``rate`` messages a second arrive for ``seconds``; each is answered through ``limit``
    (None: no limit at all), and one the server refuses is tried again a second later, as the
    queue would. Runs until all are answered or ``until`` simulated seconds have passed."""
    clock, run, start = server.clock, Run(), server.clock.now()
    tasks: list[asyncio.Task[None]] = []

    async def answer() -> None:
        while True:
            try:
                if limit is None:
                    await server.call()
                else:
                    async with limit.slot() as call:
                        await server.call(call)
                return
            except UpstreamUnavailable:
                await clock.wait(asyncio.Event(), 1.0)

    arrived = 0.0
    for step in itertools.count():
        elapsed = step * TICK
        if elapsed < seconds:
            arrived += rate * TICK
            while len(tasks) < int(arrived + 1e-9):
                tasks.append(asyncio.create_task(answer()))
        if step % round(1 / TICK) == 0 and limit is not None:
            run.limits.append((elapsed, limit.limit))
        if elapsed >= seconds and all(t.done() for t in tasks):
            run.drained_at = clock.now() - start
            break
        if elapsed >= until:
            break
        clock.advance(TICK)
        for _ in range(6):  # let every task that can go on without the clock do so
            await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return run


def flat(clock: ManualClock) -> Server:
    """Answers in 1 s at any parallelism: 0.2 s to the first token, then 40 tokens of 20 ms."""
    return Server(clock, lambda n: 0.2, lambda n: 0.02)


def batches_of_4(clock: ManualClock) -> Server:
    """Works on 4 at a time, each call slower as more run (a server that batches), and refuses
    past 8 at once."""
    return Server(clock, lambda n: 0.2 * max(1.0, n / 4), lambda n: 0.02 * max(1.0, n / 4), refuse_past=8)


def varied(clock: ManualClock, seed: int = 7) -> Server:
    """Takes any load; 0.5 s to the first token, then 20 to 800 tokens of 20 ms (0.9 to 16.5 s)."""
    rng = random.Random(seed)
    return Server(clock, lambda n: 0.5, lambda n: 0.02, tokens=lambda: rng.randint(20, 800))


UNLIMITED = -1
ROWS = (("unlimited (baseline)", UNLIMITED), ("fixed 8 (the old default)", 8), ("auto (ours)", None))


async def each_row(
    rows: tuple[tuple[str, int | None], ...], server: Callable[[ManualClock], Server], **load: float
) -> AsyncIterator[tuple[str, Server, LlmLimit | None, Run]]:
    """Every row's run against a fresh ``server`` under the same ``load`` (see ``simulate``)."""
    for name, fixed in rows:
        clock = ManualClock()
        limit = None if fixed == UNLIMITED else LlmLimit(clock=clock, fixed=fixed)
        built = server(clock)
        yield name, built, limit, await simulate(built, limit, **load)


async def fast_server() -> list[str]:
    lines = [
        "Server answering in 1 s at any parallelism; 25 msg/s for 10 s (250 messages), simulated seconds",
        "",
        "| limit | drained at | ÷ unlimited | 429s | limit at 1, 2, 3, 4, 5, 10 s |",
        "|---|---|---|---|---|",
    ]
    drained: dict[str, float] = {}
    async for name, server, limit, run in each_row(ROWS, flat, rate=25, seconds=10, until=300):
        drained[name] = run.drained_at or float("inf")
        at = dict(run.limits)
        shown = ", ".join(str(at.get(float(s), "—")) for s in (1, 2, 3, 4, 5, 10)) if limit else "—"
        ratio = drained[name] / drained[ROWS[0][0]]
        lines.append(f"| {name} | {drained[name]:.1f} s | {ratio:.2f}× | {server.refused} | {shown} |")
    auto = drained["auto (ours)"] / drained[ROWS[0][0]]
    verdict = "met" if auto <= 1.3 else "MISSED"
    return [*lines, "", f"Target: auto drains within 1.3× of unlimited: {auto:.2f}× ({verdict})."]


async def server_of_4(seconds: float) -> list[str]:
    lines = [
        f"Server working on 4 at a time, refusing past 8; 25 msg/s for {seconds:g} s"
        " (it can answer about 4 a second)",
        "",
        "| limit | answered | 429s | 429s per call | limit each 5 s |",
        "|---|---|---|---|---|",
    ]
    settled = [0]
    async for name, server, limit, run in each_row(
        ROWS, batches_of_4, rate=25, seconds=seconds, until=seconds
    ):
        over_time = ", ".join(str(v) for s, v in run.limits if s % 5 == 0) if limit else "—"
        share = server.refused / max(1, server.calls)
        lines.append(
            f"| {name} | {server.calls - server.refused} | {server.refused} | {share:.1%} | {over_time} |"
        )
        if limit is not None and limit.adaptive:
            settled = [v for s, v in run.limits if s >= 15]
    return [
        *lines,
        "",
        f"Auto settles at {min(settled)}–{max(settled)} calls at once after 15 s (target: near 4).",
    ]


async def varied_lengths() -> list[str]:
    lines = [
        "Server taking any load, answers of 20 to 800 tokens (0.9 to 16.5 s); 10 msg/s for 30 s",
        "",
        "| limit | drained at | ÷ unlimited | highest limit |",
        "|---|---|---|---|",
    ]
    drained: dict[str, float] = {}
    rows = (*ROWS, ("fixed 64 (LLM_MAX_CONCURRENCY)", 64))
    async for name, _, limit, run in each_row(rows, varied, rate=10, seconds=30, until=600):
        drained[name] = run.drained_at or float("inf")
        highest = max((v for _, v in run.limits), default=0) if limit else "—"
        ratio = drained[name] / drained[ROWS[0][0]]
        lines.append(f"| {name} | {drained[name]:.1f} s | {ratio:.2f}× | {highest} |")
    return lines


async def measure(seconds: float) -> list[str]:
    return [*await fast_server(), "", *await server_of_4(seconds), "", *await varied_lengths()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="how long the second server is loaded (60)"
    )
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()  # the limit's info lines would drown the tables
    print("\n".join(asyncio.run(measure(args.seconds))))


if __name__ == "__main__":
    main()
