"""Hostile conditions end to end, with the real ``bot.py``: a text SQLite cannot encode, a database
locked by another program while users write, /cancel while every LLM slot is busy, and voice
answers sharing the LLM's slots."""

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path

from botcore import texts
from botcore.routing import help_text

from .botproc import BotProcess
from .conftest import eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram, Scripted


class ExclusiveLock:
    """Another program holding the bot's database under BEGIN EXCLUSIVE, from a thread of this
    one (SQLite's locks are per process, so to the bot it is another program), until released."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._locked, self._release = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with contextlib.closing(sqlite3.connect(self._path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            self._locked.set()
            self._release.wait(60)
            other.execute("ROLLBACK")

    async def take(self) -> None:
        self._thread.start()
        assert await asyncio.to_thread(self._locked.wait, 10)

    async def release(self) -> None:
        self._release.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 10)


async def test_a_text_sqlite_cannot_encode_costs_nobody_their_message(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    # One batch: a lone UTF-16 surrogate (the JSON escape \ud83d, as a broken client sends it)
    # from a rate-exempt admin, between two other users' messages.
    tg.add_message(2, "before")
    tg.add_message(1, "half an emoji \ud83d here")
    tg.add_message(3, "after")
    process = BotProcess(tmp_path / "data", tg, llm, ADMIN_USER_IDS="1").start()
    try:
        await eventually(
            lambda: tg.texts_to(2) == ["echo: before"] and tg.texts_to(3) == ["echo: after"],
            timeout=20,
            what="the other users' answers",
        )
        await eventually(lambda: tg.texts_to(1) == ["echo: half an emoji \ufffd here"], what="its answer")
        await asyncio.sleep(1.0)  # intake settles into its long poll: no spinning
    finally:
        await process.stop_clean()
    polls = sum(1 for method, _ in tg.calls if method == "getUpdates")
    assert polls < 10, f"{polls} getUpdates calls"
    assert "intake failed" not in process.log()


async def test_a_database_locked_by_another_program_refuses_and_loses_nothing(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """Another program holds the database under BEGIN EXCLUSIVE for 30 s while six users send
    eight messages each, within their limit (10 a minute): Telegram redelivers what could not
    be stored, and a redelivered message must not count against its sender's limit again."""
    process = BotProcess(
        tmp_path / "data",
        tg,
        llm,
        RATE_LIMIT_USER_PER_MIN="10",
        RATE_LIMIT_GLOBAL_PER_MIN="100",
    ).start()
    users = range(1, 7)
    lock = ExclusiveLock(tmp_path / "data" / "bot.db")
    try:
        tg.add_message(99, "warm up")
        await eventually(lambda: tg.texts_to(99), timeout=20, what="the bot to be up")
        await lock.take()
        for n in range(8):
            for user in users:
                tg.add_message(user, f"u{user} m{n}")
            await asyncio.sleep(3.0)  # 24 s of messages while the lock is held: intake tries again
        await asyncio.sleep(6.0)  # and again, each time counting what Telegram sent again
        await lock.release()
        want = {user: [f"echo: u{user} m{n}" for n in range(8)] for user in users}
        await eventually(
            lambda: all(tg.texts_to(user) == replies for user, replies in want.items()),
            timeout=90,
            what="every message answered once, in order",
        )
        await asyncio.sleep(1.0)  # and nothing more comes
    finally:
        await lock.release()
        await process.stop_clean()
    for user in users:
        assert tg.texts_to(user) == want[user]
    assert "faster than I can take them" not in "".join(m["text"] for m in tg.sent)
    assert "the database refused" in process.log()  # the lock really was met


async def test_cancel_and_commands_do_not_wait_for_a_busy_llm_slot(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.by_prompt["think hard"] = Scripted(delay_s=60)  # holds the only slot past the test's bound
    process = BotProcess(tmp_path / "data", tg, llm, LLM_CONCURRENCY="1").start()
    try:
        tg.add_message(10, "think hard")
        await eventually(lambda: len(llm.requests) == 1, timeout=20, what="the answer to start")
        tg.add_message(20, "/help")  # another chat's command
        await eventually(lambda: tg.texts_to(20) == [help_text(admin=False)], timeout=10, what="/help")
        tg.add_message(21, "/reset")  # ordered in its own chat, but not behind another chat's answer
        await eventually(lambda: tg.texts_to(21) == [texts.RESET_EMPTY], timeout=10, what="/reset")
        tg.add_message(10, "/cancel")
        await eventually(lambda: tg.texts_to(10) == [texts.STOPPED], timeout=10, what="/cancel")
        tg.add_message(10, "and now?")  # the slot is free again
        await eventually(lambda: tg.texts_to(10)[-1:] == ["echo: and now?"], timeout=20, what="answer")
    finally:
        await process.stop_clean()


async def test_llm_concurrency_bounds_voice_answers_too(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.reply = lambda req: "ok"
    llm.script += [Scripted(delay_s=1.0)] * 6  # each answer takes a while
    audio = b"OggS" + bytes(range(256)) * 4  # the fake transcribes any bytes
    process = BotProcess(tmp_path / "data", tg, llm, LLM_CONCURRENCY="1").start()
    try:
        for chat in (1, 2, 3):
            tg.add_message(chat, "text")
        for chat in (4, 5, 6):
            tg.add_voice(chat, audio, duration=2)
        await eventually(
            lambda: all(tg.current_texts(chat)[-1:] == ["ok"] for chat in range(1, 7)),
            timeout=60,
            what="six answers",
        )
    finally:
        await process.stop_clean()
    assert llm.max_in_flight == 1


async def test_a_local_bot_api_server_hands_over_file_paths(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """A self-hosted Bot API server started with --local answers getFile with an absolute path
    and serves no /file/bot… URL: with TELEGRAM_LOCAL_MODE the bot reads the file from disk."""
    tg.local_dir = tmp_path / "server-files"
    tg.local_dir.mkdir()
    audio = b"OggS" + bytes(range(256)) * 4
    process = BotProcess(tmp_path / "data", tg, llm, TELEGRAM_LOCAL_MODE="true").start()
    try:
        tg.add_voice(10, audio, duration=2)
        await eventually(
            lambda: tg.current_texts(10)[-1:] == [f"echo: heard {len(audio)} bytes"],
            timeout=20,
            what="the voice note answered",
        )
    finally:
        await process.stop_clean()
    assert tg.downloads == []  # nothing was fetched over HTTP
    assert llm.transcriptions[0]["file"][1] == audio


def usage_by_chat(db_path: Path) -> dict[int, int]:
    """How many billed calls each chat has in the usage table (read while the bot runs: WAL)."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return dict(db.execute("SELECT chat_id, count(*) FROM usage GROUP BY chat_id").fetchall())


async def test_every_billed_call_is_recorded_once_and_a_revived_job_is_not_billed_again(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.by_prompt["think"] = Scripted(text="", finish_reason="length")  # billed, yet no answer
    llm.by_prompt["rude"] = Scripted(text="no", finish_reason="content_filter")
    tg.fail["sendMessage"] = [Failure(400, "Bad Request: chat not found")]  # the answer: dead
    db_path = tmp_path / "data" / "bot.db"
    process = BotProcess(tmp_path / "data", tg, llm, ADMIN_USER_IDS="99").start()
    try:
        tg.add_message(20, "answered, undeliverable, revived")
        await eventually(lambda: "is dead after 1 attempt(s)" in process.log(), timeout=20, what="dead")
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            [(dead_id,)] = db.execute("SELECT id FROM jobs WHERE state = 'dead'").fetchall()
        tg.add_message(99, f"/retry {dead_id}")  # its answer was generated and billed already
        await eventually(
            lambda: tg.texts_to(20)[-1:] == ["echo: answered, undeliverable, revived"],
            timeout=20,
            what="the revived job's answer",
        )
        tg.add_message(40, "think")
        tg.add_message(50, "rude")
        await eventually(
            lambda: tg.texts_to(40)[-1:] == [texts.FAILED] and tg.texts_to(50)[-1:] == [texts.FAILED],
            timeout=20,
            what="both told politely",
        )
    finally:
        await process.stop_clean()
    # One call answered chat 20, revived or not; the empty answer and the filtered one were
    # billed by the provider, so they are recorded, once each.
    assert usage_by_chat(db_path) == {20: 1, 40: 1, 50: 1}
    assert len(llm.requests) == 3


async def test_a_stream_broken_after_text_is_billed_and_so_is_its_retry(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(text="z" * 300, piece_chars=50, cut_after=2))
    db_path = tmp_path / "data" / "bot.db"
    process = BotProcess(tmp_path / "data", tg, llm, STREAM="true").start()
    try:
        tg.add_message(30, "broken then fine")
        await eventually(
            lambda: tg.current_texts(30)[-1:] == ["echo: broken then fine"], timeout=20, what="the answer"
        )
    finally:
        await process.stop_clean()
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("SELECT prompt_tokens, completion_tokens FROM usage ORDER BY id").fetchall()
    assert len(rows) == 2 and rows[0][1] == 25  # 100 characters streamed before the break: ~25 tokens


async def test_anonymous_admins_of_two_groups_are_two_senders_with_their_own_budgets(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """An anonymous admin's "from" is GroupAnonymousBot, the same in every group: budgets and
    usage follow the chat they speak as, so one group's spending does not stop the other's."""
    anonymous = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}

    def say(group: int, text: str) -> None:
        chat = {"id": group, "type": "supergroup", "title": f"Group {group}"}
        tg.add_message(group, text, chat_type="supergroup", extra={"from": anonymous, "sender_chat": chat})

    process = BotProcess(
        tmp_path / "data",
        tg,
        llm,
        ALLOWED_CHAT_IDS="*",
        USER_DAILY_BUDGET_USD="0.000001",  # one answer spends it
    ).start()
    try:
        say(-101, "@test_bot first")
        await eventually(lambda: len(tg.texts_to(-101)) == 1, timeout=20, what="group 1's answer")
        say(-101, "@test_bot second")
        await eventually(lambda: len(tg.texts_to(-101)) == 2, timeout=20, what="group 1's refusal")
        say(-102, "@test_bot first")  # another group's anonymous admin: another sender
        await eventually(lambda: len(tg.texts_to(-102)) == 1, timeout=20, what="group 2's answer")
    finally:
        await process.stop_clean()
    assert tg.texts_to(-101)[0].startswith("echo: Group -101: first")
    assert tg.texts_to(-101)[1].startswith("💸 You've used today's budget")
    assert tg.texts_to(-102)[0].startswith("echo: Group -102: first")
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "bot.db")) as db:
        users = db.execute("SELECT user_id FROM usage ORDER BY id").fetchall()
    assert users == [(-101,), (-102,)]


async def test_an_answer_stopped_with_cancel_is_billed_for_what_it_wrote(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(text="w" * 2000, piece_chars=100, piece_delay_s=0.3))  # about 6 s
    db_path = tmp_path / "data" / "bot.db"
    process = BotProcess(tmp_path / "data", tg, llm, STREAM="true").start()
    try:
        tg.add_message(10, "write a lot")
        await eventually(lambda: any(len(d["text"]) >= 300 for d in tg.drafts), timeout=20, what="text")
        tg.add_message(10, "/cancel")
        await eventually(lambda: texts.STOPPED in tg.texts_to(10), timeout=10, what="stopped")
    finally:
        await process.stop_clean()
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("SELECT completion_tokens FROM usage WHERE chat_id = 10").fetchall()
    assert len(rows) == 1 and 75 <= rows[0][0] < 500  # 300+ of the 2,000 characters: ~4 a token


async def test_an_answer_generated_while_the_database_is_locked_is_kept_not_asked_again(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """The provider billed the answer: a brief lock by another program when it comes must not
    throw it away (and pay for it again on the retry)."""
    llm.by_prompt["slow one"] = Scripted(delay_s=2.0)
    process = BotProcess(tmp_path / "data", tg, llm).start()
    lock = ExclusiveLock(tmp_path / "data" / "bot.db")
    try:
        tg.add_message(10, "warm up")
        await eventually(lambda: tg.texts_to(10), timeout=20, what="the bot to be up")
        tg.add_message(10, "slow one")
        await eventually(lambda: len(llm.requests) == 2, timeout=20, what="the slow call to start")
        await lock.take()
        # The answer comes at 2 s; saving it meets the lock (after SQLite's 5 s busy timeout),
        # and the save is tried again rather than the answer thrown away.
        await eventually(lambda: "refused its progress" in process.log(), timeout=30, what="a refused save")
        await lock.release()
        await eventually(lambda: tg.texts_to(10)[-1:] == ["echo: slow one"], timeout=30, what="the answer")
    finally:
        await lock.release()
        await process.stop_clean()
    assert [r["messages"][-1]["content"] for r in llm.requests].count("slow one") == 1
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "bot.db")) as db:
        assert db.execute("SELECT count(*) FROM usage").fetchone()[0] == 2  # warm up, slow one


async def test_a_batch_the_library_cannot_parse_is_not_logged_with_everyones_messages(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_message(10, "from a client ahead of the library")
    del tg.pending[-1]["message"]["date"]  # python-telegram-bot requires it
    tg.add_message(11, "a private matter 4711")
    process = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await eventually(
            lambda: tg.texts_to(10) and tg.texts_to(11) == ["echo: a private matter 4711"],
            timeout=20,
            what="both answered",
        )
    finally:
        await process.stop_clean()  # no traceback in the log
    log = process.log()
    assert "reading the batch as JSON" in log  # our one line says what happened
    assert "Error while parsing updates" not in log and "private matter 4711" not in log
