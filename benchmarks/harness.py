"""What the end-to-end benchmarks share: our bot run as a subprocess against the fake Bot API
and OpenAI servers of ``tests/fakes.py``, its environment, and readings from /proc (Linux)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakes import FakeOpenAI, FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456789:AAH4kq-EXAMPLE_token_value_abcdefghi"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bot_env(tg: FakeTelegram, llm: FakeOpenAI, workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_", "DATA_DIR"))}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=tg.base_url,
        OPENAI_BASE_URL=llm.base_url,
        OPENAI_API_KEY="k",
        OPENAI_MODEL="fake-model",
        DATA_DIR=str(workdir / "data"),
        LOG_LEVEL="WARNING",
        # The fake Telegram has no flood limits, and the baselines do not pace their sends:
        # with pacing on, ours would be held to Telegram's 30 messages/s and the load phase
        # would measure that limit instead of the bot. (The burst benchmark turns it back on.)
        TELEGRAM_RATE_PER_S="0",
        ALLOWED_USER_IDS="*",
        RATE_LIMIT_USER_PER_MIN="0",  # 500 messages in seconds: the limits would refuse most
        RATE_LIMIT_GLOBAL_PER_MIN="0",
    )
    env.update(extra)
    return env


async def start_bot(
    argv: list[str], workdir: Path, env: dict[str, str], log_name: str
) -> asyncio.subprocess.Process:
    log = (workdir / log_name).open("ab")
    try:
        return await asyncio.create_subprocess_exec(*argv, cwd=workdir, env=env, stdout=log, stderr=log)
    finally:
        log.close()


async def ready(tg: FakeTelegram) -> None:
    """Until the bot polls (it has started)."""
    for _ in range(300):
        if any(method == "getUpdates" for method, _ in tg.calls):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the bot did not start polling within 15 s")


async def stop_bot(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 30)


OURS = [sys.executable, str(ROOT / "bot.py")]
