"""Runs the real ``bot.py`` in a subprocess against the fake servers of the test."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import KEY, ROOT, TOKEN
from .fakes import FakeOpenAI, FakeTelegram


class BotProcess:
    def __init__(self, data_dir: Path, telegram: FakeTelegram, openai: FakeOpenAI, **env: str) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "bot.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_", "DATA_DIR"))}
        self.env = {
            **base,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": telegram.base_url,
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": openai.base_url,
            "OPENAI_MODEL": "fake-model",
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "DEBUG",
            # Tests of other features run as a bot open to all, with limits out of their way.
            "ALLOWED_USER_IDS": "*",
            "RATE_LIMIT_USER_PER_MIN": "1000",
            "RATE_LIMIT_GLOBAL_PER_MIN": "10000",
            "STREAM": "false",  # streaming has its own tests; the others check final messages
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BotProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bot.py")], cwd=self.data_dir, env=self.env, stdout=log, stderr=log
        )
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return await asyncio.to_thread(self.proc.wait, timeout)

    async def stop_clean(self) -> None:
        """Stop; it must exit 0, with no traceback and no secret in its log."""
        code = await self.stop()
        log = self.log()
        assert TOKEN not in log and KEY not in log
        assert "Traceback" not in log, log
        assert code == 0, log

    async def kill(self) -> int:
        return await self.stop(signal.SIGKILL)
