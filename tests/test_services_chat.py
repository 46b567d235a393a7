"""The chat service, the update jobs and the router, called directly: wired as the app wires
them, over a real SQLite file, the real SDKs against the fake servers, and a manual clock that
the tests move between a job's attempts (no bot process, no waiting for real time)."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loguru import logger

from botcore import texts
from botcore.breaker import BreakerState
from botcore.clock import DAY_S, ManualClock
from botcore.errors import Cause, TransientError, UpstreamUnavailable
from botcore.models import JobState, Turn
from botcore.routing import COMMAND_KIND, UPDATE_KIND, Decision, Planned, help_text
from botcore.voice import ACK_KIND, VOICE_KIND

from .conftest import eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram, Scripted
from .services import (
    Services,
    after_a_crash,
    attempt,
    claim,
    incoming_of,
    last_update,
    methods,
    receive,
    run_due,
    services,
    spin,
    stored,
    until_due,
)

ADMIN = 1
_earlier_jobs = itertools.count(900)  # job ids no job of a test has
TOO_LONG = Scripted(status=400, body={"error": {"code": "context_length_exceeded", "message": "too long"}})


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    async with services(tmp_path, tg, llm, clock, ADMIN_USER_IDS=str(ADMIN)) as built:
        yield built


async def say(s: Services, tg: FakeTelegram, chat_id: int, text: str | None, **kwargs: object) -> None:
    """A message arrives and the intake stores its jobs."""
    tg.add_message(chat_id, text, **kwargs)  # type: ignore[arg-type]
    await receive(s, last_update(tg))


async def history(s: Services, chat_id: int) -> list[Turn]:
    return await s.storage.conversations.history(chat_id, limit=100, since=0)


async def remember(s: Services, chat_id: int, *exchanges: tuple[str, str]) -> None:
    """Earlier exchanges of the chat, as answered jobs stored them."""
    for question, answer in exchanges:
        await s.storage.conversations.add_exchange(
            chat_id, job_id=next(_earlier_jobs), user_text=question, answer=answer, now=s.clock.now()
        )


# -- the chat service --------------------------------------------------------------------------


async def test_an_answer_is_sent_as_a_reply_remembered_and_billed(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, 10, "hello")
    raw = last_update(tg)
    job = await claim(s, UPDATE_KIND)
    await s.chat.answer(job, incoming_of(raw), {})
    assert tg.texts_to(10) == ["echo: hello"]
    [sent] = methods(tg, "sendMessage", 10)
    assert sent["reply_parameters"]["message_id"] == raw["message"]["message_id"]
    assert await history(s, 10) == [Turn("user", "hello"), Turn("assistant", "echo: hello")]
    checkpoint = (await s.queue.get(job.id)).checkpoint  # type: ignore[union-attr]
    assert checkpoint is not None and checkpoint["answer"] == "echo: hello" and checkpoint["sent"] == 1
    usage = await s.storage.usage.summary(since=0, user_id=10)
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 1, 2)


async def test_a_rerun_of_the_same_job_neither_asks_the_llm_again_nor_sends_again(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, 10, "hello")
    incoming = incoming_of(last_update(tg))
    first = await claim(s, UPDATE_KIND)
    await s.chat.answer(first, incoming, {})  # then its worker dies before recording it done
    again = await after_a_crash(s, first)
    assert again.checkpoint is not None and again.checkpoint["sent"] == 1
    await s.chat.answer(again, incoming, dict(again.checkpoint))
    assert len(llm.requests) == 1
    assert len(methods(tg, "sendMessage", 10)) == 1
    assert len(await history(s, 10)) == 2
    assert (await s.storage.usage.summary(since=0)).requests == 1  # billed once


async def test_telegram_down_for_three_attempts_then_the_kept_answer_is_delivered_once(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """test_resilience's ten seconds of Telegram outage, on the manual clock: each failed
    delivery spends an attempt and waits 2, 4 and 8 s (plus jitter) of the clock, not of ours."""
    await say(s, tg, 10, "hello")
    tg.down = True  # every Bot API call answers 502
    waits = []
    for _ in range(3):
        failed = await attempt(s, UPDATE_KIND)
        assert isinstance(failed.error, TransientError) and failed.error.cause is Cause.TELEGRAM
        assert failed.after.state is JobState.QUEUED
        waits.append(failed.after.run_at - s.clock.now())
        assert await s.queue.claim({UPDATE_KIND: 1}, 1) == []  # not before its time
        until_due(s, failed.after)
    assert all(2.0 * 2**n <= w <= 2.2 * 2**n for n, w in enumerate(waits))  # 2, 4, 8 s + jitter
    assert tg.sent == []  # nothing got through meanwhile
    tg.down = False
    delivered = await attempt(s, UPDATE_KIND)
    assert delivered.error is None and delivered.after.state is JobState.DONE
    assert tg.texts_to(10) == ["echo: hello"]
    assert len(llm.requests) == 1  # the answer was kept through the outage, not generated again


async def test_in_a_group_the_model_hears_who_speaks_without_the_mention_of_the_bot(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    group = {"user_id": 7, "chat_type": "supergroup", "first_name": "Grace"}
    await say(s, tg, -100, "@test_bot what is 2+2?", **group)
    assert s.chat.speaker_text(incoming_of(last_update(tg))) == "Grace: what is 2+2?"
    await run_due(s)
    assert llm.requests[0]["messages"] == [{"role": "user", "content": "Grace: what is 2+2?"}]
    assert tg.texts_to(-100) == ["echo: Grace: what is 2+2?"]
    tg.add_message(-100, "hey @TEST_BOT", **group)  # type: ignore[arg-type]
    assert s.chat.speaker_text(incoming_of(last_update(tg))) == "Grace: hey"  # any case
    tg.add_message(7, "@test_bot hi")  # in private, the text as it is
    assert s.chat.speaker_text(incoming_of(last_update(tg))) == "@test_bot hi"
    await say(s, tg, -100, "@test_bot", **group)  # only the mention: what the bot is for
    await run_due(s)
    assert tg.texts_to(-100)[1:] == [help_text(admin=False)]
    assert len(llm.requests) == 1


async def test_a_user_over_budget_is_told_once_and_costs_nothing(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    prices = {"PRICE_INPUT_PER_1M": "100000", "PRICE_OUTPUT_PER_1M": "0"}  # $0.10 a prompt token
    async with services(tmp_path, tg, llm, clock, USER_DAILY_BUDGET_USD="0.25", **prices) as s:
        await say(s, tg, 7, "hello")
        await say(s, tg, 7, "again")  # with memory: 4 tokens, $0.40 (over the budget after it)
        await run_due(s)
        await say(s, tg, 7, "more")
        first = await claim(s, UPDATE_KIND)
        await s.updates.handle(first)  # then its worker dies before recording it done
        await s.updates.handle(await after_a_crash(s, first))
        refusal = texts.BUDGET_USER_DAY.format(limit=0.25)
        assert tg.texts_to(7) == ["echo: hello", "echo: again", refusal]  # said once
        assert len(llm.requests) == 2


async def test_a_conversation_too_long_is_asked_again_with_the_newer_half_then_told(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await remember(s, 10, *[(f"q{n}", f"a{n}") for n in range(4)])
    llm.script.append(TOO_LONG)
    await say(s, tg, 10, "q4")
    [answered] = await run_due(s)
    assert answered.error is None and tg.texts_to(10) == ["echo: q4"]
    asked = [[m["content"] for m in r["messages"]] for r in llm.requests]
    assert asked == [
        ["q0", "a0", "q1", "a1", "q2", "a2", "q3", "a3", "q4"],
        ["q2", "a2", "q3", "a3", "q4"],  # the newer half of the history
    ]
    llm.script += [TOO_LONG, TOO_LONG]  # the newer half does not fit either
    await say(s, tg, 10, "q5")
    [told] = await run_due(s)
    assert told.error is None and told.after.state is JobState.DONE  # nothing to retry: it said why
    # Ten messages of memory; their newer half starts with an answer, dropped: a question first.
    assert [m["content"] for m in llm.requests[-1]["messages"]] == ["q3", "a3", "q4", "echo: q4", "q5"]
    assert tg.texts_to(10) == ["echo: q4", texts.CONTEXT_TOO_LONG]
    assert len(llm.requests) == 4


async def test_cancel_stops_a_streamed_answer_which_then_stays_stopped(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    tg.no_drafts = True  # edits: the message shown is marked
    llm.script.append(Scripted(text="a long answer " * 40, piece_chars=10, piece_delay_s=0.2))
    async with services(tmp_path, tg, llm, clock, STREAM="true") as s:
        await say(s, tg, 10, "go on and on")
        job = await claim(s, UPDATE_KIND)
        answering = asyncio.create_task(s.updates.handle(job))
        try:
            await eventually(lambda: methods(tg, "sendMessage", 10), what="the first piece shown")
            await say(s, tg, 10, "/cancel")
            stop = await attempt(s, COMMAND_KIND)  # outside the chat's order: it runs at once
            assert stop.error is None and tg.texts_to(10)[-1] == texts.STOPPED
            assert await stored(s, job.id, "stopped") == 1  # a rerun must not answer
            # The stopped answer is marked at the stream's pace: one interval after its last edit.
            await spin()
            assert not answering.done() and methods(tg, "editMessageText", 10) == []
            s.clock.advance(s.settings.stream_edit_interval_s)
            await asyncio.wait_for(answering, 5)  # it returns: stopped is not failed
            [mark] = methods(tg, "editMessageText", 10)
            assert mark["text"].startswith("a long ans") and mark["text"].endswith(texts.STREAM_STOPPED)
        finally:  # not left running if the test fails
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
        await s.updates.handle(await after_a_crash(s, job))
        assert len(llm.requests) == 1
        assert await history(s, 10) == []  # a stopped answer is not remembered
        assert (await s.queue.get(job.id)).checkpoint.get("answer") is None  # type: ignore[union-attr]


async def test_an_outage_is_told_once_per_message_while_the_circuit_keeps_calls_away(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    llm.script += [Scripted(status=503), Scripted(status=503)]
    async with services(tmp_path, tg, llm, clock, BREAKER_FAIL_MAX="2", BREAKER_RESET_S="60") as s:
        breaker = s.breakers["LLM"]
        await say(s, tg, 10, "first")
        await say(s, tg, 20, "second")
        one = await attempt(s, UPDATE_KIND)
        assert isinstance(one.error, TransientError) and breaker.state is BreakerState.CLOSED
        assert tg.sent == []  # one chat's failure is no outage: nothing said
        two = await attempt(s, UPDATE_KIND)  # a second chat fails too: the circuit opens
        assert isinstance(two.error, TransientError) and breaker.state is BreakerState.OPEN
        assert tg.texts_to(20) == [texts.OUTAGE]
        until_due(s, one.after, two.after)
        waiting = await run_due(s)  # the circuit keeps both away from the LLM
        assert [type(a.error) for a in waiting] == [UpstreamUnavailable, UpstreamUnavailable]
        assert all(a.after.attempts == 1 for a in waiting)  # … without spending an attempt
        assert tg.texts_to(20) == [texts.OUTAGE]  # told once across the attempts
        assert tg.texts_to(10) == [texts.OUTAGE]
        assert len(llm.requests) == 2
        until_due(s, *(a.after for a in waiting))  # when the circuit half-opens
        s.clock.advance(1)
        assert [a.error for a in await run_due(s)] == [None, None]
        assert tg.texts_to(10) == [texts.OUTAGE, "echo: first"]
        assert tg.texts_to(20) == [texts.OUTAGE, "echo: second"]
        assert breaker.state is BreakerState.CLOSED


async def test_a_rate_limit_that_becomes_an_outage_is_announced_once_then_given_up(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    """test_resilience's 30-second story of the same name, on the manual clock."""
    llm.by_prompt["hello"] = Scripted(status=429, body={"error": {"code": "rate_limit_exceeded"}})
    env = {"BREAKER_FAIL_MAX": "2", "BREAKER_RESET_S": "60", "OUTAGE_MAX_WAIT_S": "30"}
    async with services(tmp_path, tg, llm, clock, **env) as s:
        await say(s, tg, 10, "hello")
        start = s.clock.now()
        timeline = []
        while True:
            result = await attempt(s, UPDATE_KIND)
            timeline.append((s.clock.now() - start, s.breakers["LLM"].state.value, result.after.state.value))
            assert isinstance(result.error, UpstreamUnavailable)
            if result.after.state is JobState.DEAD:
                break
            until_due(s, result.after)
        assert timeline == [
            (0, "closed", "queued"),  # 429: "too many requests", and it waits 5 s
            (5, "open", "queued"),  # 429 again opens the circuit: no second notice
            (10, "open", "queued"),  # open for 55 s more, but the wait ends at 30 s
            (30, "open", "dead"),
        ]
        await run_due(s)  # the notice job that says it failed
    assert tg.texts_to(10) == [texts.RATE_LIMITED, texts.failed(Cause.CIRCUIT_OPEN)]
    assert len(llm.requests) == 2


async def test_a_prompt_that_always_fails_alone_ends_after_its_attempts_and_the_chat_moves_on(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """test_resilience's story of the same name, on the manual clock. Its eight failures are one
    conversation's trouble, not an outage: the circuit stays closed, even for the five and more
    in a row at the end, when no other chat is talking."""
    llm.by_marker["CURSED"] = Scripted(status=500)
    for text in ("this one is CURSED", "CURSED again", "and the next one"):
        await say(s, tg, 10, text)
    for n in itertools.count():
        assert n < 20, "chat 10 never moved on"
        if n < 3:
            await say(s, tg, 20 + n, f"other {n}")  # the service answers everyone else
        await run_due(s)
        assert s.breakers["LLM"].state is BreakerState.CLOSED
        if "echo: and the next one" in tg.texts_to(10):
            break
        next_at = await s.queue.next_run_at(s.kinds)
        assert next_at is not None
        s.clock.advance(next_at - s.clock.now())  # the backoff: 2, 4, 8 s (and jitter)
    failed = texts.failed(Cause.UNAVAILABLE)
    assert sorted(tg.texts_to(10)) == sorted([failed, failed, "echo: and the next one"])
    assert tg.texts_to(10)[0] == failed
    cursed = [r for r in llm.requests if "CURSED" in r["messages"][-1]["content"]]
    assert len(cursed) == 2 * s.settings.job_max_attempts  # its attempts each, no wait for an outage
    assert [tg.texts_to(20 + n) for n in range(3)] == [[f"echo: other {n}"] for n in range(3)]


async def test_an_answer_generated_while_another_program_locks_the_database_is_kept(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    """test_hostile's twelve seconds of a locked database, on the manual clock: the answer the
    provider billed is saved once the lock is gone, not asked for again."""
    refused: list[str] = []  # logged before each pause
    sink = logger.add(
        lambda m: refused.append(str(m)), filter=lambda r: "refused its progress" in r["message"]
    )
    other = None
    try:
        async with services(tmp_path, tg, llm, clock, busy_timeout_ms=20) as s:
            await say(s, tg, 10, "slow one")
            job = await claim(s, UPDATE_KIND)
            other = sqlite3.connect(s.settings.db_path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
            answering = asyncio.create_task(s.updates.handle(job))
            try:
                for pause in (0.5, 1.0, 2.0):  # 0.5 s doubling, on the clock
                    seen = len(refused)
                    await eventually(lambda n=seen: len(refused) > n, what="a refused checkpoint")
                    await spin()
                    assert len(refused) == seen + 1  # no second try while the clock stands still
                    s.clock.advance(pause)
                await eventually(lambda: len(refused) == 4, what="the fourth try")
                other.execute("ROLLBACK")
                s.clock.advance(4.0)
                await asyncio.wait_for(answering, 5)
            finally:
                answering.cancel()
                await asyncio.gather(answering, return_exceptions=True)
            assert tg.texts_to(10) == ["echo: slow one"]
            assert len(llm.requests) == 1
            assert (await s.storage.usage.summary(since=0)).requests == 1
    finally:
        logger.remove(sink)
        if other is not None:
            other.close()


# -- the update jobs: commands from the table, and what the bot cannot read --------------------


async def test_start_help_and_unknown_commands(s: Services, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    for text in ("/start", "/help", "/frobnicate"):
        await say(s, tg, 7, text)
    await say(s, tg, ADMIN, "/help")
    await say(s, tg, -100, "/frobnicate", user_id=7, chat_type="supergroup")  # perhaps another bot's
    await run_due(s)
    assert tg.texts_to(7) == [texts.START, help_text(admin=False), texts.UNKNOWN_COMMAND]
    assert tg.texts_to(ADMIN) == [help_text(admin=True)]
    assert "/status" in help_text(admin=True) and "/status" not in help_text(admin=False)
    assert tg.texts_to(-100) == []  # in a group, quiet about commands it does not know
    assert llm.requests == []


async def test_reset_says_how_many_and_acts_once_per_job(s: Services, tg: FakeTelegram) -> None:
    await remember(s, 10, ("q0", "a0"), ("q1", "a1"))
    tg.fail["sendMessage"] = [Failure(500, "Internal Server Error")]  # its reply is lost once
    await say(s, tg, 10, "/reset")
    first = await attempt(s, UPDATE_KIND)
    assert isinstance(first.error, TransientError) and await history(s, 10) == []
    await remember(s, 10, ("later", "noted"))  # said after the reset
    until_due(s, first.after)
    second = await attempt(s, UPDATE_KIND)
    assert second.error is None
    assert tg.texts_to(10) == [texts.RESET.format(count=4)]  # the first run's reply, sent now
    assert await history(s, 10) == [Turn("user", "later"), Turn("assistant", "noted")]  # kept
    await say(s, tg, 10, "/reset")
    await say(s, tg, 10, "/reset")
    await run_due(s)
    assert tg.texts_to(10)[1:] == [texts.RESET.format(count=2), texts.RESET_EMPTY]


async def test_usage_reports_today_and_this_month(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    prices = {"PRICE_INPUT_PER_1M": "100000", "PRICE_OUTPUT_PER_1M": "0"}  # $0.10 a prompt token
    async with services(tmp_path, tg, llm, clock, **prices) as s:  # 2023-11-14 22:13 UTC
        await say(s, tg, 7, "hello")
        await run_due(s)
        await say(s, tg, 7, "/usage")
        await run_due(s)
        s.clock.advance(DAY_S)  # the next UTC day, the same month
        await say(s, tg, 7, "/usage")
        await run_due(s)
    assert tg.texts_to(7)[1:] == [
        "📊 Your usage\nToday: 1 calls, 1 + 2 tokens, 0.0 min of voice, "
        "0 pictures, 0 characters read aloud, $0.1000\n"
        "This month: 1 calls, 1 + 2 tokens, 0.0 min of voice, 0 pictures, 0 characters read aloud, $0.1000",
        "📊 Your usage\nToday: 0 calls, 0 + 0 tokens, 0.0 min of voice, "
        "0 pictures, 0 characters read aloud, $0.0000\n"
        "This month: 1 calls, 1 + 2 tokens, 0.0 min of voice, 0 pictures, 0 characters read aloud, $0.1000",
    ]


async def test_admin_commands_are_refused_to_others_and_kept_out_of_groups(
    s: Services, tg: FakeTelegram
) -> None:
    for text in ("/status", "/dead", "/retry 5", "/cleanup"):
        await say(s, tg, 7, text)
    await say(s, tg, -100, "/status", user_id=ADMIN, chat_type="supergroup")
    await say(s, tg, -100, "/dead", user_id=7, chat_type="supergroup")
    await say(s, tg, ADMIN, "/dead")
    await run_due(s)
    assert tg.texts_to(7) == [texts.ADMIN_ONLY] * 4
    assert tg.texts_to(-100) == [texts.ADMIN_PRIVATE, texts.ADMIN_ONLY]  # reports name people
    assert tg.texts_to(ADMIN) == ["No failed jobs. 🎉"]


async def test_a_sticker_or_a_captioned_video_is_answered_once_with_what_the_bot_reads(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    sticker = {"file_id": "s1", "file_unique_id": "us1", "type": "regular", "width": 1, "height": 1}
    sticker |= {"is_animated": False, "is_video": False}
    await say(s, tg, 7, None, extra={"sticker": sticker})
    first = await claim(s, UPDATE_KIND)
    await s.updates.handle(first)
    await s.updates.handle(await after_a_crash(s, first))
    video = {"file_id": "v1", "file_unique_id": "uv1", "width": 1, "height": 1, "duration": 3}
    await say(s, tg, 8, None, extra={"video": video, "caption": "what is this?"})
    await run_due(s)
    assert tg.texts_to(7) == [texts.NOT_TEXT]
    assert tg.texts_to(8) == [texts.NOT_TEXT]
    assert llm.requests == []


# -- the router: what each message becomes ----------------------------------------------------


async def test_the_router_orders_what_reads_the_conversation_and_nothing_else(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, ALLOWED_USER_IDS="7", ADMIN_USER_IDS=str(ADMIN)) as s:

        def route(text: str | None, chat: int = 7, **kwargs: object) -> tuple[int, Decision]:
            update_id = tg.add_message(chat, text, **kwargs)  # type: ignore[arg-type]
            return update_id, s.router.route(incoming_of(last_update(tg)))

        for text in ("hello", "/reset", "/retry", "/nonsense"):  # they read or change the memory
            update_id, decision = route(text)
            assert decision == Decision((Planned(UPDATE_KIND, f"tg-update:{update_id}", "chat:7"),)), text
        for text in ("/start", "/help", "/usage", "/cancel", "/status", "/retry 12"):  # they do not
            update_id, decision = route(text)
            assert decision == Decision((Planned(COMMAND_KIND, f"tg-update:{update_id}"),)), text

        tg.add_voice(7, b"OggS audio")
        message_id = last_update(tg)["message"]["message_id"]
        assert s.router.route(incoming_of(last_update(tg))) == Decision(
            (
                Planned(ACK_KIND, f"voice-ack:7:{message_id}"),  # at once: the user hears back
                Planned(VOICE_KIND, f"voice:7:{message_id}", "chat:7"),  # in the chat's order
            )
        )

        _, stranger = route("hi", 50)
        assert stranger == Decision(refused="user not allowed", reply=texts.NOT_ALLOWED.format(user_id=50))
        assert route("hi?", 50)[1] == Decision(refused="user not allowed")  # told once a minute
        group = {"user_id": 7, "chat_type": "supergroup"}
        assert route("/help@other_bot", -100, **group)[1] == Decision(refused="not addressed to the bot")
        assert route("/help@test_bot", -100, **group)[1].jobs[0].kind == COMMAND_KIND
