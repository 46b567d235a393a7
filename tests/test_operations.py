"""Running it unattended: health and metrics, graceful shutdown mid-job, logs (text, JSON, a
rotated file) and Sentry that never carry a secret."""

import asyncio
import io
import json
import signal
import socket
import sqlite3
from pathlib import Path

import aiohttp
import sentry_sdk
from aiohttp import web
from loguru import logger

from botcore.logs import setup_logging, setup_sentry

from .botproc import BotProcess
from .conftest import KEY, TOKEN, eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram, Scripted, _serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_healthz_and_metrics(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bot = BotProcess(tmp_path / "data", tg, llm, METRICS_PORT=str(port)).start()
    try:
        await eventually(lambda: "health and metrics on" in bot.log(), timeout=20, what="the endpoint")
        assert await get(f"{base}/healthz") == (200, "ok\n")
        tg.add_message(10, "hello")
        await eventually(lambda: tg.texts_to(10) == ["echo: hello"], timeout=20, what="the answer")
        for _ in range(50):  # the job is recorded as done with the worker's next batch
            status, text = await get(f"{base}/metrics")
            if 'bot_jobs{kind="tg-update",state="done"} 1.0' in text:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        for series in (
            "bot_updates_received_total 1.0",
            'bot_jobs{kind="tg-update",state="done"} 1.0',
            'bot_job_duration_seconds_count{kind="tg-update",outcome="done"} 1.0',
            'bot_job_queue_wait_seconds_count{kind="tg-update"} 1.0',
            'bot_upstream_latency_seconds_count{outcome="ok",upstream="LLM"} 1.0',
            'bot_circuit_state{state="closed",upstream="LLM"} 1.0',
            'bot_circuit_state{state="open",upstream="transcription"} 0.0',
            'bot_tokens_total{direction="completion"} 2.0',
            'bot_cost_usd_total{kind="chat"}',
            "bot_requests_today 1.0",
            "bot_cost_usd_today",
        ):
            assert series in text, series
        # Another program holds the database's write lock: unhealthy, with the reason.
        locker = sqlite3.connect(tmp_path / "data" / "bot.db", timeout=1)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            for _ in range(40):  # the probe's result is reused for a few seconds
                status, text = await get(f"{base}/healthz")
                if status == 503:
                    break
                await asyncio.sleep(0.25)
            assert status == 503 and "the database is not writable" in text
        finally:
            locker.rollback()
            locker.close()
        for _ in range(80):  # well again once the lock is gone (and the probe has run again)
            if (await get(f"{base}/healthz"))[0] == 200:
                break
            await asyncio.sleep(0.2)
        assert await get(f"{base}/healthz") == (200, "ok\n")
        assert (await get(f"{base}/nothing"))[0] == 404
    finally:
        await bot.stop_clean()


async def test_sigterm_lets_a_running_answer_finish_then_exits_0(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(delay_s=2.0))
    bot = BotProcess(tmp_path / "data", tg, llm).start()
    tg.add_message(10, "hello")
    await eventually(lambda: llm.requests, timeout=20, what="the LLM call")
    await bot.stop_clean()  # SIGTERM mid-answer: within SHUTDOWN_GRACE_S it is finished and sent
    assert tg.texts_to(10) == ["echo: hello"]


async def test_a_job_longer_than_the_grace_period_is_handed_back_and_answered_after_restart(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(delay_s=60.0))
    bot = BotProcess(tmp_path / "data", tg, llm, SHUTDOWN_GRACE_S="1").start()
    tg.add_message(10, "hello")
    await eventually(lambda: llm.requests, timeout=20, what="the LLM call")
    await bot.stop_clean()
    assert "handed 1 unfinished job(s) back to the queue" in bot.log()
    assert tg.texts_to(10) == []
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await eventually(lambda: tg.texts_to(10) == ["echo: hello"], timeout=20, what="the answer")
    finally:
        await restarted.stop_clean()
    assert tg.texts_to(10) == ["echo: hello"]


async def test_a_second_signal_exits_at_once_and_loses_nothing(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(delay_s=60.0))
    bot = BotProcess(tmp_path / "data", tg, llm, SHUTDOWN_GRACE_S="60").start()
    tg.add_message(10, "hello")
    await eventually(lambda: llm.requests, timeout=20, what="the LLM call")
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGTERM)
    await eventually(lambda: "send it again to exit at once" in bot.log(), what="the first signal")
    assert await bot.stop(signal.SIGINT, timeout=5) == 130
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await eventually(lambda: tg.texts_to(10) == ["echo: hello"], timeout=20, what="the answer")
    finally:
        await restarted.stop_clean()


async def test_a_whole_session_with_errors_never_logs_a_secret(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    log_file = tmp_path / "logs" / "bot.log"
    # The LLM echoes the key in its error, as OpenAI's 401 does; Telegram fails in several ways.
    llm.by_prompt["key"] = Scripted(
        status=401, body={"error": {"message": f"Incorrect API key provided: {KEY}"}}
    )
    tg.fail["sendMessage"] = [Failure(502, "Bad Gateway"), Failure(429, "Too Many Requests", retry_after=1)]
    bot = BotProcess(
        tmp_path / "data", tg, llm, LOG_FORMAT="json", LOG_FILE=str(log_file), LOG_FILE_MAX_MB="0.02"
    ).start()
    try:
        tg.add_message(10, "hello")
        tg.add_message(11, "key")
        await eventually(lambda: tg.texts_to(10) and tg.texts_to(11), timeout=30, what="both replies")
        tg.down = True
        tg.add_message(12, "during")  # ends the poll in flight; the next ones fail
        await eventually(lambda: "intake failed" in bot.log(), timeout=10, what="polling to fail")
        tg.down = False
        await eventually(lambda: tg.texts_to(12), timeout=30, what="the reply after the outage")
    finally:
        await bot.stop_clean()  # also checks the process's own output
    files = sorted(log_file.parent.glob("bot.log*"))
    written = "".join(p.read_text() for p in files)
    assert TOKEN not in written and KEY not in written
    assert "/bot[REDACTED]/" in written  # at DEBUG, httpx's request lines carry the token: redacted
    lines = [json.loads(line) for line in written.splitlines()]  # every line is one JSON object
    assert any(line.get("job_id") and line.get("chat_id") == 11 for line in lines)
    assert {"time", "level", "component", "message"} <= set(lines[0])
    assert any("intake failed" in line["message"] for line in lines)


async def test_sentry_events_are_redacted() -> None:
    received: list[bytes] = []

    async def envelope(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/1/envelope/", envelope)
    runner, root = await _serve(app)
    try:
        setup_logging("INFO", [TOKEN, KEY], stream=io.StringIO())
        setup_sentry(root.replace("http://", "http://public@") + "/1", [TOKEN, KEY], release="test")
        logger.info("calling https://api.telegram.org/bot{}/getMe", TOKEN)  # becomes a breadcrumb
        try:
            raise RuntimeError(f"request with key {KEY} failed")
        except RuntimeError:
            logger.exception("upstream failed for bot{}", TOKEN)
        await asyncio.to_thread(sentry_sdk.flush, 5)
        await eventually(lambda: received, what="the event")
    finally:
        sentry_sdk.get_client().close()
        logger.remove()
        await runner.cleanup()
    sent = b"".join(received).decode()
    assert "upstream failed for bot[REDACTED]" in sent and "RuntimeError" in sent
    assert TOKEN not in sent and KEY not in sent


def test_json_lines_redact_secrets_that_encoding_would_disguise(tmp_path: Path) -> None:
    odd = 'my"secret\\key-123'  # a free-form key: JSON would escape its quote and backslash
    out = io.StringIO()
    setup_logging("INFO", [odd], stream=out, json_lines=True, file=tmp_path / "bot.log", file_max_mb=0.001)
    try:
        for i in range(30):
            logger.bind(component="test").info("call {} with {}", i, odd)
    finally:
        logger.remove()
    written = out.getvalue() + "".join(p.read_text() for p in tmp_path.glob("bot.log*"))
    assert "secret" not in written
    assert out.getvalue().count("[REDACTED]") == 30  # every line (the file keeps only the newest)
    assert 3 <= len(list(tmp_path.glob("bot.log*"))) <= 6  # rotated; at most 5 old files kept


async def test_sigterm_during_startup_still_stops_cleanly(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.delay["getMe"] = [3.0]  # a slow Telegram while connecting
    bot = BotProcess(tmp_path / "data", tg, llm).start()
    await eventually(lambda: any(m == "getMe" for m, _ in tg.calls), timeout=20, what="the connection")
    await bot.stop_clean()  # SIGTERM now: startup finishes, then the bot stops, exit status 0
    assert "stopped cleanly" in bot.log()
