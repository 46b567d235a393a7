"""End-to-end benchmark: ``python -m benchmarks.e2e``. 500 messages from 50 simulated users go
through a fake Telegram Bot API server and a fake OpenAI-compatible server (answering at once)
to three bots, each a subprocess measured in the same run:

- ours: ``python bot.py`` (durable queue, memory, order per chat, typing indicator);
- a bare python-telegram-bot echo bot: the floor the library itself costs;
- a minimal stateless LLM bot: python-telegram-bot + the openai SDK, one completion and a reply;
- ours again, each message a photo (``tests/fixtures/photo.jpg``, 2000×1500, 85 KB) with the text
  as its caption: the cost of a photo question (acknowledgement, download, decode, resize,
  re-encode, a request carrying the image) beside a text one.

Two phases per bot. Load: each of 50 users sends a message and waits for the reply before the
next (closed loop), which keeps the machine busy: messages/s and the bot's CPU time per message
(all its threads, from /proc, so Linux only). Latency: one user, one message at a time, so the
time from send to reply (p50, p99) is the bot's own and not queueing behind other users. Last,
the bot's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import (
    OURS,
    ROOT,
    TOKEN,
    bot_env,
    cpu_seconds,
    peak_rss_mb,
    ready,
    start_bot,
    stop_bot,
)
from benchmarks.streaming import add_streaming_report
from botcore import texts
from tests.fakes import FakeOpenAI, FakeTelegram

PHOTO = (ROOT / "tests" / "fixtures" / "photo.jpg").read_bytes()


@dataclass
class Sample:
    rate: float
    cpu_ms: float
    latencies: list[float]  # seconds, the one-user phase
    peak_rss_mb: float


@dataclass
class Row:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def latency(self, q: float) -> float:
        values = sorted(x for s in self.samples for x in s.latencies)
        return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def command(kind: str, tg: FakeTelegram, llm: FakeOpenAI) -> list[str]:
    if kind == "ours":
        return OURS
    if kind == "echo":
        return [sys.executable, str(ROOT / "benchmarks/baselines/echo_bot.py"), TOKEN, tg.base_url]
    return [
        sys.executable,
        str(ROOT / "benchmarks/baselines/minimal_llm_bot.py"),
        TOKEN,
        tg.base_url,
        llm.base_url,
    ]


async def measure(kind: str, users: int, per_user: int, latency_messages: int, workdir: Path) -> Sample:
    """``kind`` "photo": our bot, sent photos with captions."""
    tg, llm = await FakeTelegram(TOKEN).start(), await FakeOpenAI().start()
    env = bot_env(tg, llm, workdir, STREAM="false")  # the baselines do not stream either
    proc = await start_bot(command("ours" if kind == "photo" else kind, tg, llm), workdir, env, f"{kind}.log")
    waiting: dict[int, asyncio.Future[float]] = {}

    def on_send(entry: dict[str, object]) -> None:
        if entry["text"] == texts.IMAGE_ACK:
            return  # the answer is what is waited for
        fut = waiting.pop(int(entry["chat_id"]), None)  # type: ignore[arg-type]
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    tg.on_send = on_send
    loop = asyncio.get_running_loop()

    async def exchange(chat_id: int, text: str) -> float:
        fut = loop.create_future()
        waiting[chat_id] = fut
        t0 = time.perf_counter()
        if kind == "photo":
            tg.add_photo(chat_id, PHOTO, caption=text)
        else:
            tg.add_message(chat_id, text)
        return await asyncio.wait_for(fut, 60) - t0

    async def user(chat_id: int, count: int, out: list[float]) -> None:
        for i in range(count):
            out.append(await exchange(chat_id, f"message {i} from user {chat_id}"))

    try:
        await ready(tg)
        warm: list[float] = []
        await asyncio.gather(*(user(10_000 + u, 1, warm) for u in range(5)))  # connections, imports
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        await asyncio.gather(*(user(u + 1, per_user, warm) for u in range(users)))
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        latencies: list[float] = []
        await user(20_000, latency_messages, latencies)
        rss = peak_rss_mb(proc.pid)
    finally:
        await stop_bot(proc)
        await tg.stop()
        await llm.stop()
    n = users * per_user
    return Sample(rate=n / elapsed, cpu_ms=cpu * 1000 / n, latencies=latencies, peak_rss_mb=rss)


def render(rows: dict[str, Row], args: argparse.Namespace) -> str:
    lines = [
        "| bot | messages/s (load) | CPU ms per message (load) | latency p50 | latency p99 | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        if not row.samples:
            continue
        lines.append(
            f"| {row.name} | {row.med('rate'):,.0f} | {row.med('cpu_ms'):.2f}"
            f" | {row.latency(0.5) * 1000:.1f} ms | {row.latency(0.99) * 1000:.1f} ms"
            f" | {row.med('peak_rss_mb'):.0f} MB |"
        )
    ours, minimal = rows["ours"], rows["minimal"]
    cpu_ratio = ours.med("cpu_ms") / minimal.med("cpu_ms")
    added = (ours.latency(0.5) - minimal.latency(0.5)) * 1000
    rss = ours.med("peak_rss_mb")
    ok = lambda good: "met" if good else "MISSED"  # noqa: E731
    lines += [
        "",
        f"Targets: CPU per message {cpu_ratio:.2f}× the minimal LLM bot's (≤ 1.5×: {ok(cpu_ratio <= 1.5)});"
        f" peak RSS {rss:.0f} MB (≤ 120 MB: {ok(rss <= 120)});"
        f" p50 latency added over the minimal bot {added:+.1f} ms (≤ 20 ms: {ok(added <= 20)}).",
    ]
    photo = rows.get("photo")
    if photo is not None and photo.samples:
        extra = photo.med("cpu_ms") - ours.med("cpu_ms")
        lines.append(
            f"A photo question costs {extra:+.1f} ms of CPU over a text one"
            f" ({photo.med('cpu_ms') / ours.med('cpu_ms'):.1f}× ours with text)."
        )
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    rows = {
        "ours": Row("ours (bot.py)"),
        "echo": Row("python-telegram-bot echo bot (floor)"),
        "minimal": Row("minimal LLM bot (PTB + openai, stateless)"),
        "photo": Row("ours, a photo with each message (baseline: ours with text)"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            print(f"round {r + 1}/{args.repeat} …", flush=True)
            for kind, row in rows.items():
                workdir = Path(tmp) / f"{kind}-{r}"
                workdir.mkdir()
                row.samples.append(
                    await measure(kind, args.users, args.per_user, args.latency_messages, workdir)
                )
    print()
    print(
        f"End to end: load {args.users} users × {args.per_user} messages (closed loop), latency"
        f" {args.latency_messages} messages from one user; fake LLM answering at once; Python"
        f" {platform.python_version()}, {os.cpu_count()} cores; medians of {args.repeat} rounds"
    )
    print()
    print(render(rows, args))
    await add_streaming_report(args.stream_messages, args.burst_users, args.burst_per_user)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--latency-messages", type=int, default=50, help="one-user phase (50)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stream-messages", type=int, default=20, help="streaming phase (20)")
    parser.add_argument("--burst-users", type=int, default=50, help="streaming burst (50)")
    parser.add_argument("--burst-per-user", type=int, default=10, help="streaming burst (10)")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
