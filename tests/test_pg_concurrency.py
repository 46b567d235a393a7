"""PostgreSQL under concurrency: several "processes" (each its own ``PgStorage``, its own pool of
connections to the throwaway cluster) insert messages of the same chats at once and work the
queue at once. Each chat's jobs must run one at a time, in the order of their ids, each once;
wake-ups and leadership must reach across processes."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import asyncpg
import pytest

from botcore.models import NewJob
from botcore.pg_storage import PgStorage
from botcore.storage import Storage

from .storage_backends import schema_for

PROCESSES = 4
CHATS = 12
PER_INSERTER = 25
LEASE_S = 60.0


@pytest.fixture
async def stores(postgres, tmp_path: Path):
    opened = [
        await PgStorage.open(postgres.url, schema=schema_for(tmp_path), max_connections=4)
        for _ in range(PROCESSES)
    ]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def test_per_chat_order_holds_across_processes_inserting_and_claiming_at_once(
    stores: list[Storage],
) -> None:
    rng = random.Random(7)
    running: dict[str, int] = {}  # chat -> the job running for it now
    ran: dict[str, list[int]] = {}  # chat -> its jobs' ids, in the order they ran
    overlaps: list[tuple[str, int, int]] = []
    inserting = True
    stored: list[int] = []

    async def insert(store: Storage, n: int) -> None:
        for i in range(PER_INSERTER):  # batches of 1 to 30 messages, as an intake stores them
            batch = [
                NewJob("chat", {"n": n, "i": i, "j": j}, group_key=f"chat:{rng.randrange(CHATS)}")
                for j in range(rng.choice((1, 1, 5, 30)))
            ]
            out = await store.jobs.insert_many(batch, max_attempts=3, now=0.0)
            stored.extend(e.job.id for e in out)
            await asyncio.sleep(0)

    async def work(store: Storage) -> None:
        leases: list[tuple[int, str]] = []
        while True:
            _, jobs = await store.jobs.finish_and_claim(
                leases, {"chat": 3}, limit=3, now=1.0, lease_s=LEASE_S
            )
            leases = []
            if not jobs and not inserting and not leases:
                again = await store.jobs.stats(now=1.0)
                if not again.by_state().get("queued") and not again.by_state().get("running"):
                    return
            for job in jobs:
                chat = job.group_key
                assert chat is not None
                if chat in running:
                    overlaps.append((chat, running[chat], job.id))
                running[chat] = job.id
            await asyncio.sleep(rng.random() * 0.004)
            for job in jobs:
                assert job.group_key is not None and job.lease_token is not None
                del running[job.group_key]
                ran.setdefault(job.group_key, []).append(job.id)
                leases.append((job.id, job.lease_token))
            if leases:
                continue
            await asyncio.sleep(0.002)

    workers = [asyncio.create_task(work(store)) for store in stores for _ in range(2)]
    await asyncio.gather(*(insert(store, n) for n, store in enumerate(stores * 2)))
    inserting = False
    await asyncio.wait_for(asyncio.gather(*workers), timeout=120)

    assert overlaps == []
    assert sorted(i for ids in ran.values() for i in ids) == sorted(stored)  # each once
    for chat, ids in ran.items():
        assert ids == sorted(ids), f"{chat} ran out of order"
    assert (await stores[0].jobs.stats(now=2.0)).by_state() == {"done": len(stored)}


async def test_an_enqueue_in_one_process_wakes_the_others(stores: list[Storage]) -> None:
    woken = [asyncio.Event() for _ in stores[1:]]
    stop = asyncio.Event()
    pairs = zip(stores[1:], woken, strict=True)
    listeners = [asyncio.create_task(store.watch_enqueues(event.set, stop)) for store, event in pairs]
    try:
        await asyncio.sleep(0.3)  # listening; each (re)connection wakes once, in case it missed one
        for event in woken:
            event.clear()
        await stores[0].jobs.insert_many([NewJob("chat", {"x": 1})], max_attempts=3, now=0.0)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in woken)), timeout=5)
    finally:
        stop.set()
        await asyncio.gather(*listeners)


async def test_exactly_one_process_leads_and_another_takes_over_when_it_goes(stores: list[Storage]) -> None:
    roles = [store.leadership("cleanup") for store in stores]
    held = [await role.hold() for role in roles]
    assert held.count(True) == 1
    leader = held.index(True)
    assert await roles[leader].hold()  # still held on the next check
    assert [await role.hold() for i, role in enumerate(roles) if i != leader] == [False] * (PROCESSES - 1)
    other = stores[0].leadership("polling")  # another role is held apart
    assert await other.hold()
    await roles[leader].release()  # its connection ends, as when its process dies
    held = [await role.hold() for i, role in enumerate(roles) if i != leader]
    assert held.count(True) == 1
    for role in [*roles, other]:
        await role.release()


async def test_recovery_takes_back_only_expired_leases(stores: list[Storage]) -> None:
    a, b = stores[0], stores[1]
    await a.jobs.insert_many([NewJob("chat", {"n": i}) for i in range(2)], max_attempts=3, now=0.0)
    _, [short] = await a.jobs.finish_and_claim([], {"chat": 1}, limit=1, now=0.0, lease_s=10)
    _, [live] = await b.jobs.finish_and_claim([], {"chat": 1}, limit=1, now=0.0, lease_s=100)
    recovered = await b.jobs.recover(now=50.0, expired_before=50.0, error="lease expired")
    assert [job.id for job in recovered] == [short.id]
    assert (await a.jobs.get(live.id)).lease_token == live.lease_token  # a live process's job is its own


async def test_an_insert_waits_while_another_insert_of_its_chat_is_in_flight(
    stores: list[Storage], postgres
) -> None:
    """Why a chat's ids follow the order its jobs became visible: an insert holds its chats'
    insert locks until it commits. Here another connection holds chat 1's, as an insert in
    flight would: chat 1's next insert waits for it, other chats' do not."""
    conn = await asyncpg.connect(postgres.url)
    try:
        in_flight = conn.transaction()
        await in_flight.start()
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('bot-group:' || $1::text, 0))", "chat:1"
        )
        waiting = asyncio.create_task(
            stores[0].jobs.insert_many([NewJob("chat", group_key="chat:1")], max_attempts=3, now=0.0)
        )
        other = await stores[1].jobs.insert_many(
            [NewJob("chat", group_key="chat:2")], max_attempts=3, now=0.0
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await in_flight.rollback()
        [mine] = await asyncio.wait_for(waiting, 5)
        assert mine.job.id > other[0].job.id
    finally:
        await conn.close()
