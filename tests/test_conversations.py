import pytest

from botcore.clock import day_start, month_start
from botcore.models import Prices, Turn, Usage, UsageSummary
from botcore.sqlite_data import SqliteConversations, SqliteUsage
from botcore.sqlite_db import Database

DAY = 86_400.0


async def test_history_is_the_last_n_messages_of_this_chat_oldest_first(db: Database) -> None:
    store = SqliteConversations(db)
    for i in range(1, 8):
        await store.add_exchange(100, job_id=i, user_text=f"q{i}", answer=f"a{i}", now=1000.0 + i)
    await store.add_exchange(200, job_id=99, user_text="other chat", answer="x", now=1010.0)
    history = await store.history(100, limit=4, since=0)
    assert history == [
        Turn("user", "q6"),
        Turn("assistant", "a6"),
        Turn("user", "q7"),
        Turn("assistant", "a7"),
    ]
    assert await store.history(100, limit=0, since=0) == []


async def test_expired_messages_are_left_out_and_purged(db: Database) -> None:
    store = SqliteConversations(db)
    await store.add_exchange(1, job_id=1, user_text="old", answer="old answer", now=0.0)
    await store.add_exchange(1, job_id=2, user_text="new", answer="new answer", now=8 * DAY)
    recent = await store.history(1, limit=10, since=8 * DAY - 7 * DAY)
    assert [t.content for t in recent] == ["new", "new answer"]
    assert await store.purge_expired(before=1 * DAY) == 2
    assert [t.content for t in await store.history(1, limit=10, since=0)] == ["new", "new answer"]


async def test_a_retried_job_stores_its_exchange_once(db: Database) -> None:
    store = SqliteConversations(db)
    for _ in range(3):
        await store.add_exchange(5, job_id=42, user_text="hi", answer="hello", now=1.0)
    assert len(await store.history(5, limit=10, since=0)) == 2


async def test_reset_deletes_only_this_chat(db: Database) -> None:
    store = SqliteConversations(db)
    await store.add_exchange(1, job_id=1, user_text="a", answer="b", now=1.0)
    await store.add_exchange(2, job_id=2, user_text="c", answer="d", now=1.0)
    assert await store.reset(1) == 2
    assert await store.history(1, limit=10, since=0) == []
    assert len(await store.history(2, limit=10, since=0)) == 2


async def test_usage_is_recorded_once_per_billing_key_and_summed(db: Database) -> None:
    store = SqliteUsage(db)
    usage = Usage("chat", "llama3.2", prompt_tokens=30, completion_tokens=12, cost_usd=0.5)
    for job_id in (7, 70):  # the same key from another job row (a revived job): once
        assert await store.record(usage, key="a:chat", job_id=job_id, chat_id=1, user_id=11, now=5.0) == (
            job_id == 7
        )
    await store.record(usage, key="b:chat", job_id=8, chat_id=1, user_id=11, now=6.0)
    voice = Usage("transcription", "whisper-1", audio_seconds=90, cost_usd=0.25)
    await store.record(voice, key="b:transcription", job_id=8, chat_id=2, user_id=12, now=7.0)
    assert await store.summary(since=0) == UsageSummary(3, 60, 24, 90.0, 1.25)
    assert await store.summary(since=6.0, user_id=11) == UsageSummary(1, 30, 12, 0.0, 0.5)
    assert await store.top_users(since=0) == [
        (11, UsageSummary(2, 60, 24, 0.0, 1.0)),
        (12, UsageSummary(1, 0, 0, 90.0, 0.25)),
    ]
    assert await store.purge(before=6.5) == 2
    assert (await store.summary(since=0)).requests == 1


def test_prices_and_periods_are_utc() -> None:
    prices = Prices(input_per_1m=0.15, output_per_1m=0.60, transcription_per_min=0.006)
    assert prices.cost(
        Usage("chat", "m", prompt_tokens=1_000_000, completion_tokens=500_000)
    ) == pytest.approx(0.45)
    assert prices.cost(Usage("transcription", "w", audio_seconds=30)) == pytest.approx(0.003)
    now = 1_764_340_000.0  # 2025-11-28 14:26:40 UTC
    assert day_start(now) == 1_764_288_000.0  # 2025-11-28 00:00 UTC
    assert month_start(now) == 1_761_955_200.0  # 2025-11-01 00:00 UTC
