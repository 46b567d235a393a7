"""Streaming benchmark: ``python -m benchmarks.streaming`` (also run at the end of
``benchmarks.e2e``). Our bot (``python bot.py``) against the fake Bot API and OpenAI servers, in
three modes measured in the same run: STREAM=true with drafts (``sendMessageDraft``), STREAM=true
on a Bot API server without drafts (paced edits), and STREAM=false, the baseline.

- One at a time: a message, then its answer, 20 times; the fake LLM writes a 500-character
  answer in about 1 s (20 pieces, 50 ms apart). Time from sending to the first visible text (a
  draft or a message) and to the complete answer; Telegram calls per answer.
- Burst: 500 messages from 50 users arrive at once; the fake LLM answers at once; Telegram's
  pacing is on (TELEGRAM_RATE_PER_S=30, the default). Answers per second until the last is
  delivered, the median time to an answer, and Telegram calls per answer. The target: streamed
  throughput within 10% of non-streamed, for drafts and for edits.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import OURS, TOKEN, bot_env, ready, start_bot, stop_bot
from tests.fakes import FakeOpenAI, FakeTelegram, Scripted

MODES = {
    "drafts": "STREAM=true, drafts",
    "edits": "STREAM=true, a server without drafts: edits",
    "off": "STREAM=false (baseline)",
}
# The bot's own bookkeeping with the server, not part of answering.
NOT_ANSWERING = {"getUpdates", "getMe", "deleteWebhook", "setMyCommands", "getMyCommands"}


@dataclass
class Run:
    first: list[float]  # seconds to the first visible text, per message
    done: list[float]  # seconds to the complete answer, per message
    calls: Counter[str]  # Telegram calls made while answering, by method
    answers: int
    elapsed: float  # seconds from the first message to the last answer

    @property
    def calls_per_answer(self) -> float:
        return sum(self.calls.values()) / self.answers


async def _with_bot(
    mode: str,
    workdir: Path,
    llm_steps: list[Scripted],
    extra: dict[str, str],
    drive: Callable[[FakeTelegram], Awaitable[Run]],
) -> Run:
    tg, llm = await FakeTelegram(TOKEN).start(), await FakeOpenAI().start()
    tg.no_drafts = mode == "edits"
    llm.script = llm_steps
    env = bot_env(tg, llm, workdir, STREAM="false" if mode == "off" else "true", **extra)
    proc = await start_bot(OURS, workdir, env, f"{mode}.log")
    try:
        await ready(tg)
        return await drive(tg)
    finally:
        await stop_bot(proc)
        await tg.stop()
        await llm.stop()


def _watch(tg: FakeTelegram, expected: dict[int, str]) -> tuple[dict[int, float], dict[int, float]]:
    """Times of each chat's first visible text and of its complete answer (``expected``)."""
    first: dict[int, float] = {}
    done: dict[int, float] = {}

    def seen(entry: dict[str, object]) -> None:
        chat = int(entry["chat_id"])  # type: ignore[arg-type]
        if entry["text"]:
            first.setdefault(chat, time.perf_counter())
        if entry["text"] == expected.get(chat) and "draft_id" not in entry:
            done.setdefault(chat, time.perf_counter())

    tg.on_send = tg.on_draft = seen
    return first, done


def _answering_calls(tg: FakeTelegram, since: int) -> Counter[str]:
    return Counter(method for method, _ in tg.calls[since:] if method not in NOT_ANSWERING)


async def one_at_a_time(mode: str, messages: int, workdir: Path) -> Run:
    answer = " ".join(f"word{i:03d}" for i in range(63))  # about 500 characters
    step = (
        Scripted(text=answer, delay_s=1.0)
        if mode == "off"
        else Scripted(text=answer, piece_chars=25, piece_delay_s=0.05)
    )

    async def drive(tg: FakeTelegram) -> Run:
        expected: dict[int, str] = {}
        first, done = _watch(tg, expected)
        firsts: list[float] = []
        dones: list[float] = []
        since = 0
        for i in range(messages + 1):  # the first one warms up
            chat = 30_000 + i
            expected[chat] = answer
            if i == 1:
                since = len(tg.calls)
            t0 = time.perf_counter()
            tg.add_message(chat, "write something")
            for _ in range(1000):
                if chat in done:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # a receipt or a last call after the answer counts too
            if i:
                firsts.append(first[chat] - t0)
                dones.append(done[chat] - t0)
        return Run(firsts, dones, _answering_calls(tg, since), messages, sum(dones))

    return await _with_bot(mode, workdir, [step] * (messages + 1), {}, drive)


async def burst(mode: str, users: int, per_user: int, workdir: Path) -> Run:
    async def drive(tg: FakeTelegram) -> Run:
        # Warm up (imports, connections) with one message, then the burst.
        expected = {99_999: "echo: warm up"}
        _, done = _watch(tg, expected)
        tg.add_message(99_999, "warm up")
        for _ in range(1000):
            if 99_999 in done:
                break
            await asyncio.sleep(0.01)
        finished: dict[tuple[int, int], float] = {}
        pending = {
            f"echo: message {i} from user {u}": (u, i) for u in range(1, users + 1) for i in range(per_user)
        }

        def seen(entry: dict[str, object]) -> None:
            key = pending.pop(str(entry["text"]), None)
            if key is not None and "draft_id" not in entry:
                finished[key] = time.perf_counter()

        tg.on_send = seen
        tg.on_draft = None
        since = len(tg.calls)
        t0 = time.perf_counter()
        for i in range(per_user):
            for u in range(1, users + 1):
                tg.add_message(u, f"message {i} from user {u}")
        for _ in range(3000):  # at most 300 s
            if not pending:
                break
            await asyncio.sleep(0.1)
        if pending:
            raise TimeoutError(f"{len(pending)} answers missing after 300 s ({mode})")
        await asyncio.sleep(1.5)  # receipts cleared after the last answer count too
        latencies = [t - t0 for t in finished.values()]
        return Run([], latencies, _answering_calls(tg, since), users * per_user, max(finished.values()) - t0)

    extra = {"TELEGRAM_RATE_PER_S": "30"}  # Telegram's pacing, as in production
    return await _with_bot(mode, workdir, [], extra, drive)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:,.0f} ms"


def _calls(run: Run) -> str:
    top = ", ".join(f"{method} {count / run.answers:.2f}" for method, count in run.calls.most_common())
    return f"{run.calls_per_answer:.2f} ({top})"


async def report(messages: int, users: int, per_user: int, rounds: int) -> str:
    singles: dict[str, Run] = {}
    bursts: dict[str, list[Run]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            workdir = Path(tmp) / f"single-{mode}"
            workdir.mkdir()
            singles[mode] = await one_at_a_time(mode, messages, workdir)
        for r in range(rounds):
            for mode in MODES:
                workdir = Path(tmp) / f"burst-{mode}-{r}"
                workdir.mkdir()
                bursts[mode].append(await burst(mode, users, per_user, workdir))
    lines = [
        f"Streaming, one message at a time ({messages} messages): the fake LLM writes a 500-character"
        " answer in about 1 s (20 pieces, 50 ms apart); not streamed, it answers after 1 s.",
        "",
        "| ours | first visible text, p50 | complete answer, p50 | Telegram calls per answer |",
        "|---|---|---|---|",
    ]
    for mode, name in MODES.items():
        run = singles[mode]
        lines.append(f"| {name} | {_ms(run.first)} | {_ms(run.done)} | {_calls(run)} |")
    lines += [
        "",
        f"Burst: {users * per_user} messages from {users} users at once, the fake LLM answering at once,"
        f" TELEGRAM_RATE_PER_S=30; medians of {rounds} rounds.",
        "",
        "| ours | answers/s | time to answer, p50 | Telegram calls per answer |",
        "|---|---|---|---|",
    ]
    rate = {
        mode: statistics.median(run.answers / run.elapsed for run in runs) for mode, runs in bursts.items()
    }
    for mode, name in MODES.items():
        runs = bursts[mode]
        p50 = statistics.median(statistics.median(run.done) for run in runs)
        middle = sorted(runs, key=lambda run: run.answers / run.elapsed)[len(runs) // 2]
        lines.append(f"| {name} | {rate[mode]:.1f} | {p50 * 1000:,.0f} ms | {_calls(middle)} |")
    verdicts = []
    for mode in ("drafts", "edits"):
        ratio = rate[mode] / rate["off"]
        verdicts.append(f"{mode} {ratio:.2f}× ({'met' if ratio >= 0.9 else 'MISSED'})")
    lines += [
        "",
        "Target: streamed throughput ≥ 0.9× non-streamed under the burst: " + "; ".join(verdicts) + ".",
    ]
    return "\n".join(lines)


async def add_streaming_report(messages: int, users: int, per_user: int, rounds: int = 3) -> None:
    print()
    print(await report(messages, users, per_user, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20, help="one at a time (20)")
    parser.add_argument("--users", type=int, default=50, help="burst (50)")
    parser.add_argument("--per-user", type=int, default=10, help="burst (10)")
    parser.add_argument("--rounds", type=int, default=3, help="burst rounds (3)")
    args = parser.parse_args()
    asyncio.run(add_streaming_report(args.messages, args.users, args.per_user, args.rounds))


if __name__ == "__main__":
    main()
