"""The chat service built from real parts (SQLite, the real SDKs against the fakes, a manual
clock for the queue): what happens when a streamed answer's job loses its lease midway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from botcore import texts
from botcore.alerts import Alerts
from botcore.breaker import CircuitBreaker
from botcore.cancels import Cancels
from botcore.catalog import ModelCatalog
from botcore.chat import ChatService
from botcore.clock import ManualClock
from botcore.concurrency import LlmLimits
from botcore.errors import LeaseLostError
from botcore.jobqueue import JobQueue
from botcore.llm import ChatModel
from botcore.messenger import Messenger
from botcore.models import Job, Prices
from botcore.notices import Notices
from botcore.personas import built_in
from botcore.prefs import ChatSettings
from botcore.spending import Spending
from botcore.sqlite_data import SqliteChatPrefs, SqliteConversations, SqliteKeyValue, SqliteUsage
from botcore.sqlite_db import Database
from botcore.telegram_api import make_bot

from .conftest import TOKEN, private_message
from .fakes import FakeOpenAI, FakeTelegram, Scripted


@pytest.fixture
async def service(
    db: Database, queue: JobQueue, clock: ManualClock, tg: FakeTelegram, llm: FakeOpenAI
) -> AsyncIterator[tuple[ChatService, list[str]]]:
    outcomes: list[str] = []  # what the breaker counted of each call
    model = ChatModel(api_key="", base_url=llm.base_url, model="m", timeout_s=5, max_reply_tokens=100)
    async with make_bot(TOKEN, tg.base_url) as bot:
        messenger = Messenger(bot)
        alerts = Alerts(messenger, [], clock=clock)
        kv = SqliteKeyValue(db)
        breaker = CircuitBreaker(
            "LLM", clock=clock, observe=lambda _name, outcome, _s: outcomes.append(outcome)
        )
        conversations = SqliteConversations(db)
        notices = Notices(queue=queue, messenger=messenger, alerts=alerts)
        chat = ChatService(
            queue=queue,
            conversations=conversations,
            model=model,
            messenger=messenger,
            breakers=lambda _model: breaker,
            notices=notices,
            cancels=Cancels(),
            spending=Spending(SqliteUsage(db), kv, alerts, prices=Prices(0.15, 0.6, 0.006), clock=clock),
            clock=clock,
            settings=ChatSettings(
                store=SqliteChatPrefs(db),
                conversations=conversations,
                catalog=ModelCatalog(model, clock, allowed=()),
                messenger=messenger,
                queue=queue,
                clock=clock,
                personas=built_in(""),
                stream=True,
                history_messages=10,
                history_ttl_days=7,
                admin_ids=(),
            ),
            history_ttl_days=7,
            stream_interval_s=0.5,
            llm_limit=LlmLimits(clock=clock, fixed=1),
        )
        yield chat, outcomes
    await model.aclose()


async def a_stale_attempt(queue: JobQueue, clock: ManualClock, llm: FakeOpenAI) -> Job:
    """A job claimed, then its lease run out (the worker stalled) and the job claimed again: the
    first claim, whose attempt no longer owns the job. The model will stream a long answer."""
    llm.script.append(Scripted(text="a long answer " * 40, piece_chars=40, piece_delay_s=0.05))
    await queue.enqueue("tg-update", {"n": 1})
    [stale] = await queue.claim({"tg-update": 1}, 1)
    clock.advance(queue.lease_s + 1)
    await queue.recover_expired()
    [newer] = await queue.claim({"tg-update": 1}, 1)
    assert newer.id == stale.id and newer.lease_token != stale.lease_token
    return stale


async def test_a_stream_whose_job_lost_its_lease_stops_and_blames_nobody(
    service: tuple[ChatService, list[str]],
    queue: JobQueue,
    clock: ManualClock,
    tg: FakeTelegram,
    llm: FakeOpenAI,
) -> None:
    chat, outcomes = service
    tg.no_drafts = True  # edits: the streamed message's id is checkpointed as soon as it is sent
    stale = await a_stale_attempt(queue, clock, llm)
    with pytest.raises(LeaseLostError):  # at the first checkpoint (the streamed message's id)
        await chat.answer(stale, private_message(10, "hi"), {})
    assert outcomes == []  # neither a failure nor a success of the LLM: the breaker ignores it
    # The newer attempt owns the job and the message now: the stale one marked nothing.
    assert not any(texts.STREAM_FAILED in t or texts.STREAM_INTERRUPTED in t for t in tg.texts_to(10))


async def test_a_drafted_answer_whose_job_lost_its_lease_is_never_sent(
    service: tuple[ChatService, list[str]],
    queue: JobQueue,
    clock: ManualClock,
    tg: FakeTelegram,
    llm: FakeOpenAI,
) -> None:
    chat, outcomes = service
    stale = await a_stale_attempt(queue, clock, llm)
    with pytest.raises(LeaseLostError):  # a draft is no message: at the answer's checkpoint
        await chat.answer(stale, private_message(10, "hi"), {})
    assert outcomes == ["ok"]  # the model did answer
    assert tg.drafts and not tg.sent  # the newer attempt sends the answer, not this one
