"""Several ``bot.py`` processes on one PostgreSQL, end to end: webhook intake behind a stand-in
reverse proxy with one process SIGKILLed mid-load, and polling handed over when its leader dies.
Real processes, the real server (the session's throwaway cluster), the fake Telegram and LLM."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from botcore import texts

from .botproc import BotProcess
from .conftest import KEY, TOKEN, eventually
from .fakes import FakeOpenAI, FakeTelegram, Scripted
from .webhook_delivery import Delivery

SECRET = "test-webhook-secret-0123456789"
CHATS, PER_CHAT = 40, 5
ANSWER_RE = re.compile(r"^echo: c(\d+) m(\d+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def database(postgres) -> AsyncIterator[str]:
    """A database of its own on the session's cluster, dropped afterwards; its URL."""
    name = "bot_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(postgres.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield postgres.url.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(postgres.url)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def processes(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, url: str, ports: list[int | None], **env: str
) -> list[BotProcess]:
    """One bot process per entry of ``ports`` (its WEBHOOK_PORT; None: it polls), all started."""
    common = {"DATABASE_URL": url, "JOB_LEASE_S": "4", "LLM_CONCURRENCY": "4", "REACTIONS": "off", **env}
    return [
        BotProcess(
            tmp_path / f"p{i}", tg, llm, **common, **({"WEBHOOK_PORT": str(port)} if port else {})
        ).start()
        for i, port in enumerate(ports)
    ]


def answers(tg: FakeTelegram) -> dict[int, list[int]]:
    """Each chat's answers, as the message numbers they echo, in the order they were sent."""
    by_chat: dict[int, list[int]] = {}
    for sent in tg.sent:
        found = ANSWER_RE.match(sent.get("text") or "")
        if found:
            by_chat.setdefault(int(found[1]), []).append(int(found[2]))
    return by_chat


def answered(tg: FakeTelegram) -> int:
    return sum(len(set(v)) for v in answers(tg).values())


async def stop_all(bots: list[BotProcess]) -> None:
    for bot in bots:
        await bot.stop()
    for bot in bots:
        log = bot.log()
        assert TOKEN not in log and KEY not in log
        assert "Traceback" not in log, log


async def test_three_webhook_processes_lose_nothing_when_one_is_killed_mid_load(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, database: str
) -> None:
    llm.by_marker[""] = Scripted(delay_s=0.4)  # every answer takes 0.4 s: the LLM is the bottleneck
    ports = [free_port() for _ in range(3)]
    hook = {"WEBHOOK_URL": "http://bot.example/telegram-hook", "WEBHOOK_SECRET": SECRET}
    bots = processes(tmp_path, tg, llm, database, list(ports), **hook)
    try:
        await eventually(lambda: tg.webhook is not None, timeout=60, what="setWebhook")
        assert tg.webhook is not None and tg.webhook["secret_token"] == SECRET
        await eventually(
            lambda: all("taking updates at" in bot.log() for bot in bots), timeout=60, what="three endpoints"
        )
        async with Delivery(tg, [f"http://127.0.0.1:{port}" for port in ports]) as delivery:
            for i in range(PER_CHAT):
                for chat in range(1, CHATS + 1):
                    tg.add_message(chat, f"c{chat} m{i}")
            total = CHATS * PER_CHAT
            await eventually(lambda: answered(tg) >= total // 3, timeout=60, what="a third of the answers")
            assert await bots[1].kill() == -9
            await eventually(lambda: answered(tg) >= total, timeout=120, what="every answer")
            assert all(status == 200 for _, status in delivery.answers if status < 500)
        by_chat = answers(tg)
        assert sorted(by_chat) == list(range(1, CHATS + 1))  # 0 lost
        duplicates = sum(len(v) - len(set(v)) for v in by_chat.values())
        assert duplicates <= 2, by_chat
        for chat, numbers in by_chat.items():
            first_seen = list(dict.fromkeys(numbers))
            assert first_seen == list(range(PER_CHAT)), f"chat {chat} answered out of order: {numbers}"
        conn = await asyncpg.connect(database)
        try:
            states = dict(await conn.fetch("SELECT state, count(*) FROM jobs GROUP BY state"))
            retried = await conn.fetchval("SELECT count(*) FROM jobs WHERE attempts > 1")
        finally:
            await conn.close()
        assert set(states) == {"done"}, states
        survivors = bots[0].log() + bots[2].log()
        if retried:  # the killed process held jobs: the others took them back after their lease
            assert "lease expired" in survivors
    finally:
        await stop_all([bots[0], bots[2]])


async def test_a_wrong_secret_is_refused_and_a_repeat_is_stored_once(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, database: str
) -> None:
    import aiohttp

    port = free_port()
    [bot] = processes(
        tmp_path, tg, llm, database, [port], WEBHOOK_URL="http://bot.example/hook", WEBHOOK_SECRET=SECRET
    )
    try:
        await eventually(lambda: "taking updates at" in bot.log(), timeout=60, what="the endpoint")
        update_id = tg.add_message(7, "hello once")
        update = tg.pending.pop()
        url = f"http://127.0.0.1:{port}/hook"
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong-secret-0123456789"}):
                async with http.post(url, json=update, headers=headers) as response:
                    assert response.status == 401
            async with http.post(f"http://127.0.0.1:{port}/other", json=update) as response:
                assert response.status == 404
            good = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
            async with http.post(url, data=b"not json", headers=good) as response:
                assert response.status == 400
            for _ in range(3):  # Telegram delivers again when it missed our 200
                async with http.post(url, json=update, headers=good) as response:
                    assert response.status == 200
        await eventually(lambda: tg.texts_to(7) == ["echo: hello once"], timeout=30, what="the answer")
        await asyncio.sleep(1.0)
        assert tg.texts_to(7) == ["echo: hello once"]
        conn = await asyncpg.connect(database)
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE dedup_key = $1", f"tg-update:{update_id}"
            )
        finally:
            await conn.close()
        assert stored == 1
    finally:
        await stop_all([bot])


async def test_one_process_polls_and_another_takes_over_when_it_dies(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, database: str
) -> None:
    bots = processes(tmp_path, tg, llm, database, [None, None, None])
    try:
        leads = "this process now leads: polling"
        await eventually(lambda: sum(leads in b.log() for b in bots) == 1, timeout=60, what="one poller")
        await asyncio.sleep(3)  # the others keep asking, and keep being told no
        assert sum(leads in b.log() for b in bots) == 1
        tg.add_message(1, "c1 m0")
        await eventually(lambda: tg.texts_to(1) == ["echo: c1 m0"], timeout=30, what="the first answer")
        [leader] = [b for b in bots if leads in b.log()]
        assert await leader.kill() == -9
        others = [b for b in bots if b is not leader]
        await eventually(lambda: any(leads in b.log() for b in others), timeout=20, what="a new poller")
        tg.add_message(1, "c1 m1")
        await eventually(
            lambda: "echo: c1 m1" in tg.texts_to(1), timeout=30, what="the answer after takeover"
        )
        # If the killed leader had answered m0 but not yet recorded it done, m0 is answered once
        # more (after its lease) before m1: at-least-once, and in order.
        assert list(dict.fromkeys(tg.texts_to(1))) == ["echo: c1 m0", "echo: c1 m1"], tg.texts_to(1)
        assert len(tg.texts_to(1)) <= 3
    finally:
        await stop_all([b for b in bots if b.proc is not None and b.proc.poll() is None])


async def test_rate_limits_and_telegrams_pace_hold_across_processes(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, database: str
) -> None:
    ports = [free_port(), free_port()]
    hook = {"WEBHOOK_URL": "http://bot.example/hook", "WEBHOOK_SECRET": SECRET}
    limits = {
        "RATE_LIMIT_USER_PER_MIN": "3",
        "RATE_LIMIT_GLOBAL_PER_MIN": "1000",
        "TELEGRAM_RATE_PER_S": "10",
    }
    bots = processes(tmp_path, tg, llm, database, list(ports), **hook, **limits)
    try:
        await eventually(
            lambda: all("taking updates at" in b.log() for b in bots), timeout=60, what="endpoints"
        )
        await eventually(
            lambda: all("2 bot process(es) share the database" in b.log() for b in bots),
            timeout=30,
            what="each process counting two",
        )
        async with Delivery(tg, [f"http://127.0.0.1:{port}" for port in ports]):
            for i in range(6):  # one user, six messages, spread over both processes
                tg.add_message(9, f"c9 m{i}")
            await eventually(lambda: len(tg.texts_to(9)) >= 4, timeout=30, what="answers and a notice")
            await asyncio.sleep(1.0)
            assert sorted(t for t in tg.texts_to(9) if t.startswith("echo:")) == [
                f"echo: c9 m{i}" for i in range(3)
            ]
            notice = texts.RATE_LIMITED_USER.split("{")[0]
            assert any(t.startswith(notice) for t in tg.texts_to(9)), tg.texts_to(9)

            tg.calls.clear()
            tg.call_times.clear()
            for chat in range(100, 160):  # 60 answers at once, from two processes
                tg.add_message(chat, f"c{chat} m0")
            await eventually(lambda: answered(tg) >= 63, timeout=60, what="sixty answers")
        sends = sorted(
            t for (method, _), t in zip(tg.calls, tg.call_times, strict=True) if method == "sendMessage"
        )
        busiest = max(sum(1 for t in sends if start <= t < start + 1.0) for start in sends)
        # 10 a second for the bot: each process paces at 5 after a first burst of 5, so no second
        # holds more than 2 × (5 + 5), and 60 answers take at least 5 s (unshared: 2 s).
        assert busiest <= 20, busiest
        assert sends[-1] - sends[0] >= 4.0, sends[-1] - sends[0]
    finally:
        await stop_all(bots)


async def test_one_process_on_sqlite_takes_a_webhook_too(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    port = free_port()
    hook = {"WEBHOOK_URL": "http://bot.example/hook", "WEBHOOK_SECRET": SECRET, "WEBHOOK_PORT": str(port)}
    bot = BotProcess(tmp_path / "p", tg, llm, **hook).start()
    try:
        await eventually(lambda: "taking updates at" in bot.log(), timeout=60, what="the endpoint")
        async with Delivery(tg, [f"http://127.0.0.1:{port}"]):
            for i in range(3):
                tg.add_message(5, f"c5 m{i}")
            await eventually(lambda: answered(tg) == 3, timeout=30, what="three answers")
        assert answers(tg) == {5: [0, 1, 2]}
        assert not any(method == "getUpdates" for method, _ in tg.calls)
    finally:
        await stop_all([bot])


async def test_intake_and_workers_run_apart(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, database: str
) -> None:
    port = free_port()
    hook = {"WEBHOOK_URL": "http://bot.example/hook", "WEBHOOK_SECRET": SECRET}
    [intake] = processes(tmp_path / "intake", tg, llm, database, [port], BOT_ROLE="intake", **hook)
    try:
        await eventually(lambda: "taking updates at" in intake.log(), timeout=60, what="the endpoint")
        async with Delivery(tg, [f"http://127.0.0.1:{port}"]):
            for i in range(3):
                tg.add_message(6, f"c6 m{i}")
            await eventually(lambda: not tg.pending, timeout=20, what="the updates stored")
            await asyncio.sleep(1.0)
            assert answered(tg) == 0  # taken and stored; no process answers yet
            [worker] = processes(tmp_path / "worker", tg, llm, database, [None], BOT_ROLE="worker", **hook)
            try:
                await eventually(lambda: answered(tg) == 3, timeout=30, what="the worker's answers")
                assert answers(tg) == {6: [0, 1, 2]}
                assert "role worker" in worker.log() and "taking updates" not in worker.log()
            finally:
                await stop_all([worker])
        # The worker neither polled nor touched the webhook the intake had set.
        assert not any(method in ("getUpdates", "deleteWebhook") for method, _ in tg.calls)
    finally:
        await stop_all([intake])
