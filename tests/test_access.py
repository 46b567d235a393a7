"""Who may use the bot, how fast and how much, groups, and the admin commands: the real bot
process against the fake servers."""

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from botcore import texts
from botcore.routing import help_text

from .botproc import BotProcess
from .conftest import eventually
from .fakes import FakeOpenAI, FakeTelegram, Scripted

ADMIN = 1


@asynccontextmanager
async def bot_with(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, **env: str
) -> AsyncIterator[BotProcess]:
    process = BotProcess(tmp_path / "data", tg, llm, ADMIN_USER_IDS=str(ADMIN), **env).start()
    try:
        yield process
    finally:
        await process.stop_clean()


def jobs_in(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "data" / "bot.db") as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


async def settle(tg: FakeTelegram, condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, then a little longer, so that anything extra would show up too."""
    await eventually(condition, timeout=20, what=what)
    await asyncio.sleep(0.5)


async def test_a_stranger_is_told_their_id_and_costs_nothing(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, tg, llm, ALLOWED_USER_IDS="") as bot:  # unset: admins only
        for text in ("hi", "hello?", "/start"):
            tg.add_message(50, text)
        tg.add_message(ADMIN, "I am the owner")
        await settle(tg, lambda: len(tg.texts_to(ADMIN)) == 1 and tg.texts_to(50), "the replies")
        assert tg.texts_to(50) == [texts.NOT_ALLOWED.format(user_id=50)]  # once, with the id
        assert "50" in tg.texts_to(50)[0] and "ALLOWED_USER_IDS" in tg.texts_to(50)[0]
        assert tg.texts_to(ADMIN) == ["echo: I am the owner"]
        assert len(llm.requests) == 1
        assert jobs_in(tmp_path) == 1  # the stranger's three messages made no job at all
        assert "refused user 50" in bot.log()


async def test_listed_users_are_served_and_admin_commands_are_refused_to_them(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, tg, llm, ALLOWED_USER_IDS="50, 51"):
        tg.add_message(50, "hello")
        for command in ("/status", "/dead", "/retry 1", "/cleanup"):
            tg.add_message(51, command)
        tg.add_message(52, "me too?")
        await settle(tg, lambda: len(tg.texts_to(51)) == 4 and tg.texts_to(50) and tg.texts_to(52), "replies")
        assert tg.texts_to(50) == ["echo: hello"]
        assert tg.texts_to(51) == [texts.ADMIN_ONLY] * 4
        assert tg.texts_to(52) == [texts.NOT_ALLOWED.format(user_id=52)]


async def test_a_burst_of_15_gets_10_answers_and_one_notice_to_wait(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, tg, llm, RATE_LIMIT_USER_PER_MIN="10"):
        for i in range(15):
            tg.add_message(7, f"m{i}")
        tg.add_message(ADMIN, "admins are exempt")
        await settle(tg, lambda: len(tg.texts_to(7)) >= 11, "ten answers and the notice")
        got = tg.texts_to(7)
        assert [t for t in got if t.startswith("echo:")] == [f"echo: m{i}" for i in range(10)]
        notices = [t for t in got if not t.startswith("echo:")]
        assert len(notices) == 1 and notices[0].startswith("⏳ You're sending messages faster")
        assert 1 <= int(re.findall(r"wait (\d+) s", notices[0])[0]) <= 60  # within the window
        assert len([r for r in llm.requests if r["messages"][-1]["content"].startswith("m")]) == 10
        assert tg.texts_to(ADMIN) == ["echo: admins are exempt"]


async def test_the_global_limit_counts_everyone_together(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, tg, llm, RATE_LIMIT_GLOBAL_PER_MIN="5"):
        for user in range(100, 108):
            tg.add_message(user, f"from {user}")
        await settle(tg, lambda: all(tg.texts_to(u) for u in range(100, 108)), "a reply to everyone")
        answered = [u for u in range(100, 108) if tg.texts_to(u) == [f"echo: from {u}"]]
        busy = [u for u in range(100, 108) if tg.texts_to(u)[0].startswith("⏳ I'm very busy")]
        assert len(answered) == 5 and len(busy) == 3
        assert len(llm.requests) == 5


async def test_budgets_stop_spending_say_why_and_the_daily_alert_comes_once(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    # The fake LLM counts words as tokens: with no system prompt, "hello" is 1 prompt token.
    prices = {
        "SYSTEM_PROMPT": "",
        "PRICE_INPUT_PER_1M": "100000",
        "PRICE_OUTPUT_PER_1M": "0",
    }  # $0.10 a token
    async with bot_with(
        tmp_path, tg, llm, USER_DAILY_BUDGET_USD="0.25", DAILY_COST_ALERT_USD="0.3", **prices
    ):
        tg.add_message(7, "hello")  # 1 token: $0.10
        tg.add_message(7, "again")  # with memory, 4 tokens: $0.40, now over the $0.25 budget
        tg.add_message(7, "more")  # refused before any call
        await eventually(lambda: len(tg.texts_to(7)) == 3, timeout=20, what="three replies")
        tg.add_message(7, "/usage")  # (commands like /usage do not wait behind answers)
        await settle(tg, lambda: len(tg.texts_to(7)) == 4, "four replies")
        assert tg.texts_to(7)[:3] == ["echo: hello", "echo: again", texts.BUDGET_USER_DAY.format(limit=0.25)]
        assert tg.texts_to(7)[3] == (
            "📊 Your usage\nToday: 2 calls, 5 + 4 tokens, 0.0 min of voice, "
            "0 pictures, 0 characters read aloud, $0.5000\n"
            "This month: 2 calls, 5 + 4 tokens, 0.0 min of voice, "
            "0 pictures, 0 characters read aloud, $0.5000"
        )
        assert len(llm.requests) == 2
        tg.add_message(8, "someone else")  # the day's total grows again: no second alert
        await settle(tg, lambda: tg.texts_to(8) == ["echo: someone else"], "the other user's answer")
        [alert] = tg.texts_to(ADMIN)
        assert "DAILY_COST_ALERT_USD" in alert and "$0.50" in alert


async def test_the_global_daily_budget_is_a_hard_stop(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    prices = {"SYSTEM_PROMPT": "", "PRICE_INPUT_PER_1M": "100000", "PRICE_OUTPUT_PER_1M": "0"}
    async with bot_with(tmp_path, tg, llm, GLOBAL_DAILY_BUDGET_USD="0.05", **prices):
        tg.add_message(7, "hello")
        await eventually(lambda: tg.texts_to(7) == ["echo: hello"], timeout=20, what="the first answer")
        tg.add_message(8, "hi")
        tg.add_message(ADMIN, "and me?")
        await settle(tg, lambda: tg.texts_to(8) and tg.texts_to(ADMIN), "the refusals")
        assert tg.texts_to(8) == tg.texts_to(ADMIN) == [texts.BUDGET_GLOBAL]
        assert len(llm.requests) == 1


def group_message(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"extra": extra or {}, "chat_type": "supergroup", "user_id": 7, "first_name": "Grace"}


async def test_groups_answer_only_when_addressed_and_keep_their_own_memory(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    async with bot_with(tmp_path, tg, llm, ALLOWED_CHAT_IDS="-100"):
        tg.add_message(7, "my secret is 42", first_name="Grace")  # private chat with the bot
        await eventually(lambda: tg.texts_to(7), timeout=20, what="the private answer")
        tg.add_message(-100, "hello everyone", **group_message())
        tg.add_message(-100, "/roll@dice_bot", **group_message())  # another bot's command
        tg.add_message(
            -100, "/status", **group_message({"from": {"id": ADMIN, "is_bot": False, "first_name": "Own"}})
        )
        tg.add_message(-100, "🙂 @test_bot what is 2+2?", **group_message())  # UTF-16 offsets
        await eventually(lambda: len(tg.texts_to(-100)) == 2, timeout=20, what="the group answers")
        # Admin reports stay private; the mention removed, the name added.
        assert tg.texts_to(-100) == [texts.ADMIN_PRIVATE, "echo: Grace: 🙂  what is 2+2?"]
        bot_reply = tg.sent[-1]
        reply = {
            "reply_to_message": {
                "message_id": bot_reply["message_id"],
                "date": 0,
                "chat": {"id": -100, "type": "supergroup"},
            }
        }
        reply["reply_to_message"]["from"] = FakeTelegram.BOT_USER
        tg.add_message(-100, "and 3+3?", **group_message(reply))
        tg.add_message(-200, "@test_bot hi", **group_message())  # a group nobody allowed
        tg.add_message(-100, "@test_bot", **group_message())  # only the mention: what it is for
        await settle(tg, lambda: len(tg.texts_to(-100)) == 4 and tg.texts_to(-200), "the replies")
        assert tg.texts_to(-100)[2:] == ["echo: Grace: and 3+3?", help_text(admin=False)]
        assert tg.texts_to(-200) == [texts.GROUP_NOT_ALLOWED.format(chat_id=-200)]
    group_calls = [[m["content"] for m in r["messages"][1:]] for r in llm.requests[1:]]
    assert group_calls == [
        ["Grace: 🙂  what is 2+2?"],  # "hello everyone" never reached the model; no private memory
        ["Grace: 🙂  what is 2+2?", "echo: Grace: 🙂  what is 2+2?", "Grace: and 3+3?"],
    ]
    assert (
        jobs_in(tmp_path) == 5
    )  # private, /status, 2+2, 3+3, the bare mention; the other bot's command: none


async def test_admin_status_dead_retry_and_cleanup(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    llm.by_prompt["broken"] = Scripted(status=404)
    prices = {"SYSTEM_PROMPT": "", "PRICE_INPUT_PER_1M": "1000000", "PRICE_OUTPUT_PER_1M": "0"}  # $1 a token
    async with bot_with(tmp_path, tg, llm, **prices):
        tg.add_message(5, "broken")
        tg.add_message(6, "fine")
        await eventually(lambda: tg.texts_to(5) and tg.texts_to(6), timeout=20, what="both replies")
        assert tg.texts_to(5) == [texts.FAILED]
        tg.add_message(ADMIN, "/dead")
        await eventually(lambda: tg.texts_to(ADMIN), timeout=20, what="/dead")
        dead = tg.texts_to(ADMIN)[0]
        [job_id] = re.findall(r"#(\d+) tg-update, chat 5, .*HTTP 404", dead)
        del llm.by_prompt["broken"]
        tg.add_message(ADMIN, f"/retry {job_id}")
        await eventually(lambda: len(tg.texts_to(5)) == 2, timeout=20, what="the retried answer")
        assert tg.texts_to(5) == [texts.FAILED, "echo: broken"]
        assert tg.texts_to(ADMIN)[1].startswith(f"🔁 Job #{job_id} (tg-update) is queued again, as #")
        for n, command in enumerate(("/retry 99999", "/status", "/cleanup"), start=3):  # one at a time
            tg.add_message(ADMIN, command)
            await eventually(lambda n=n: len(tg.texts_to(ADMIN)) == n, timeout=20, what=command)
    _, _, missing, status, cleanup = tg.texts_to(ADMIN)
    assert missing == "There is no failed job #99999 (see /dead)."
    # Two answers were paid for: "fine" (1 token, $1) and "broken" (1 token, $1).
    # Running: /status itself. Done: "broken" (once dead, now answered), "fine", the notice
    # that "broken" failed, /dead, /retry and /retry 99999.
    assert "Jobs: queued 0, running 1, done 6, dead 0" in status
    assert "Services: LLM closed, transcription closed" in status
    assert "Today (UTC): 2 LLM and transcription calls, $2.0000" in status
    assert "  5: 1 calls, $1.0000" in status and "  6: 1 calls, $1.0000" in status
    assert "Oldest waiting job: none" in status
    assert cleanup.startswith("🧹 Cleanup removed 0 finished job(s)")
