"""``python bot.py`` as a user runs it: starts on a fresh data directory, stops cleanly on a
signal, refuses a second instance, and says in one line when Telegram is out of reach."""

import asyncio
import signal
from pathlib import Path

from .botproc import BotProcess
from .conftest import KEY, TOKEN, eventually
from .fakes import FakeOpenAI, FakeTelegram


async def test_starts_then_stops_on_sigterm_and_refuses_a_second_instance(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    first = BotProcess(tmp_path, tg, llm).start()
    try:
        await eventually(lambda: "started as @test_bot" in first.log(), timeout=30, what="startup")
        second = BotProcess(tmp_path / "other-log", tg, llm, DATA_DIR=str(tmp_path)).start()
        assert await second.stop(signal.SIGCONT) == 2  # SIGCONT: just wait for it to exit
        assert second.log().endswith(
            f"bot.py: another bot process is already using {tmp_path}; stop it first\n"
        )
    finally:
        code = await first.stop()
    log = first.log()
    assert code == 0, log
    assert "stopped cleanly" in log
    assert "Traceback" not in log and TOKEN not in log and KEY not in log
    assert (tmp_path / "bot.db").exists()


async def test_unreachable_telegram_is_one_line_and_status_2(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    bot = BotProcess(tmp_path, tg, llm, TELEGRAM_API_URL="http://127.0.0.1:9").start()
    assert await bot.stop(signal.SIGCONT) == 2
    assert bot.log().splitlines()[-1] == (
        "bot.py: TELEGRAM_API_URL: cannot reach the Bot API at http://127.0.0.1:9 (NetworkError)"
    )


async def test_a_rejected_token_is_one_line_and_status_2(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    bot = BotProcess(tmp_path, tg, llm, TELEGRAM_BOT_TOKEN="999999:WrongTokenWrongTokenWrongToken").start()
    assert await bot.stop(signal.SIGCONT) == 2
    assert bot.log().splitlines()[-1] == (
        "bot.py: TELEGRAM_BOT_TOKEN: Telegram rejected this token (revoked or mistyped?)"
    )


async def test_sigterm_while_still_loading_is_a_clean_exit(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """A supervisor stopping the bot in its first moments (still importing its libraries)."""
    bot = BotProcess(tmp_path, tg, llm).start()
    await asyncio.sleep(0.1)
    assert await bot.stop() == 0, bot.log()
    assert "Traceback" not in bot.log()
