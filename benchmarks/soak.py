"""Soak benchmark: ``python -m benchmarks.soak`` (default 10 minutes). The real ``bot.py`` in a
subprocess, through the fake Telegram and OpenAI-compatible servers of the tests, under a steady
open-loop load: ``--users`` private chats (each writes at least once; some write again within
the memory's lifetime), with a few per cent of transient faults on both upstreams, a SIGKILL and
an immediate restart on the same data directory partway through (updates keep arriving at the
fake Telegram meanwhile), then a bounded drain and a SIGTERM.

Prints one table: messages sent, answered, told they failed, lost (no reply at all), answered
more than once; the faults injected; the bot's RSS (sampled every second; growth after warm-up
is measured within the second, longer-lived process); the database's size and row counts. The
baseline, measured in the same run: the first process (its RSS idle right after start, and its
growth from the warm-up point until the kill). Each user text is unique ("u<user> m<n>") and the
fake LLM echoes it, so every reply is matched to its message by the message it replies to and by
its text. The bot's logs stay in the work directory printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import math
import os
import platform
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.e2e import bot_env
from benchmarks.soak_fakes import Ledger, Outcome, SoakOpenAI, SoakTelegram

ROOT = Path(__file__).resolve().parent.parent
FIRST_USER_ID = 100_000
TICKS = os.sysconf("SC_CLK_TCK")
PURGE_EVERY_S = 60.0  # the bot purges finished jobs once a minute (botcore.cleanup)
MB = 1024 * 1024


# --- The bot process and what is measured of it ----------------------------------------------


def proc_status(pid: int, key: str) -> int | None:
    """A /proc/<pid>/status figure in kB (VmRSS, VmHWM); None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def db_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "bot.db", data / "bot.db-wal") if p.exists())


def row_counts(db: Path) -> dict[str, int]:
    """Read-only: safe while the bot writes (WAL) and after it stopped."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("jobs", "messages", "usage")
        }
    finally:
        conn.close()


def jobs_of(db: Path, update_ids: list[int]) -> dict[int, tuple[Any, ...] | None]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {
            u: conn.execute(
                "SELECT id, kind, state, attempts, last_error FROM jobs WHERE dedup_key = ?",
                (f"tg-update:{u}",),
            ).fetchone()
            for u in update_ids
        }
    finally:
        conn.close()


@dataclass
class Sample:
    t: float  # seconds since the load started
    generation: int
    rss_kb: int


@dataclass
class Run:
    """Everything measured, filled in as the run goes."""

    samples: list[Sample] = field(default_factory=list)
    idle_rss_kb: int = 0
    peak_kb: dict[int, int] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    alive_s: dict[int, float] = field(default_factory=dict)
    kill_t: float = 0.0
    restart_t: float = 0.0
    down_s: float = 0.0
    sent_while_down: int = 0
    down: bool = False
    load_s: float = 0.0
    drain_s: float = 0.0
    db_at: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)  # point -> (bytes, rows)
    rows_end: dict[str, int] = field(default_factory=dict)
    db_peak: dict[str, int] = field(default_factory=dict)  # the most rows seen, per table
    db_peak_bytes: int = 0
    db_end_bytes: int = 0
    db_stopped_bytes: int = 0
    exit_code: int | None = None
    unexpected_exits: list[str] = field(default_factory=list)
    repeats: int = 0

    def rss_near(self, generation: int, t: float) -> float:
        """Median RSS (MB) of the process's five samples nearest ``t``."""
        own = sorted((s for s in self.samples if s.generation == generation), key=lambda s: abs(s.t - t))
        return statistics.median(s.rss_kb for s in own[:5]) / 1024 if own else math.nan


class Bot:
    """``bot.py`` in a subprocess; each start is a new generation with its own log file."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], workdir: Path) -> None:
        self.args, self.env, self.workdir = args, env, workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.started_at = 0.0
        self.logs: list[Path] = []

    async def start(self, tg: SoakTelegram) -> None:
        self.generation += 1
        log_path = self.workdir / f"bot-{self.generation}.log"
        self.logs.append(log_path)
        polls = tg.polls
        with log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(self.args.bot_dir) / "bot.py"),
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        self.started_at = time.monotonic()
        tg.ledger.generation = self.generation
        for _ in range(600):  # ready once it polls: at most 60 s
            if tg.polls > polls:
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"bot.py (start {self.generation}) did not start polling; its log ends:\n{tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, sig: int, timeout: float) -> int | None:
        """Signal it and wait; None if it did not exit in time (it is then killed)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)
            return None


# --- The run ---------------------------------------------------------------------------------


def schedule(users: int, total: int, rate: float, rng: random.Random) -> list[int]:
    """Who sends each of ``total`` messages: every user at least once, in random order; the
    remaining messages come from users who wrote in the last ~30 s, so they have memory.
    Selection sampling: a new user with probability (new users left) / (messages left)."""
    order = list(range(FIRST_USER_ID, FIRST_USER_ID + users))
    rng.shuffle(order)
    recent: collections.deque[int] = collections.deque(maxlen=max(20, int(rate * 30)))
    out, fresh = [], 0
    for i in range(total):
        if fresh < users and (not recent or rng.random() < (users - fresh) / (total - i)):
            user, fresh = order[fresh], fresh + 1
            recent.append(user)
        else:
            user = recent[rng.randrange(len(recent))]
        out.append(user)
    return out


async def load(tg: SoakTelegram, ledger: Ledger, senders: list[int], rate: float, run: Run) -> None:
    """Open loop: message i goes out at i / rate seconds, whether or not the bot keeps up."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i, user in enumerate(senders):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        text = f"u{user} m{i}"
        ledger.add(tg.add_message(user, text), user, text)
        run.sent_while_down += run.down


async def sample(bot: Bot, run: Run, t0: float, data: Path, stop: asyncio.Event) -> None:
    """The bot's RSS every second; the database's size and row counts every 15 s (for peaks)."""
    for tick in itertools.count():
        if stop.is_set():
            return
        if bot.alive():
            rss = proc_status(bot.pid, "VmRSS")
            if rss is not None:
                run.samples.append(Sample(time.monotonic() - t0, bot.generation, rss))
        if tick % 15 == 0:
            with contextlib.suppress(sqlite3.OperationalError):  # e.g. busy recovering after the kill
                await snapshot(run, None, data)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def snapshot(run: Run, point: str | None, data: Path) -> dict[str, int]:
    """Size and rows now, kept as the peak so far and, if ``point`` is named, under that name."""
    size, rows = db_bytes(data), await asyncio.to_thread(row_counts, data / "bot.db")
    run.db_peak_bytes = max(run.db_peak_bytes, size)
    for table, count in rows.items():
        run.db_peak[table] = max(run.db_peak.get(table, 0), count)
    if point is not None:
        run.db_at[point] = (size, rows)
    return rows


def record_process_end(bot: Bot, run: Run) -> None:
    """Peak RSS and CPU of the running generation, read just before it is stopped."""
    run.peak_kb[bot.generation] = proc_status(bot.pid, "VmHWM") or 0
    run.cpu_s[bot.generation] = cpu_seconds(bot.pid)
    run.alive_s[bot.generation] = time.monotonic() - bot.started_at


async def wait_until(t0: float, at: float, bot: Bot, tg: SoakTelegram, run: Run) -> None:
    """Sleep until ``at`` seconds into the run; a bot that died by itself is noted and restarted."""
    while (left := t0 + at - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 1.0))
        if not bot.alive():
            assert bot.proc is not None
            run.unexpected_exits.append(f"process {bot.generation} exited with {bot.proc.returncode}")
            if len(run.unexpected_exits) > 3:
                raise RuntimeError("bot.py keeps exiting: " + "; ".join(run.unexpected_exits))
            await bot.start(tg)


async def soak(args: argparse.Namespace, workdir: Path) -> tuple[Run, Outcome, SoakTelegram, SoakOpenAI, Bot]:
    rng = random.Random(args.seed)
    ledger = Ledger()
    tg = await SoakTelegram(ledger, args.tg_faults, random.Random(rng.random())).start()
    llm = await SoakOpenAI(args.llm_faults, args.llm_slow, args.slow_s, random.Random(rng.random())).start()
    data = workdir / "data"
    env = bot_env(
        tg,
        llm,
        workdir,
        LOG_LEVEL=args.log_level,
        STREAM=str(args.stream).lower(),
        TRANSCRIPTION_MODE="off",
        OPENAI_TIMEOUT="10",
        # The gate stays on but out of the way: limits no user of this load can reach.
        RATE_LIMIT_USER_PER_MIN="1000",
        RATE_LIMIT_GLOBAL_PER_MIN="1000000",
        TELEGRAM_RATE_PER_S="1000",  # the fake has no flood limits; the pacer stays on the path
        DAILY_COST_ALERT_USD="off",
        JOB_RETENTION_DONE_S=str(args.done_s),
        JOB_RETENTION_DEAD_S=str(args.dead_s),
        CLEANUP_INTERVAL_HOURS=str(args.cleanup_h),
        HISTORY_TTL_DAYS=str(args.ttl_days),
    )
    duration = args.minutes * 60
    total = max(round(args.rate * duration), args.users)
    rate = total / duration
    senders = schedule(args.users, total, rate, rng)
    run = Run(load_s=duration, repeats=total - args.users)
    bot = Bot(args, env, workdir)
    stop_sampling = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await bot.start(tg)
        await asyncio.sleep(3)  # idle: imports done, connections open, nothing to do
        run.idle_rss_kb = proc_status(bot.pid, "VmRSS") or 0
        t0 = time.monotonic()
        sampler = asyncio.create_task(sample(bot, run, t0, data, stop_sampling))
        sending = asyncio.create_task(load(tg, ledger, senders, rate, run))
        tasks += [sampler, sending]
        warm = args.warmup * duration
        await wait_until(t0, warm, bot, tg, run)
        await snapshot(run, "warm-up 1", data)
        await wait_until(t0, args.kill_at * duration, bot, tg, run)
        record_process_end(bot, run)
        run.kill_t = time.monotonic() - t0
        run.down = True  # from the kill until the new process polls
        await bot.stop(signal.SIGKILL, 10)
        await bot.start(tg)
        run.down = False
        run.restart_t = time.monotonic() - t0
        run.down_s = run.restart_t - run.kill_t
        await wait_until(t0, min(run.restart_t + warm, duration), bot, tg, run)
        await snapshot(run, "warm-up 2", data)
        await wait_until(t0, duration, bot, tg, run)
        await asyncio.wait_for(sending, 30)
        drain_start = time.monotonic()
        ledger.all_settled.clear()
        if ledger.unsettled():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.all_settled.wait(), args.drain)
        run.drain_s = time.monotonic() - drain_start
        await asyncio.sleep(3)  # a duplicate sent just after the last answer still counts
        run.db_end_bytes = db_bytes(data)
        await snapshot(run, "end", data)
        record_process_end(bot, run)
        stop_sampling.set()
        await sampler
        run.exit_code = await bot.stop(signal.SIGTERM, 60)
        run.db_stopped_bytes = db_bytes(data)
        run.rows_end = await asyncio.to_thread(row_counts, data / "bot.db")
    finally:
        stop_sampling.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if bot.alive():
            await bot.stop(signal.SIGKILL, 10)
        await tg.stop()
        await llm.stop()
    return run, ledger.outcome(tg.deleted), tg, llm, bot


# --- The report ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else math.nan


def seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def ids(values: list[int], limit: int = 10) -> str:
    return ", ".join(map(str, values[:limit])) + (" …" if len(values) > limit else "")


def scan_logs(logs: list[Path]) -> tuple[collections.Counter[str], list[str], int]:
    """Lines by level, the first error lines, and how often a circuit opened."""
    levels: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    opened = 0
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split(" | ")
            level = parts[1].strip() if len(parts) > 2 else ("TRACEBACK" if "Traceback" in line else "")
            if level:
                levels[level] += 1
            if level in ("ERROR", "CRITICAL", "TRACEBACK") and len(errors) < 12:
                errors.append(f"{path.name}: {line[:300]}")
            opened += "-> open" in line
    return levels, errors, opened


def render(
    args: argparse.Namespace,
    run: Run,
    out: Outcome,
    tg: SoakTelegram,
    llm: SoakOpenAI,
    bot: Bot,
    backlog: int,
) -> str:
    sent = args.users + run.repeats
    rate = sent / run.load_s
    ok = lambda good: "met" if good else "MISSED"  # noqa: E731
    mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
    size = lambda b: f"{b / MB:.1f} MB ({b:,} bytes)"  # noqa: E731
    rows = lambda r: " / ".join(f"{r[t]:,}" for t in ("jobs", "messages", "usage"))  # noqa: E731
    warm = args.warmup * run.load_s
    w1, k1 = run.rss_near(1, warm), run.rss_near(1, run.kill_t)
    w2_t = min(run.restart_t + warm, run.load_s)
    last = [s.rss_kb for s in run.samples if s.generation == bot.generation][-5:]
    w2, end = run.rss_near(bot.generation, w2_t), statistics.median(last) / 1024 if last else math.nan
    growth, growth1 = end - w2, k1 - w1
    timeline = []
    for tenth in range(11):
        t = tenth / 10 * run.load_s
        gen = 1 if t < run.kill_t else bot.generation
        timeline.append(f"{run.rss_near(gen, t):.0f}" + ("" if gen == 1 or tenth == 0 else "*"))
    tg_faults, llm_f = tg.faults_served(), llm.faults
    cpu2 = run.cpu_s.get(bot.generation, 0.0)
    done_bound = round(1.25 * rate * (args.done_s + PURGE_EVERY_S))
    ttl_s = args.ttl_days * 86_400
    # The full cleanup runs on the purge's minute tick: the first one at or after the interval.
    full_every_s = math.ceil(args.cleanup_h * 3600 / PURGE_EVERY_S) * PURGE_EVERY_S
    memory_bound = round(2 * 1.25 * rate * (ttl_s + full_every_s))
    jobs_peak, messages_peak = run.db_peak["jobs"], run.db_peak["messages"]
    bytes1, rows1 = run.db_at["warm-up 1"]
    bytes2, rows2 = run.db_at["warm-up 2"]
    usage_added = run.rows_end.get("usage", 0) - rows2["usage"]
    mode = "STREAM=true" if args.stream else "STREAM=false"
    lines = [
        f"Soak: {args.minutes:g} min of load at {rate:.1f} messages/s, {args.users:,} users, {mode};"
        f" SIGKILL at {run.kill_t / 60:.1f} min and restart; seed {args.seed};"
        f" Python {platform.python_version()}, {os.cpu_count()} cores",
        "",
        "| measure | value | baseline (same run) |",
        "|---|---|---|",
        f"| messages sent | {sent:,} ({args.users:,} users; {run.repeats:,} from users writing again;"
        f" {run.sent_while_down} while the bot was down) | — |",
        f"| answered | {out.answered:,} (answered or told, by process 1: {out.settled_by[1]:,}) | — |",
        f"| told it failed (a polite notice) | {len(out.failed)} | — |",
        f"| **lost** (no answer, no notice) | **{len(out.lost)}**"
        + (f" ({backlog} of them still queued in the bot's database: late, not dropped)" if out.lost else "")
        + " | — |",
        f"| **duplicates** (answered more than once) | **{len(out.duplicates)}** | — |",
        f"| wrong replies (unknown text / wrong chat / unmatched) | {out.other} / {out.wrong_chat}"
        f" / {out.unattributed} | — |",
        f"| wait notices (outage, rate limited; the answer followed) | {out.wait_notices} | — |",
        f"| send → answer p50 / p99 / max | {seconds(pct(out.latencies, 0.5))} /"
        f" {seconds(pct(out.latencies, 0.99))} / {seconds(pct(out.latencies, 1.0))} | — |",
        f"| LLM calls with memory / with another chat's turns | {llm.with_history:,} of {llm.calls:,}"
        f" / {llm.foreign_history} | — |",
        f"| faults injected, LLM | {llm_f['500']} × 500, {llm_f['503']} × 503, {llm_f['429']} × 429"
        f" (Retry-After 1), {llm_f['slow']} slow ({args.slow_s:g} s) | — |",
        f"| faults injected, Telegram sendMessage | {tg_faults[502]} × 502, {tg_faults[429]} × 429"
        f" (retry_after 1) | — |",
        f"| circuit opened (bot log) | {scan_logs(bot.logs)[2]} | — |",
        f"| SIGKILL → polling again | {run.down_s:.1f} s (at {run.kill_t / 60:.1f} min) | — |",
        f"| drain after the load stopped | {run.drain_s:.1f} s | — |",
        f"| bot CPU | {cpu2:.0f} s in {run.alive_s.get(bot.generation, 0):.0f} s (process 2) |"
        f" {run.cpu_s.get(1, 0):.0f} s in {run.alive_s.get(1, 0):.0f} s (process 1) |",
        f"| peak RSS (VmHWM) | {mb(run.peak_kb.get(bot.generation, 0))} (process 2) |"
        f" {mb(run.peak_kb.get(1, 0))} (process 1) |",
        f"| RSS at warm-up → at the end | {w2:.1f} → {end:.1f} MB (process 2, {w2_t / 60:.1f} min →"
        f" end of drain) | {w1:.1f} → {k1:.1f} MB (process 1, {warm / 60:.1f} → {run.kill_t / 60:.1f}"
        f" min); idle right after start {mb(run.idle_rss_kb)} |",
        f"| **RSS growth after warm-up** | **{growth:+.1f} MB** (process 2) |"
        f" {growth1:+.1f} MB (process 1) |",
        f"| RSS every 10 % of the load (MB; * process 2) | {', '.join(timeline)} | — |",
        f"| database (bot.db + -wal) at warm-up → end | {size(bytes2)} → {size(run.db_end_bytes)};"
        f" after stop {size(run.db_stopped_bytes)} | {size(bytes1)} at warm-up 1 |",
        f"| rows jobs / messages / usage: warm-up → end (after stop); the most seen | {rows(rows2)} →"
        f" {rows(run.rows_end)}; {rows(run.db_peak)} (every 15 s) | {rows(rows1)} at warm-up 1 |",
        "",
        f"Target: RSS growth after warm-up ≤ 10 MB: {ok(growth <= 10)} ({growth:+.1f} MB in process 2,"
        f" {w2_t / 60:.1f} min → end); database bounded by the retention settings:"
        f" {ok(jobs_peak <= done_bound and messages_peak <= memory_bound)} (the most jobs {jobs_peak:,} ≤"
        f" {done_bound:,} = 1.25 × rate × (JOB_RETENTION_DONE_S {args.done_s:g} s + 60 s purge period);"
        f" the most messages {messages_peak:,} ≤ {memory_bound:,} = 2 turns × 1.25 × rate × (HISTORY_TTL"
        f" {ttl_s:.0f} s + {full_every_s:.0f} s between full cleanups: CLEANUP_INTERVAL"
        f" {args.cleanup_h * 3600:.0f} s, on the next minute tick); usage keeps one row per answer,"
        f" USAGE_RETENTION_DAYS ≥ 31 by design: +{usage_added:,} rows after warm-up 2, while the file"
        f" changed by {(run.db_end_bytes - bytes2) / MB:+.1f} MB); messages lost 0: {ok(not out.lost)}"
        f" ({len(out.lost)}; {backlog} still queued).",
    ]
    return "\n".join(lines)


def details(args: argparse.Namespace, run: Run, out: Outcome, bot: Bot, workdir: Path) -> str:
    levels, errors, _ = scan_logs(bot.logs)
    lines = [
        "",
        f"Bot log lines by level: {dict(levels)}; logs and database in {workdir}",
        f"Bot exit status after SIGTERM: {'none in 60 s' if run.exit_code is None else run.exit_code}",
    ]
    lines += [f"Unexpected exit: {e}" for e in run.unexpected_exits]
    lines += [f"  {e}" for e in errors]
    db = workdir / "data" / "bot.db"
    for name, found in (("Lost", out.lost), ("Told it failed", out.failed), ("Duplicated", out.duplicates)):
        if found:
            lines.append(f"{name} update ids: {ids(found)}")
            for update_id, job in jobs_of(db, found[:10]).items():
                lines.append(f"  {update_id}: job {job if job else 'gone (purged, or never stored)'}")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    print(f"soak: {args.minutes:g} min, {args.users:,} users, work directory {workdir} …", flush=True)
    run, out, tg, llm, bot = await soak(args, workdir)
    jobs = await asyncio.to_thread(jobs_of, workdir / "data" / "bot.db", out.lost)
    backlog = sum(job is not None and job[2] in ("queued", "running") for job in jobs.values())
    print()
    print(render(args, run, out, tg, llm, bot, backlog))
    print(details(args, run, out, bot, workdir))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (10)")
    parser.add_argument("--users", type=int, default=20_000, help="distinct private chats (20000)")
    parser.add_argument(
        "--rate",
        type=float,
        default=40.0,
        help="messages per second (40; raised if needed so that every user writes at least once)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stream", action="store_true", help="run the bot with STREAM=true")
    parser.add_argument("--kill-at", type=float, default=0.35, help="SIGKILL at this fraction of the load")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up, as a fraction of the load")
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the last answers")
    parser.add_argument("--llm-faults", type=float, default=0.03, help="LLM calls answered 500/503/429")
    parser.add_argument("--llm-slow", type=float, default=0.01, help="LLM calls answered slowly")
    parser.add_argument("--slow-s", type=float, default=3.0)
    parser.add_argument("--tg-faults", type=float, default=0.02, help="sendMessage calls failed 502/429")
    parser.add_argument("--done-s", type=float, default=60.0, help="JOB_RETENTION_DONE_S (60)")
    parser.add_argument("--dead-s", type=float, default=120.0, help="JOB_RETENTION_DEAD_S (120)")
    parser.add_argument("--cleanup-h", type=float, default=0.02, help="CLEANUP_INTERVAL_HOURS (0.02)")
    parser.add_argument("--ttl-days", type=float, default=0.001, help="HISTORY_TTL_DAYS (0.001 = 86 s)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--workdir", help="where the data and logs go (default: a new temp dir, kept)")
    parser.add_argument("--bot-dir", default=str(ROOT), help="the checkout whose bot.py runs")
    args = parser.parse_args()
    if not 0 < args.warmup < args.kill_at < 1:
        parser.error("need 0 < --warmup < --kill-at < 1")
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="soak-")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
