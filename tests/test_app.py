"""``python bot.py`` as a user runs it: starts on a fresh data directory, stops cleanly on a
signal, refuses a second instance, and never prints the token."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .conftest import ROOT
from .test_config import TOKEN

KEY = "sk-test-key-0123456789"


def launch(data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "OPENAI_"))}
    env.update(
        {"TELEGRAM_BOT_TOKEN": TOKEN, "OPENAI_API_KEY": KEY, "DATA_DIR": str(data_dir), "LOG_LEVEL": "DEBUG"}
    )
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bot.py")], cwd=data_dir, env=env, stderr=subprocess.PIPE, text=True
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never printed; got {lines}")


def test_starts_then_stops_on_sigterm_and_refuses_a_second_instance(tmp_path: Path) -> None:
    first = launch(tmp_path)
    try:
        out = wait_for_line(first, "started")
        second = launch(tmp_path)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2
        assert err == f"bot.py: another bot process is already using {tmp_path}; stop it first\n"
        first.send_signal(signal.SIGTERM)
        _, rest = first.communicate(timeout=30)
    finally:
        first.kill()
    assert first.returncode == 0
    out_text = "".join(out) + rest
    assert "stopped cleanly" in out_text
    assert "Traceback" not in out_text and TOKEN not in out_text and KEY not in out_text
    assert (tmp_path / "bot.db").exists()
