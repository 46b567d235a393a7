"""The queue API against a real SQLite file, time driven by a manual clock."""

from pathlib import Path

import pytest

from botcore.clock import ManualClock
from botcore.errors import LeaseLostError, PermanentError, TransientError, UpstreamUnavailable
from botcore.jobqueue import JobQueue
from botcore.models import JobState, NewJob
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore

ALL = {"chat": 100, "voice": 100}


async def claim_one(queue: JobQueue, kind: str = "chat"):
    jobs = await queue.claim({kind: 1}, 1)
    assert len(jobs) == 1, jobs
    return jobs[0]


async def test_enqueue_is_idempotent_on_dedup_key(queue: JobQueue) -> None:
    first = await queue.enqueue("chat", {"text": "hi"}, dedup_key="tg-update:1")
    again = await queue.enqueue("chat", {"text": "other"}, dedup_key="tg-update:1")
    assert first.created and not again.created
    assert again.job.id == first.job.id and again.job.payload == {"text": "hi"}
    # Also once the job has run: a redelivered update runs nothing twice.
    job = await claim_one(queue)
    assert await queue.complete(job)
    late = await queue.enqueue("chat", {}, dedup_key="tg-update:1")
    assert not late.created and late.job.state is JobState.DONE
    assert await queue.claim(ALL, 10) == []


async def test_enqueue_many_is_all_or_nothing_and_deduplicates(queue: JobQueue) -> None:
    await queue.enqueue("chat", dedup_key="tg-update:2")
    out = await queue.enqueue_many(
        [NewJob("chat", {"n": 1}, "tg-update:1"), NewJob("chat", {"n": 2}, "tg-update:2")]
    )
    assert [r.created for r in out] == [True, False]
    with pytest.raises(TypeError):  # not JSON: nothing of the batch is stored
        await queue.enqueue_many([NewJob("chat", {"n": 3}, "tg-update:3"), NewJob("chat", {"x": object()})])
    assert (await queue.enqueue("chat", dedup_key="tg-update:3")).created


async def test_claim_takes_a_lease_and_counts_the_attempt(queue: JobQueue, clock: ManualClock) -> None:
    await queue.enqueue("chat", {"n": 1})
    job = await claim_one(queue)
    assert job.state is JobState.RUNNING and job.attempts == 1
    assert job.lease_until == pytest.approx(clock.now() + 60)
    assert job.lease_token and len(job.lease_token) == 16
    assert await queue.claim(ALL, 10) == []  # leased: nobody else gets it


async def test_claim_honours_run_at(queue: JobQueue, clock: ManualClock) -> None:
    await queue.enqueue("chat", {"n": 1}, delay_s=30)
    assert await queue.claim(ALL, 10) == []
    assert await queue.next_run_at(["chat"]) == pytest.approx(clock.now() + 30)
    assert await queue.next_run_at(["voice"]) is None
    clock.advance(30)
    assert len(await queue.claim(ALL, 10)) == 1


async def test_stale_worker_is_fenced_after_its_lease_expires(queue: JobQueue, clock: ManualClock) -> None:
    await queue.enqueue("chat", {"n": 1})
    stale = await claim_one(queue)
    clock.advance(59)
    assert await queue.recover_expired() == []  # lease still valid
    clock.advance(2)
    [requeued] = await queue.recover_expired()
    assert requeued.state is JobState.QUEUED and requeued.attempts == 1
    assert "lease expired" in (requeued.last_error or "")
    fresh = await claim_one(queue)
    assert fresh.attempts == 2 and fresh.lease_token != stale.lease_token
    # The stale attempt can neither finish, fail, renew nor checkpoint the newer one.
    assert not await queue.complete(stale)
    assert await queue.fail(stale, TransientError("late")) is None
    assert await queue.renew([stale]) == set()
    with pytest.raises(LeaseLostError):
        await queue.save_checkpoint(stale, {"x": 1})
    assert await queue.renew([fresh]) == {fresh.id}
    assert await queue.complete(fresh)
    assert (await queue.get(fresh.id)).state is JobState.DONE


async def test_backoff_schedule_is_2_4_8_then_dead(queue: JobQueue, clock: ManualClock) -> None:
    await queue.enqueue("chat", {"n": 1})
    delays = []
    for _ in range(3):
        job = await claim_one(queue)
        failed_at = clock.now()
        after = await queue.fail(job, TransientError("timeout"))
        assert after.state is JobState.QUEUED
        delays.append(after.run_at - failed_at)
        clock.advance(after.run_at - clock.now() - 0.01)
        assert await queue.claim(ALL, 1) == []  # not before its time
        clock.advance(0.02)
    for got, base in zip(delays, (2, 4, 8), strict=True):
        assert base <= got <= base * 1.1  # + up to 10 % jitter
    job = await claim_one(queue)
    assert job.attempts == 4
    after = await queue.fail(job, TransientError("timeout again"))
    assert after.state is JobState.DEAD and after.last_error == "TransientError: timeout again"
    assert after.finished_at == clock.now()


async def test_unknown_exceptions_are_retried_like_transient_ones(
    queue: JobQueue, clock: ManualClock
) -> None:
    await queue.enqueue("chat", {})
    after = await queue.fail(await claim_one(queue), KeyError("x"))
    assert after.state is JobState.QUEUED and 2 <= after.run_at - clock.now() <= 2.2


async def test_retry_after_overrides_backoff(queue: JobQueue, clock: ManualClock) -> None:
    await queue.enqueue("chat", {})
    after = await queue.fail(await claim_one(queue), TransientError("flood", retry_after=37))
    assert 37 <= after.run_at - clock.now() <= 37 * 1.1


async def test_permanent_failure_goes_straight_to_dead(queue: JobQueue) -> None:
    await queue.enqueue("chat", {})
    after = await queue.fail(await claim_one(queue), PermanentError("400 bad audio"))
    assert after.state is JobState.DEAD and after.attempts == 1
    assert after.last_error == "PermanentError: 400 bad audio"


async def test_defer_spends_no_attempt_and_is_bounded(db: Database, clock: ManualClock) -> None:
    queue = JobQueue(SqliteJobStore(db), clock=clock, max_attempts=2, outage_max_wait_s=100, jitter=0)
    await queue.enqueue("chat", {})
    start = clock.now()
    for _ in range(5):  # far more deferrals than attempts: none is spent
        job = await claim_one(queue)
        after = await queue.fail(job, UpstreamUnavailable("breaker open", retry_after=15))
        assert after.state is JobState.QUEUED and after.attempts == 0
        assert after.deferred_since == start
        assert after.run_at == clock.now() + 15
        clock.advance(15)
    clock.advance(30)  # 105 s since the first deferral
    job = await claim_one(queue)
    after = await queue.fail(job, UpstreamUnavailable("still open"))
    assert after.state is JobState.DEAD
    assert after.last_error.startswith("upstream unavailable for over 100 s")


async def test_a_counted_retry_restarts_the_outage_clock(db: Database, clock: ManualClock) -> None:
    queue = JobQueue(SqliteJobStore(db), clock=clock, outage_max_wait_s=100)
    await queue.enqueue("chat", {})
    after = await queue.fail(await claim_one(queue), UpstreamUnavailable("open", retry_after=90))
    clock.advance(90)
    after = await queue.fail(await claim_one(queue), TransientError("timeout"))
    assert after.deferred_since is None
    clock.advance(10)
    after = await queue.fail(await claim_one(queue), UpstreamUnavailable("open again", retry_after=5))
    assert after.state is JobState.QUEUED and after.deferred_since == clock.now()


async def test_defer_never_runs_before_the_upstream_said_then_ends_past_the_maximum(
    db: Database, clock: ManualClock
) -> None:
    queue = JobQueue(SqliteJobStore(db), clock=clock, outage_max_wait_s=20, defer_s=5)
    await queue.enqueue("chat", {})
    after = await queue.fail(await claim_one(queue), UpstreamUnavailable("flood control", retry_after=60))
    assert after.run_at == clock.now() + 60  # as Telegram asked, though past the 20 s maximum
    clock.advance(60)
    after = await queue.fail(await claim_one(queue), UpstreamUnavailable("flood control", retry_after=60))
    assert after.state is JobState.DEAD


async def test_progress_restarts_the_outage_clock(db: Database, clock: ManualClock) -> None:
    queue = JobQueue(SqliteJobStore(db), clock=clock, outage_max_wait_s=100)
    await queue.enqueue("chat", {})
    await queue.fail(await claim_one(queue), UpstreamUnavailable("LLM rate limited", retry_after=90))
    clock.advance(90)
    job = await claim_one(queue)
    await queue.save_checkpoint(job, {"answer": "42"})  # the LLM answered at last
    clock.advance(5)
    after = await queue.fail(job, UpstreamUnavailable("Telegram down", retry_after=5))
    # A new wait, for another upstream: not 95 s into the LLM's.
    assert after.state is JobState.QUEUED and after.deferred_since == clock.now()


async def test_group_runs_one_at_a_time_in_enqueue_order(queue: JobQueue, clock: ManualClock) -> None:
    a1 = (await queue.enqueue("chat", {"n": "a1"}, group_key="chat:A")).job
    b1 = (await queue.enqueue("chat", {"n": "b1"}, group_key="chat:B")).job
    a2 = (await queue.enqueue("chat", {"n": "a2"}, group_key="chat:A")).job
    a3 = (await queue.enqueue("voice", {"n": "a3"}, group_key="chat:A")).job
    assert {a1.state, b1.state, a2.state, a3.state} == {JobState.QUEUED}
    claimed = await queue.claim(ALL, 10)
    assert [j.payload["n"] for j in claimed] == ["a1", "b1"]  # groups in parallel, never a2 yet
    # a1 fails and waits for its retry: a2 must still wait behind it, and is not even due.
    retry = await queue.fail(claimed[0], TransientError("x"))
    assert (await queue.get(a2.id)).run_at == retry.run_at == (await queue.get(a3.id)).run_at
    assert (await queue.get(b1.id)).run_at == b1.run_at  # other groups are untouched
    clock.advance(1)
    assert await queue.claim(ALL, 10) == []
    clock.advance(5)
    [again] = await queue.claim(ALL, 10)
    assert again.payload["n"] == "a1"
    assert await queue.complete(again)
    [nxt] = await queue.claim(ALL, 10)
    assert nxt.payload["n"] == "a2"
    await queue.fail(nxt, PermanentError("no"))  # a dead job also unblocks the group
    [last] = await queue.claim(ALL, 10)
    assert last.payload["n"] == "a3" and last.kind == "voice"


async def test_new_job_of_an_idle_group_is_not_blocked_by_finished_ones(queue: JobQueue) -> None:
    await queue.enqueue("chat", {}, group_key="g")
    assert await queue.complete(await claim_one(queue))
    await queue.enqueue("chat", {}, group_key="g")
    assert len(await queue.claim(ALL, 10)) == 1


async def test_a_running_job_blocks_its_group_but_not_others(queue: JobQueue) -> None:
    await queue.enqueue("chat", {"n": 1}, group_key="g")
    first = await claim_one(queue)
    await queue.enqueue("chat", {"n": 2}, group_key="g")
    await queue.enqueue("chat", {"n": 3}, group_key="h")
    assert [j.payload["n"] for j in await queue.claim(ALL, 10)] == [3]
    assert await queue.next_run_at(["chat"]) is None  # nothing to wake for but a finish
    assert await queue.complete(first)
    assert [j.payload["n"] for j in await queue.claim(ALL, 10)] == [2]


async def test_claim_respects_per_kind_wants(queue: JobQueue) -> None:
    for i in range(5):
        await queue.enqueue("voice", {"i": i})
        await queue.enqueue("chat", {"i": i})
    got = await queue.claim({"voice": 2, "chat": 10}, 4)
    assert sorted(j.kind for j in got) == ["chat", "chat", "voice", "voice"]
    got = await queue.claim({"chat": 10}, 10)
    assert {j.kind for j in got} == {"chat"} and len(got) == 3


async def test_release_gives_the_attempt_back(queue: JobQueue) -> None:
    await queue.enqueue("chat", {})
    job = await claim_one(queue)
    assert await queue.release([job]) == 1
    again = await claim_one(queue)
    assert again.attempts == 1


async def test_checkpoint_survives_a_retry(queue: JobQueue, clock: ManualClock) -> None:
    await queue.enqueue("chat", {})
    job = await claim_one(queue)
    await queue.save_checkpoint(job, {"answer": "42"})
    await queue.fail(job, TransientError("send failed"))
    clock.advance(10)
    again = await claim_one(queue)
    assert again.checkpoint == {"answer": "42"}


async def test_crash_recovery_requeues_all_running_and_buries_crash_loops(
    db: Database, clock: ManualClock
) -> None:
    queue = JobQueue(SqliteJobStore(db), clock=clock, max_attempts=2)
    await queue.enqueue("chat", {"n": 1})
    await queue.enqueue("chat", {"n": 2})
    await queue.claim(ALL, 10)  # both running, leases far from expiry
    recovered = await queue.recover_after_crash()
    assert {j.state for j in recovered} == {JobState.QUEUED}
    await queue.claim(ALL, 10)  # second attempt each: the last one allowed
    recovered = await queue.recover_after_crash()
    assert {j.state for j in recovered} == {JobState.DEAD}
    assert all("interrupted" in j.last_error for j in recovered)


async def test_close_and_reopen_keeps_jobs(tmp_path: Path, clock: ManualClock) -> None:
    db = await Database.open(tmp_path / "bot.db")
    try:
        queue = JobQueue(SqliteJobStore(db), clock=clock)
        await queue.enqueue("chat", {"text": "hello"}, dedup_key="k1", group_key="g")
        await queue.enqueue("chat", {"text": "again"}, dedup_key="k2", group_key="g")
    finally:
        await db.close()
    db = await Database.open(tmp_path / "bot.db")
    try:
        queue = JobQueue(SqliteJobStore(db), clock=clock)
        assert not (await queue.enqueue("chat", {}, dedup_key="k1")).created
        jobs = await queue.claim(ALL, 10)
        assert [j.payload for j in jobs] == [{"text": "hello"}]
    finally:
        await db.close()


async def test_stats_and_purge(queue: JobQueue, clock: ManualClock) -> None:
    for i in range(3):
        await queue.enqueue("chat", {"i": i})
    await queue.enqueue("voice", {}, delay_s=100)
    jobs = await queue.claim({"chat": 3}, 3)
    assert await queue.complete(jobs[0])
    await queue.fail(jobs[1], PermanentError("bad"))
    clock.advance(10)
    stats = await queue.stats()
    assert stats.counts == {
        ("done", "chat"): 1,
        ("dead", "chat"): 1,
        ("running", "chat"): 1,
        ("queued", "voice"): 1,
    }
    assert stats.oldest_waiting_age_s == pytest.approx(10)
    assert stats.by_state() == {"done": 1, "dead": 1, "running": 1, "queued": 1}
    clock.advance(300)
    result = await queue.purge(done_after_s=300, dead_after_s=3600)
    assert (result.done, result.dead) == (1, 0)
    clock.advance(3600)
    result = await queue.purge(done_after_s=300, dead_after_s=3600)
    assert (result.done, result.dead) == (0, 1)
    assert (await queue.stats()).by_state() == {"running": 1, "queued": 1}


async def test_a_revived_job_goes_to_the_end_of_its_chats_order(queue: JobQueue) -> None:
    a = (await queue.enqueue("chat", {"n": "a"}, group_key="chat:A", dedup_key="tg-update:1")).job
    b = (await queue.enqueue("chat", {"n": "b"}, group_key="chat:A")).job
    claimed = await claim_one(queue)
    await queue.save_checkpoint(claimed, {"answer": "kept"})
    dead = await queue.fail(claimed, PermanentError("refused"))
    assert dead.id == a.id and dead.state is JobState.DEAD
    running_b = await claim_one(queue)
    assert running_b.id == b.id
    revived = await queue.revive(a.id)
    assert revived is not None and revived.id > b.id and revived.state is JobState.QUEUED
    assert (revived.attempts, revived.checkpoint, revived.dedup_key) == (0, {"answer": "kept"}, "tg-update:1")
    assert await queue.get(a.id) is None
    assert await queue.claim(ALL, 10) == []  # not beside b: one job of a chat at a time
    assert await queue.complete(running_b)
    assert [j.id for j in await queue.claim(ALL, 10)] == [revived.id]
    assert await queue.revive(revived.id) is None  # only a dead job can be put back
