"""Fault injection through the fake servers: the circuit breaker around the real OpenAI SDK,
what users and admins are told for each kind of failure, and Telegram's own failures
(flood control, a blocked bot, an outage) with the real bot process."""

import asyncio
import socket
from pathlib import Path

import pytest
from loguru import logger
from telegram.ext import ExtBot
from telegram.request import HTTPXRequest

from botcore import texts
from botcore.alerts import Alerts
from botcore.breaker import BreakerState, CircuitBreaker
from botcore.clock import ManualClock
from botcore.completion import Completion
from botcore.errors import Cause, PermanentError, TransientError, UpstreamUnavailable
from botcore.i18n import speaking
from botcore.llm import ChatModel
from botcore.messenger import Messenger
from botcore.models import Turn
from botcore.pacing import PacedLimiter
from botcore.telegram_api import make_bot

from .botproc import BotProcess
from .conftest import TOKEN, eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram, Scripted


async def test_the_breaker_around_the_real_sdk(llm: FakeOpenAI) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("LLM", clock=clock)  # the defaults: 5 failures, 60 s, 2 successes
    model = ChatModel(api_key="k", base_url=llm.base_url, model="m", timeout_s=5, max_reply_tokens=50)
    changes: list[str] = []
    sink = logger.add(
        lambda m: changes.append(m.record["message"]), filter=lambda r: "circuit" in r["message"]
    )

    async def ask() -> Completion:
        async with breaker.call():
            return await model.complete("", [Turn("user", "hi")])

    try:
        # Refusals of the request itself say nothing about the server's health.
        for status in (400, 401, 403, 404, 413, 422) * 2:
            llm.script.append(Scripted(status=status))
            with pytest.raises(PermanentError):
                await ask()
        assert breaker.state is BreakerState.CLOSED and len(llm.requests) == 12

        # Five counted failures, of every counted kind, open it: exactly five calls.
        llm.script += [Scripted(status=s) for s in (500, 502, 429, 408, 503)]
        for _ in range(5):
            with pytest.raises((TransientError, UpstreamUnavailable)):
                await ask()
        assert breaker.state is BreakerState.OPEN and len(llm.requests) == 17

        # While open: zero calls, and the refusal says how long to wait.
        for _ in range(20):
            with pytest.raises(UpstreamUnavailable) as refused:
                await ask()
            assert refused.value.cause is Cause.CIRCUIT_OPEN and refused.value.retry_after == 60
        assert len(llm.requests) == 17

        # Half-open: one trial at a time (here a slow one); everyone else is refused meanwhile.
        clock.advance(60)
        llm.script.append(Scripted(delay_s=0.3))
        outcomes = await asyncio.gather(*(ask() for _ in range(5)), return_exceptions=True)
        assert sum(isinstance(o, Completion) for o in outcomes) == 1
        assert sum(isinstance(o, UpstreamUnavailable) for o in outcomes) == 4
        assert len(llm.requests) == 18 and breaker.state is BreakerState.HALF_OPEN

        # The second success closes it.
        await ask()
        assert breaker.state is BreakerState.CLOSED and len(llm.requests) == 19

        # A failed trial opens it again for a full period.
        llm.script += [Scripted(status=500)] * 6
        for _ in range(5):
            with pytest.raises(TransientError):
                await ask()
        clock.advance(60)
        with pytest.raises(TransientError):
            await ask()  # the trial
        assert breaker.state is BreakerState.OPEN and len(llm.requests) == 25
    finally:
        logger.remove(sink)
        await model.aclose()
    assert changes == [
        "LLM: circuit closed -> open",
        "LLM: circuit open -> half-open",
        "LLM: circuit half-open -> closed",
        "LLM: circuit closed -> open",
        "LLM: circuit open -> half-open",
        "LLM: circuit half-open -> open",
    ]


async def test_each_kind_of_llm_failure_gets_its_own_message_and_admins_hear_the_cause(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.by_prompt.update(
        {
            "slow": Scripted(delay_s=5.0),
            "busy": Scripted(status=503),
            "limited": Scripted(
                status=429, body={"error": {"code": "rate_limit_exceeded"}}, headers={"Retry-After": "1"}
            ),
            "quota": Scripted(status=429, body={"error": {"code": "insufficient_quota"}}),
            "key": Scripted(status=401, body={"error": {"message": "Incorrect API key provided: sk-abc"}}),
            "odd": Scripted(status=422, body={"error": {"message": "unprocessable"}}),
        }
    )
    expected = {
        1: ("slow", [texts.failed(Cause.TIMEOUT)]),
        2: ("busy", [texts.failed(Cause.UNAVAILABLE)]),
        3: ("limited", [texts.RATE_LIMITED, texts.failed(Cause.RATE_LIMITED)]),
        4: ("quota", [texts.failed(Cause.QUOTA)]),
        5: ("key", [texts.failed(Cause.AUTH)]),
        6: ("odd", [texts.FAILED]),
    }
    # All different, but for quota and key: to users both just mean "unavailable".
    assert len({tuple(replies) for _, replies in expected.values()}) == 5
    with speaking("es"):  # the quota's victim speaks Spanish; the admins still read English
        expected[4] = ("quota", [texts.failed(Cause.QUOTA)])
    process = BotProcess(
        tmp_path / "data",
        tg,
        llm,
        OPENAI_TIMEOUT="1",
        JOB_MAX_ATTEMPTS="1",  # no retries: each failure is final at once
        BREAKER_FAIL_MAX="100",  # keep the breaker out of this test
        OUTAGE_MAX_WAIT_S="30",  # how long a rate limit (or an outage) is waited out: the minimum
        ADMIN_USER_IDS="99",
    ).start()
    try:
        for chat, (prompt, _) in expected.items():
            tg.add_message(chat, prompt, language_code="es" if prompt == "quota" else None)
        await eventually(
            lambda: all(tg.texts_to(chat) == replies for chat, (_, replies) in expected.items()),
            timeout=60,
            what="every chat's failure message",
        )
        await eventually(lambda: len(tg.texts_to(99)) == 2, what="two admin alerts")
    finally:
        await process.stop_clean()
    alerts = sorted(tg.texts_to(99))
    assert "check OPENAI_API_KEY" in alerts[0] and "HTTP 401" in alerts[0]
    assert "insufficient_quota" in alerts[1] and "billing" in alerts[1]
    assert all(alert.startswith("⚠️ Bot alert: ") for alert in alerts)  # in the bot's own language
    log = process.log()
    assert log.count("ALERT for the bot's owner") == 2
    assert "sk-abc" not in log and "unprocessable" not in log  # the server's words go nowhere


async def test_an_outage_opens_the_breaker_after_five_calls_and_every_message_is_answered(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script += [Scripted(status=500)] * 5
    # One call at a time, so the count is exact; the breaker stays open well past the first
    # retries (2 s), so the checks below happen while it is open.
    process = BotProcess(tmp_path / "data", tg, llm, LLM_CONCURRENCY="1", BREAKER_RESET_S="8").start()
    chats = range(1, 9)
    try:
        for chat in chats:
            tg.add_message(chat, f"m{chat}")
        await eventually(
            lambda: all(tg.texts_to(chat)[:1] == [texts.OUTAGE] for chat in chats),
            timeout=20,
            what="everyone told of the outage",
        )
        assert len(llm.requests) == 5  # no call while open: not even the retries of the first five
        await eventually(
            lambda: all(tg.texts_to(chat) == [texts.OUTAGE, f"echo: m{chat}"] for chat in chats),
            timeout=30,
            what="every message answered after the recovery",
        )
    finally:
        await process.stop_clean()
    assert len(llm.requests) == 5 + 8  # the failures, then one answer each: nothing wasted
    assert "circuit closed -> open" in process.log() and "circuit half-open -> closed" in process.log()


async def test_telegram_flood_control_delays_the_reply_and_then_delivers_it(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.fail["sendMessage"] = [Failure(429, "Too Many Requests: retry after 3", retry_after=3)]
    tg.add_message(10, "hello")
    await eventually(lambda: tg.texts_to(10) == ["echo: hello"], timeout=20, what="the reply")
    sends = [t for (method, _), t in zip(tg.calls, tg.call_times, strict=True) if method == "sendMessage"]
    assert len(sends) == 2 and sends[1] - sends[0] >= 3.0  # as Telegram said (the backoff is 2 s)
    assert len(llm.requests) == 1  # the answer was kept, not generated again


async def test_a_user_who_blocked_the_bot_ends_the_job_without_retries(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.fail["sendMessage"] = [Failure(403, "Forbidden: bot was blocked by the user")]
    tg.add_message(10, "hello")
    await eventually(lambda: "is dead after 1 attempt(s)" in bot.log(), timeout=20, what="the job ended")
    tg.add_message(11, "still there?")  # the bot carries on for everyone else
    await eventually(lambda: tg.texts_to(11) == ["echo: still there?"], what="the next reply")
    sends_to_10 = [p for m, p in tg.calls if m == "sendMessage" and str(p["chat_id"]) == "10"]
    assert len(sends_to_10) == 1  # no retry, and no apology sent into the void
    assert len(llm.requests) == 2


async def test_telegram_down_through_retries_then_every_reply_is_delivered_once(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.add_message(10, "one")
    await eventually(lambda: tg.texts_to(10) == ["echo: one"], timeout=20, what="the first reply")
    llm.script += [Scripted(delay_s=1.0)] * 2  # answers come while Telegram is down
    last = tg.add_message(11, "two")
    tg.add_message(12, "three")
    await eventually(lambda: tg.confirmed_below > last, what="the updates taken")
    tg.down = True  # 502s: each spends an attempt (2, 4, 8 s apart: the ManualClock test in
    # test_services_chat walks that schedule; here the real process lives through it)
    tg.add_message(13, "four")  # arrives at Telegram during its outage
    sends_before = sum(m == "sendMessage" for m, _ in tg.calls)

    def refused_sends() -> int:
        return sum(m == "sendMessage" for m, _ in tg.calls) - sends_before

    # Every reply tried and refused, one of them a second time: attempts were spent and kept.
    await eventually(lambda: refused_sends() >= 4, timeout=20, what="sends refused and retried")
    assert len(tg.sent) == 1  # nothing could be delivered meanwhile
    tg.down = False
    want = {10: ["echo: one"], 11: ["echo: two"], 12: ["echo: three"], 13: ["echo: four"]}
    await eventually(
        lambda: all(tg.texts_to(chat) == replies for chat, replies in want.items()),
        timeout=30,
        what="every reply after the outage",
    )
    await asyncio.sleep(1.0)  # and nothing more comes: no duplicates
    assert len(tg.sent) == 4
    assert len(llm.requests) == 4  # replies were kept through the outage, not generated again


async def test_a_rate_limit_that_becomes_an_outage_is_announced_once(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.by_prompt["hello"] = Scripted(status=429, body={"error": {"code": "rate_limit_exceeded"}})
    process = BotProcess(
        tmp_path / "data", tg, llm, BREAKER_FAIL_MAX="2", BREAKER_RESET_S="60", OUTAGE_MAX_WAIT_S="30"
    ).start()
    try:
        tg.add_message(10, "hello")
        await eventually(lambda: len(tg.texts_to(10)) >= 2, timeout=45, what="the notice and the end")
        await asyncio.sleep(0.5)
    finally:
        await process.stop_clean()
    # 429 at 0 s: "too many requests"; 429 again at 5 s opens the breaker: no second notice; at
    # 10 s the circuit is open for 55 s more, past OUTAGE_MAX_WAIT_S: the job waits until 30 s,
    # when the circuit is still open and the wait is over.
    assert tg.texts_to(10) == [texts.RATE_LIMITED, texts.failed(Cause.CIRCUIT_OPEN)]
    assert len(llm.requests) == 2  # the breaker kept every later try away


async def test_a_telegram_timeout_or_5xx_spends_attempts_and_a_refused_connection_waits(
    tg: FakeTelegram,
) -> None:
    unpaced = PacedLimiter(rate_per_s=0, group_rate_per_min=0)
    bot = ExtBot(
        TOKEN, base_url=f"{tg.base_url}/bot", request=HTTPXRequest(read_timeout=0.3), rate_limiter=unpaced
    )
    messenger = Messenger(bot)
    async with bot:
        tg.delay["sendMessage"] = [2.0]  # Telegram may have taken it: sending again may duplicate
        with pytest.raises(TransientError) as slow:
            await messenger.send_text(10, "hi")
        assert slow.value.cause is Cause.TELEGRAM
        tg.down = True  # 502: Telegram may have acted on it, like a timeout: attempts are spent
        with pytest.raises(TransientError) as failing:
            await messenger.send_text(10, "hi")
        assert failing.value.cause is Cause.TELEGRAM
        tg.down = False
        # Connection refused: the request never left, so waiting for Telegram costs nothing.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        unreachable = make_bot(TOKEN, f"http://127.0.0.1:{port}")
        with pytest.raises(UpstreamUnavailable) as down:
            await Messenger(unreachable).send_text(10, "hi")
        assert down.value.cause is Cause.TELEGRAM
        await unreachable.shutdown()
        tg.fail["sendMessage"] = [Failure(403, "Forbidden: bot was blocked by the user")]
        with pytest.raises(PermanentError) as blocked:
            await messenger.send_text(10, "hi")
        assert blocked.value.cause is Cause.BLOCKED


async def test_alerts_reach_admins_at_most_once_an_hour_and_retry_when_undelivered(
    tg: FakeTelegram, clock: ManualClock
) -> None:
    async with make_bot(TOKEN, tg.base_url) as bot:
        alerts = Alerts(Messenger(bot), [99], clock=clock)
        tg.fail["sendMessage"] = [Failure(403, "Forbidden: bot can't initiate conversation with a user")]
        assert not await alerts.send("the key was refused")  # the admin never wrote to the bot
        assert await alerts.send("the key was refused")  # so it is tried again, and delivered
        assert not await alerts.send("the key was refused")  # then not again within the hour
        assert await alerts.send("the account is out of quota")  # another problem is news
        clock.advance(3600)
        assert await alerts.send("the key was refused")
    assert tg.texts_to(99) == [
        texts.ADMIN_ALERT.format(detail=d)
        for d in ("the key was refused", "the account is out of quota", "the key was refused")
    ]


async def test_messages_outlasting_their_attempts_in_an_outage_wait_for_the_service(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script += [Scripted(status=500)] * 3  # two chats fail: an outage, not one prompt
    process = BotProcess(
        tmp_path / "data",
        tg,
        llm,
        JOB_MAX_ATTEMPTS="2",
        BREAKER_FAIL_MAX="3",
        BREAKER_RESET_S="3",
        ADMIN_USER_IDS="10",
    ).start()
    try:
        tg.add_message(10, "hello")
        tg.add_message(11, "hi")
        await eventually(lambda: len(llm.requests) >= 3, timeout=20, what="the failures")
        tg.add_message(10, "/status")  # not stuck behind "hello"
        await eventually(lambda: any(t.startswith("📈 Status") for t in tg.texts_to(10)), what="/status")
        assert "echo: hello" not in tg.texts_to(10)
        await eventually(lambda: tg.texts_to(10)[-1:] == ["echo: hello"], timeout=30, what="the answer")
        await eventually(lambda: tg.texts_to(11)[-1:] == ["echo: hi"], timeout=30, what="the other answer")
    finally:
        await process.stop_clean()
    assert texts.OUTAGE in tg.texts_to(10)  # told it waits for the service once the circuit opened
    assert not any(t in tg.texts_to(10) for t in (texts.FAILED, texts.failed(Cause.UNAVAILABLE)))
    assert len(llm.requests) == 5  # 3 failures, then the two trials that answered


async def test_a_prompt_that_always_fails_alone_ends_after_its_attempts_and_the_chat_moves_on(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.by_marker["CURSED"] = Scripted(status=500)  # the service is healthy for everything else
    process = BotProcess(tmp_path / "data", tg, llm).start()  # JOB_MAX_ATTEMPTS=4 by default
    try:
        tg.add_message(10, "this one is CURSED")
        tg.add_message(10, "CURSED again")  # sent again: still one conversation's trouble
        tg.add_message(10, "and the next one")
        for n in range(12):  # other chats keep being answered meanwhile
            tg.add_message(20 + n % 3, f"other {n}")
            await asyncio.sleep(1.0)
        failed = texts.failed(Cause.UNAVAILABLE)
        await eventually(
            lambda: tg.texts_to(10) == [failed, failed, "echo: and the next one"],
            timeout=90,
            what="the failure notices, then the next answer in that chat",
        )
    finally:
        await process.stop_clean()
    cursed = [r for r in llm.requests if "CURSED" in r["messages"][-1]["content"]]
    assert len(cursed) == 8  # JOB_MAX_ATTEMPTS calls each, not one every 5 s for OUTAGE_MAX_WAIT_S
    assert all(len(tg.texts_to(20 + c)) == 4 for c in range(3))
    assert "circuit closed -> open" not in process.log()  # eight failures, one chat: no outage
