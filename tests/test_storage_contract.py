"""The storage contract: what every backend in ``storage_backends.BACKENDS`` must do, tested
through the ``botcore.storage`` protocols only (no SQL, no backend type). Times are explicit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from botcore.errors import StorageUnavailable
from botcore.models import (
    ChatPrefs,
    Job,
    JobState,
    NewJob,
    PurgeResult,
    StoredTurn,
    Turn,
    Usage,
    UsageSummary,
)
from botcore.storage import COST_ALERT_PREFIX, HEALTH_PROBE_KEY, OFFSET_KEY, Lease, Storage, cost_alert_key

from .storage_backends import Opener, open_backend_fixture, storage_fixture  # noqa: F401

QUEUED, RUNNING, DONE, DEAD = JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.DEAD
T0 = 1_000.0
LEASE_S = 60.0
ALL = {"chat": 10, "voice": 10}
WRONG = "not-the-lease-token"
DAY = 86_400.0


async def put(storage: Storage, *new: NewJob, now: float = T0, max_attempts: int = 3) -> list[Job]:
    return [e.job for e in await storage.jobs.insert_many(new, max_attempts=max_attempts, now=now)]


async def claim(
    storage: Storage, wants: Mapping[str, int] = ALL, *, now: float = T0, limit: int = 10
) -> list[Job]:
    _, jobs = await storage.jobs.finish_and_claim([], wants, limit=limit, now=now, lease_s=LEASE_S)
    return jobs


async def finish(storage: Storage, leases: Sequence[Lease], *, now: float) -> set[int]:
    done, _ = await storage.jobs.finish_and_claim(leases, {}, limit=0, now=now, lease_s=LEASE_S)
    return done


def lease(job: Job) -> Lease:
    assert job.lease_token is not None
    return (job.id, job.lease_token)


def ids(jobs: Iterable[Job]) -> list[int]:
    return [job.id for job in jobs]


async def writes_let_through(storage: Storage, job_id: int, token: str, *, now: float) -> list[bool]:
    """Every write that takes a lease token, tried with this one: which of them it was let do."""
    jobs, held = storage.jobs, [(job_id, token)]
    reschedule = {"run_at": now + 9, "error": "late", "now": now}
    return [
        bool(await finish(storage, held, now=now)),
        bool(await jobs.renew(held, lease_until=now + LEASE_S, now=now)),
        await jobs.reschedule(job_id, token, **reschedule, deferred=False) is not None,
        await jobs.reschedule(job_id, token, **reschedule, deferred=True) is not None,
        await jobs.bury(job_id, token, error="late", now=now) is not None,
        bool(await jobs.release_many(held, now=now)),
        await jobs.save_checkpoint(job_id, token, {"late": True}, now=now),
    ]


# -- JobStore: insert_many ----------------------------------------------------------------------


async def test_insert_many_stores_new_jobs_queued_in_order(storage: Storage) -> None:
    payload = {"text": "Grüße, 世界 ✓", "parts": [1, 2.5, None, True], "nested": {"a": "b"}}
    out = await storage.jobs.insert_many(
        [
            NewJob("chat", payload, dedup_key="tg-update:1", group_key="chat:1"),
            NewJob("voice", delay_s=30, max_attempts=7),
            NewJob("chat", delay_s=-5),  # never due before it was queued
        ],
        max_attempts=3,
        now=T0,
    )
    assert [e.created for e in out] == [True, True, True]
    first, later, negative = (e.job for e in out)
    assert first.id < later.id < negative.id
    assert first == Job(
        id=first.id,
        kind="chat",
        payload=payload,
        dedup_key="tg-update:1",
        group_key="chat:1",
        state=QUEUED,
        attempts=0,
        max_attempts=3,
        run_at=T0,
        created_at=T0,
        updated_at=T0,
        lease_token=None,
        lease_until=None,
        deferred_since=None,
        finished_at=None,
        last_error=None,
        checkpoint=None,
    )
    assert (later.kind, later.payload, later.dedup_key, later.group_key) == ("voice", {}, None, None)
    assert (later.max_attempts, later.run_at) == (7, T0 + 30)
    assert negative.run_at == T0
    assert [await storage.jobs.get(e.job.id) for e in out] == [e.job for e in out]
    assert await storage.jobs.insert_many([], max_attempts=3, now=T0) == []


async def test_a_known_dedup_key_returns_the_stored_job_and_queues_nothing(storage: Storage) -> None:
    [first] = await put(storage, NewJob("chat", {"n": 1}, dedup_key="k"))
    out = await storage.jobs.insert_many(
        [
            NewJob("chat", {"n": 2}, dedup_key="k"),
            NewJob("chat", {"n": 3}, dedup_key="j"),
            NewJob("voice", {"n": 4}, dedup_key="j"),  # twice in one batch, too
        ],
        max_attempts=3,
        now=T0 + 1,
    )
    assert [e.created for e in out] == [False, True, False]
    assert out[0].job == first  # as it is, not as asked again
    assert out[2].job == out[1].job
    # Also once it has run: a redelivered update runs nothing twice.
    [running] = await claim(storage, now=T0 + 2, limit=1)
    assert await finish(storage, [lease(running)], now=T0 + 3) == {first.id}
    [late] = await storage.jobs.insert_many([NewJob("chat", dedup_key="k")], max_attempts=3, now=T0 + 4)
    assert not late.created and late.job.id == first.id and late.job.state is DONE
    assert (await storage.jobs.stats(now=T0 + 4)).by_state() == {"done": 1, "queued": 1}


async def test_insert_many_is_all_or_nothing(storage: Storage) -> None:
    # The protocol leaves the exception for refused data to the backend; it is no outage.
    with pytest.raises(Exception) as refused:
        await storage.jobs.insert_many(
            [NewJob("chat", {"n": 1}, dedup_key="a"), NewJob("chat", {"x": object()}, dedup_key="b")],
            max_attempts=3,
            now=T0,
        )
    assert not isinstance(refused.value, StorageUnavailable)
    assert await storage.jobs.by_dedup_key("a") is None
    assert (await storage.jobs.stats(now=T0)).counts == {}
    [again] = await storage.jobs.insert_many([NewJob("chat", dedup_key="a")], max_attempts=3, now=T0)
    assert again.created


async def test_a_job_with_a_dead_reason_is_stored_dead_and_never_runs(storage: Storage) -> None:
    dead, after = await put(
        storage,
        NewJob("chat", {"raw": "?"}, dedup_key="tg-update:9", group_key="g", dead_reason="unusable update"),
        NewJob("chat", group_key="g"),
    )
    assert (dead.state, dead.attempts, dead.finished_at, dead.last_error) == (DEAD, 0, T0, "unusable update")
    assert ids(await claim(storage, now=T0 + 1)) == [after.id]  # nor does it hold up its group
    assert ids(await storage.jobs.latest_dead(10)) == [dead.id]
    [again] = await storage.jobs.insert_many(
        [NewJob("chat", dedup_key="tg-update:9")], max_attempts=3, now=T0
    )
    assert not again.created and again.job == dead


async def test_jobs_are_found_by_id_and_by_dedup_key(storage: Storage) -> None:
    keyed, plain = await put(storage, NewJob("chat", dedup_key="k"), NewJob("chat"))
    assert await storage.jobs.by_dedup_key("k") == keyed
    assert await storage.jobs.by_dedup_key("unknown") is None
    assert await storage.jobs.get(plain.id) == plain
    assert await storage.jobs.get(plain.id + 1000) is None


async def test_a_groups_queued_jobs_of_a_kind_are_listed_oldest_first(storage: Storage) -> None:
    first, other_kind, second, elsewhere, later = await put(
        storage,
        NewJob("voice", {"n": 1}, group_key="chat:1"),
        NewJob("chat", {"n": 2}, group_key="chat:1"),
        NewJob("voice", {"n": 3}, group_key="chat:1"),
        NewJob("voice", {"n": 4}, group_key="chat:2"),
        NewJob("voice", {"n": 5}, group_key="chat:1", delay_s=30),  # queued, not yet due: listed
    )
    assert [j.id for j in await storage.jobs.queued_in_group("chat:1", "voice")] == [
        first.id,
        second.id,
        later.id,
    ]
    [claimed] = await claim(storage, {"voice": 1}, limit=1)  # running: no longer queued
    assert claimed.id == first.id
    assert [j.id for j in await storage.jobs.queued_in_group("chat:1", "voice")] == [second.id, later.id]
    assert await storage.jobs.queued_in_group("chat:3", "voice") == []
    assert other_kind.kind == "chat" and elsewhere.group_key == "chat:2"


# -- JobStore: finish_and_claim -------------------------------------------------------------------


async def test_a_claim_leases_due_jobs_and_counts_an_attempt(storage: Storage) -> None:
    due, later = await put(storage, NewJob("chat", {"n": 1}), NewJob("chat", {"n": 2}, delay_s=30))
    done, [job] = await storage.jobs.finish_and_claim([], {"chat": 10}, limit=10, now=T0 + 1, lease_s=LEASE_S)
    assert done == set() and job.id == due.id
    assert (job.state, job.attempts) == (RUNNING, 1)
    assert (job.lease_until, job.updated_at) == (T0 + 1 + LEASE_S, T0 + 1)
    assert isinstance(job.lease_token, str) and job.lease_token
    assert await storage.jobs.get(job.id) == job
    assert await claim(storage, now=T0 + 29) == []  # leased: nobody else gets it; the other not due
    [next_one] = await claim(storage, now=T0 + 30)  # due at its run_at
    assert next_one.id == later.id and next_one.lease_token != job.lease_token


async def test_a_claim_takes_per_kind_wants_within_the_limit_oldest_first(storage: Storage) -> None:
    voices = await put(storage, *(NewJob("voice", {"i": i}) for i in range(3)), now=T0)
    chats = await put(storage, *(NewJob("chat", {"i": i}) for i in range(3)), now=T0 + 1)
    [other] = await put(storage, NewJob("other"), now=T0 - 10)
    got = await claim(storage, {"voice": 2, "chat": 10, "nobody": 0}, now=T0 + 5, limit=3)
    assert ids(got) == [voices[0].id, voices[1].id, chats[0].id]
    assert await claim(storage, {"chat": 10}, now=T0 + 5, limit=0) == []
    assert await claim(storage, {"chat": 0, "voice": 0}, now=T0 + 5) == []
    assert ids(await claim(storage, {"chat": 10}, now=T0 + 5)) == ids(chats[1:])
    assert ids(await claim(storage, {"other": 1}, now=T0 + 5)) == [other.id]  # it waited for a taker


async def test_oldest_first_is_by_run_at_then_by_id(storage: Storage) -> None:
    late, a, b, c = await put(
        storage,
        NewJob("chat", delay_s=10),
        NewJob("chat", delay_s=5),
        NewJob("voice", delay_s=5),
        NewJob("voice", delay_s=5),
    )
    assert ids(await claim(storage, {"chat": 1}, now=T0 + 20)) == [a.id]  # within a kind
    assert ids(await claim(storage, now=T0 + 20, limit=2)) == [b.id, c.id]  # and across kinds
    assert ids(await claim(storage, now=T0 + 20)) == [late.id]


async def test_a_job_waits_while_an_older_job_of_its_group_is_queued_or_running(storage: Storage) -> None:
    a1, a2, b1, free = await put(
        storage,
        NewJob("chat", {"n": "a1"}, group_key="chat:A", delay_s=50),
        NewJob("voice", {"n": "a2"}, group_key="chat:A"),
        NewJob("chat", {"n": "b1"}, group_key="chat:B"),
        NewJob("chat", {"n": "free"}),
    )
    # a1 is queued but not due: a2, though due, waits behind it; other groups do not.
    assert ids(await claim(storage, now=T0)) == [b1.id, free.id]
    # Both due now, a2 longer: still only a1, one job of a group at a time.
    [first] = await claim(storage, now=T0 + 50)
    assert first.id == a1.id
    assert await claim(storage, now=T0 + 60) == []  # a1 running: a2 still waits
    assert await finish(storage, [lease(first)], now=T0 + 61) == {a1.id}
    assert ids(await claim(storage, now=T0 + 62)) == [a2.id]


async def test_a_finish_frees_its_group_only_for_the_next_call(storage: Storage) -> None:
    a1, a2 = await put(storage, NewJob("chat", group_key="g"), NewJob("chat", group_key="g"))
    [running] = await claim(storage, now=T0)
    [other] = await put(storage, NewJob("voice"), now=T0 + 1)
    done, claimed = await storage.jobs.finish_and_claim(
        [lease(running)], ALL, limit=10, now=T0 + 1, lease_s=LEASE_S
    )
    assert done == {a1.id} and ids(claimed) == [other.id]  # one call finishes and claims
    assert await storage.jobs.get(a1.id) == running._replace(
        state=DONE, finished_at=T0 + 1, updated_at=T0 + 1, lease_token=None, lease_until=None
    )
    assert ids(await claim(storage, now=T0 + 2)) == [a2.id]


async def test_every_write_under_a_lease_is_fenced_by_its_token(storage: Storage) -> None:
    """A stale attempt (its lease ran out and passed to a newer one), a wrong token or the token
    of a finished attempt changes nothing, and learns so."""
    [job] = await put(storage, NewJob("chat", group_key="g"), max_attempts=5)
    [stale] = await claim(storage, now=T0)
    [back] = await storage.jobs.recover(now=T0 + 61, expired_before=T0 + 61, error="lease expired")
    assert back.id == job.id
    [fresh] = await claim(storage, now=T0 + 62)
    assert fresh.attempts == 2 and fresh.lease_token != stale.lease_token
    for token in (stale.lease_token, WRONG):
        assert token is not None
        assert await writes_let_through(storage, job.id, token, now=T0 + 63) == [False] * 7
        assert await storage.jobs.get(job.id) == fresh
    assert await finish(storage, [lease(fresh), (job.id + 1000, WRONG)], now=T0 + 64) == {job.id}
    done = await storage.jobs.get(job.id)
    assert done is not None and done.state is DONE
    assert await writes_let_through(storage, *lease(fresh), now=T0 + 65) == [False] * 7
    assert await storage.jobs.get(job.id) == done


# -- JobStore: renew, reschedule, bury, release_many, recover -------------------------------------


async def test_renew_extends_only_the_leases_still_held(storage: Storage) -> None:
    a, b = await put(storage, NewJob("chat"), NewJob("chat"))
    ra, rb = await claim(storage, now=T0)
    renewed = await storage.jobs.renew([lease(ra), (b.id, WRONG)], lease_until=T0 + 100, now=T0 + 40)
    assert renewed == {a.id}
    assert await storage.jobs.get(a.id) == ra._replace(lease_until=T0 + 100, updated_at=T0 + 40)
    assert await storage.jobs.get(b.id) == rb
    assert await storage.jobs.renew([], lease_until=T0 + 100, now=T0 + 40) == set()
    assert ids(await storage.jobs.recover(now=T0 + 70, expired_before=T0 + 70, error="expired")) == [b.id]


async def test_a_counted_retry_keeps_its_attempt_and_stops_the_outage_clock(storage: Storage) -> None:
    [job] = await put(storage, NewJob("chat"))
    [first] = await claim(storage, now=T0)
    assert first.lease_token is not None
    await storage.jobs.reschedule(
        job.id, first.lease_token, run_at=T0 + 10, error="open", now=T0 + 1, deferred=True
    )
    [second] = await claim(storage, now=T0 + 10)
    assert (second.attempts, second.deferred_since) == (1, T0 + 1)  # the clock runs while it runs
    assert second.lease_token is not None
    after = await storage.jobs.reschedule(
        job.id, second.lease_token, run_at=T0 + 30, error="timeout", now=T0 + 11, deferred=False
    )
    assert after == second._replace(
        state=QUEUED,
        run_at=T0 + 30,
        last_error="timeout",
        lease_token=None,
        lease_until=None,
        updated_at=T0 + 11,
        deferred_since=None,
    )
    assert await storage.jobs.get(job.id) == after
    assert await claim(storage, now=T0 + 29) == []  # not before its time
    [third] = await claim(storage, now=T0 + 30)
    assert (third.attempts, third.last_error) == (2, "timeout")
    assert await finish(storage, [lease(third)], now=T0 + 31) == {job.id}
    done = await storage.jobs.get(job.id)
    assert done is not None and done.last_error is None  # done: the earlier error is over


async def test_a_deferral_gives_the_attempt_back_and_starts_the_outage_clock_once(storage: Storage) -> None:
    [job] = await put(storage, NewJob("chat"))
    for i, now in enumerate((T0, T0 + 20, T0 + 40)):
        [running] = await claim(storage, now=now)
        assert running.attempts == 1 and running.lease_token is not None
        after = await storage.jobs.reschedule(
            job.id, running.lease_token, run_at=now + 20, error=f"open {i}", now=now + 1, deferred=True
        )
        assert after == running._replace(
            state=QUEUED,
            attempts=0,
            run_at=now + 20,
            last_error=f"open {i}",
            lease_token=None,
            lease_until=None,
            updated_at=now + 1,
            deferred_since=T0 + 1,  # since the first deferral
        )
        assert await storage.jobs.get(job.id) == after


async def test_a_rescheduled_job_holds_the_rest_of_its_group_back_as_long(storage: Storage) -> None:
    a1, a2, a3, _b1 = await put(
        storage,
        NewJob("chat", group_key="A"),
        NewJob("chat", group_key="A"),
        NewJob("voice", group_key="A", delay_s=80),
        NewJob("chat", group_key="B"),
    )
    running_a1, _ = await claim(storage, now=T0)
    [b2] = await put(storage, NewJob("chat", group_key="B"))
    assert running_a1.lease_token is not None
    await storage.jobs.reschedule(
        a1.id, running_a1.lease_token, run_at=T0 + 50, error="x", now=T0 + 1, deferred=False
    )
    later = [await storage.jobs.get(j.id) for j in (a2, a3, b2)]
    # a2 is not due before a1 (a3 was due later already); another group is left alone.
    assert [j.run_at for j in later if j is not None] == [T0 + 50, T0 + 80, T0]
    assert await storage.jobs.next_run_at(["chat", "voice"], after=T0 + 1) == T0 + 50
    assert await claim(storage, now=T0 + 49) == []  # b2 waits behind running b1


async def test_bury_ends_a_job_dead_and_frees_its_group(storage: Storage) -> None:
    a1, a2 = await put(storage, NewJob("chat", group_key="g"), NewJob("chat", group_key="g"))
    [running] = await claim(storage, now=T0)
    assert running.lease_token is not None
    dead = await storage.jobs.bury(a1.id, running.lease_token, error="PermanentError: no", now=T0 + 5)
    assert dead == running._replace(
        state=DEAD,
        finished_at=T0 + 5,
        updated_at=T0 + 5,
        last_error="PermanentError: no",
        lease_token=None,
        lease_until=None,
    )
    assert await storage.jobs.get(a1.id) == dead
    assert ids(await claim(storage, now=T0 + 6)) == [a2.id]


async def test_release_hands_jobs_back_with_their_attempt(storage: Storage) -> None:
    a, b, c = await put(storage, NewJob("chat"), NewJob("chat"), NewJob("chat"))
    ra, rb, rc = await claim(storage, now=T0)
    assert await storage.jobs.release_many([lease(ra), lease(rb), (c.id, WRONG)], now=T0 + 5) == 2
    assert await storage.jobs.get(a.id) == ra._replace(
        state=QUEUED, attempts=0, lease_token=None, lease_until=None, updated_at=T0 + 5
    )
    assert await storage.jobs.get(c.id) == rc
    assert await storage.jobs.release_many([], now=T0 + 5) == 0
    assert await finish(storage, [lease(ra)], now=T0 + 6) == set()  # its lease is gone
    again = await claim(storage, now=T0 + 6)
    assert ids(again) == [a.id, b.id] and [j.attempts for j in again] == [1, 1]


async def test_recover_requeues_expired_leases_and_buries_jobs_out_of_attempts(storage: Storage) -> None:
    x, y, z = await put(storage, NewJob("chat"), NewJob("chat"), NewJob("chat"), max_attempts=2)
    [rx] = await claim(storage, now=T0, limit=1)  # leased until T0 + 60
    [ry] = await claim(storage, now=T0 + 30, limit=1)  # until T0 + 90; z stays queued
    assert await storage.jobs.recover(now=T0 + 59, expired_before=T0 + 59, error="expired") == []
    [back] = await storage.jobs.recover(now=T0 + 70, expired_before=T0 + 70, error="expired")
    assert back == rx._replace(  # its attempt stays counted
        state=QUEUED, lease_token=None, lease_until=None, last_error="expired", updated_at=T0 + 70
    )
    assert await storage.jobs.get(x.id) == back
    assert await storage.jobs.get(y.id) == ry
    # A lease that ends at the cut-off has ended.
    assert ids(await storage.jobs.recover(now=T0 + 90, expired_before=T0 + 90, error="expired")) == [y.id]
    running = await claim(storage, now=T0 + 91)
    assert sorted((j.id, j.attempts) for j in running) == [(x.id, 2), (y.id, 2), (z.id, 1)]
    # After a crash: every running job, however long its lease; out of attempts, it ends dead.
    recovered = await storage.jobs.recover(now=T0 + 95, expired_before=float("inf"), error="interrupted")
    assert {j.id: (j.state, j.finished_at, j.lease_token, j.last_error) for j in recovered} == {
        x.id: (DEAD, T0 + 95, None, "interrupted"),
        y.id: (DEAD, T0 + 95, None, "interrupted"),
        z.id: (QUEUED, None, None, "interrupted"),
    }
    assert [await storage.jobs.get(j.id) for j in recovered] == recovered


# -- JobStore: checkpoints, the dead, stats, purge, next_run_at -----------------------------------


async def test_a_checkpoint_is_saved_under_the_lease_and_kept_across_attempts(storage: Storage) -> None:
    [job] = await put(storage, NewJob("chat"))
    [first] = await claim(storage, now=T0)
    assert first.lease_token is not None
    await storage.jobs.reschedule(
        job.id, first.lease_token, run_at=T0 + 5, error="open", now=T0 + 1, deferred=True
    )
    [second] = await claim(storage, now=T0 + 5)
    assert (second.deferred_since, second.checkpoint) == (T0 + 1, None)
    assert second.lease_token is not None
    data = {"answer": "Grüße, 世界 ✓", "parts": [1, 2.5, None, True], "usage": {"tokens": 7}}
    assert await storage.jobs.save_checkpoint(job.id, second.lease_token, data, now=T0 + 6) is True
    # Progress restarts the outage clock.
    assert await storage.jobs.get(job.id) == second._replace(
        checkpoint=data, updated_at=T0 + 6, deferred_since=None
    )
    assert await storage.jobs.save_checkpoint(job.id, second.lease_token, {"answer": "newer"}, now=T0 + 7)
    await storage.jobs.reschedule(
        job.id, second.lease_token, run_at=T0 + 10, error="send failed", now=T0 + 8, deferred=False
    )
    [third] = await claim(storage, now=T0 + 10)
    assert third.checkpoint == {"answer": "newer"}


async def test_latest_dead_is_newest_first(storage: Storage) -> None:
    early, a, b, c, _alive = await put(
        storage, NewJob("chat", dead_reason="unusable"), *(NewJob("chat") for _ in range(4))
    )
    ra, rb, rc, _ = await claim(storage, now=T0)
    for job, running, at in ((a, ra, T0 + 7), (b, rb, T0 + 5), (c, rc, T0 + 5)):
        assert running.lease_token is not None
        await storage.jobs.bury(job.id, running.lease_token, error="no", now=at)
    assert ids(await storage.jobs.latest_dead(10)) == [a.id, c.id, b.id, early.id]
    assert ids(await storage.jobs.latest_dead(2)) == [a.id, c.id]


async def test_a_revived_job_is_a_new_row_at_the_end_of_its_group_keeping_its_checkpoint(
    storage: Storage,
) -> None:
    a, b = await put(
        storage,
        NewJob("chat", {"n": "a"}, dedup_key="tg-update:1", group_key="chat:A", max_attempts=5),
        NewJob("chat", {"n": "b"}, group_key="chat:A"),
    )
    [running_a] = await claim(storage, now=T0)
    assert running_a.lease_token is not None
    await storage.jobs.save_checkpoint(a.id, running_a.lease_token, {"answer": "kept"}, now=T0 + 1)
    await storage.jobs.reschedule(
        a.id, running_a.lease_token, run_at=T0 + 2, error="x", now=T0 + 1, deferred=True
    )
    [running_a] = await claim(storage, now=T0 + 2)
    assert running_a.lease_token is not None
    await storage.jobs.bury(a.id, running_a.lease_token, error="refused", now=T0 + 3)
    [running_b] = await claim(storage, now=T0 + 4)
    assert running_b.id == b.id
    revived = await storage.jobs.revive(a.id, now=T0 + 5)
    assert revived is not None and revived.id > b.id
    assert revived == Job(
        id=revived.id,
        kind="chat",
        payload={"n": "a"},
        dedup_key="tg-update:1",
        group_key="chat:A",
        state=QUEUED,
        attempts=0,
        max_attempts=5,
        run_at=T0 + 5,
        created_at=T0 + 5,
        updated_at=T0 + 5,
        lease_token=None,
        lease_until=None,
        deferred_since=None,
        finished_at=None,
        last_error=None,
        checkpoint={"answer": "kept"},
    )
    assert await storage.jobs.get(a.id) is None
    assert await storage.jobs.by_dedup_key("tg-update:1") == revived
    assert await storage.jobs.latest_dead(10) == []
    assert await claim(storage, now=T0 + 6) == []  # not beside b: one job of a group at a time
    assert await finish(storage, [lease(running_b)], now=T0 + 7) == {b.id}
    [again] = await claim(storage, now=T0 + 8)
    assert again.id == revived.id
    # Only a dead job can be put back.
    for job_id in (revived.id, b.id, revived.id + 1000):
        assert await storage.jobs.revive(job_id, now=T0 + 9) is None
    assert await storage.jobs.get(revived.id) == again


async def test_stats_count_jobs_by_state_and_kind_and_age_the_oldest_waiting(storage: Storage) -> None:
    empty = await storage.jobs.stats(now=T0)
    assert (empty.counts, empty.oldest_waiting_age_s) == ({}, None)
    await put(storage, *(NewJob("chat") for _ in range(3)), now=T0)
    await put(storage, NewJob("voice", delay_s=100), now=T0 + 5)
    done, dead, _running = await claim(storage, {"chat": 3}, now=T0 + 6)
    await finish(storage, [lease(done)], now=T0 + 7)
    await storage.jobs.bury(*lease(dead), error="bad", now=T0 + 7)
    stats = await storage.jobs.stats(now=T0 + 10)
    assert stats.counts == {
        ("done", "chat"): 1,
        ("dead", "chat"): 1,
        ("running", "chat"): 1,
        ("queued", "voice"): 1,
    }
    assert stats.oldest_waiting_age_s == 5  # the voice job, queued at T0 + 5; running ones wait no more


async def test_purge_deletes_finished_jobs_older_than_their_cut_off(storage: Storage) -> None:
    await put(storage, *(NewJob("chat") for _ in range(4)), now=T0 - 1000)
    done, dead, _running = await claim(storage, {"chat": 3}, now=T0)
    await finish(storage, [lease(done)], now=T0 + 10)
    await storage.jobs.bury(*lease(dead), error="no", now=T0 + 20)
    await put(storage, NewJob("chat", dead_reason="unusable"), now=T0 + 30)
    assert await storage.jobs.purge(done_before=T0 + 10, dead_before=T0 + 20) == PurgeResult(0, 0)
    assert await storage.jobs.purge(done_before=T0 + 11, dead_before=T0 + 21) == PurgeResult(1, 1)
    assert await storage.jobs.get(done.id) is None and await storage.jobs.get(dead.id) is None
    assert await storage.jobs.purge(done_before=T0 + 1e9, dead_before=T0 + 1e9) == PurgeResult(0, 1)
    assert (await storage.jobs.stats(now=T0)).by_state() == {"running": 1, "queued": 1}


async def test_next_run_at_is_the_earliest_later_run_at_of_queued_jobs_of_these_kinds(
    storage: Storage,
) -> None:
    await put(storage, NewJob("chat"), NewJob("chat", delay_s=30), NewJob("voice", delay_s=20))
    await claim(storage, {"chat": 1}, now=T0)  # running now: no longer waits for a time
    assert await storage.jobs.next_run_at(["chat"], after=T0 - 100) == T0 + 30
    assert await storage.jobs.next_run_at(["chat", "voice"], after=T0) == T0 + 20
    assert await storage.jobs.next_run_at(["voice"], after=T0 + 20) is None  # due: claim's business
    assert await storage.jobs.next_run_at(["other"], after=T0) is None
    assert await storage.jobs.next_run_at([], after=T0) is None


# -- ConversationStore ----------------------------------------------------------------------------


async def test_history_is_the_last_n_messages_of_this_chat_oldest_first(storage: Storage) -> None:
    store = storage.conversations
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


async def test_history_can_leave_out_the_exchange_a_retry_redoes(storage: Storage) -> None:
    store = storage.conversations
    for i in (1, 2, 3):
        await store.add_exchange(1, job_id=i, user_text=f"q{i}", answer=f"a{i}", now=float(i))
    assert [t.content for t in await store.history(1, limit=4, since=0, leave_out_job=3)] == [
        "q1",
        "a1",
        "q2",
        "a2",
    ]
    assert [t.content for t in await store.history(1, limit=10, since=0, leave_out_job=2)] == [
        "q1",
        "a1",
        "q3",
        "a3",
    ]


async def test_expired_messages_are_left_out_and_purged(storage: Storage) -> None:
    store = storage.conversations
    await store.add_exchange(1, job_id=1, user_text="old", answer="old answer", now=0.0)
    await store.add_exchange(1, job_id=2, user_text="new", answer="new answer", now=8 * DAY)
    recent = await store.history(1, limit=10, since=8 * DAY - 7 * DAY)
    assert [t.content for t in recent] == ["new", "new answer"]
    assert len(await store.history(1, limit=10, since=8 * DAY)) == 2  # "since" is inclusive
    assert await store.purge_expired(before=0.0) == 0  # so is keeping: "before" is strict
    assert await store.purge_expired(before=1 * DAY) == 2
    assert [t.content for t in await store.history(1, limit=10, since=0)] == ["new", "new answer"]


async def test_a_retried_job_stores_its_exchange_once(storage: Storage) -> None:
    store = storage.conversations
    for _ in range(3):
        await store.add_exchange(5, job_id=42, user_text="hi", answer="hello", now=1.0)
    assert len(await store.history(5, limit=10, since=0)) == 2
    await store.add_exchange(5, job_id=42, user_text="changed", answer="changed", now=2.0)
    assert [t.content for t in await store.history(5, limit=10, since=0)] == ["hi", "hello"]


async def test_a_nul_character_in_free_text_is_stored_not_refused(storage: Storage) -> None:
    # SQLite keeps a NUL; PostgreSQL's text refuses one, so that backend stores U+FFFD instead.
    # Either way the message, the error and the setting are kept, and nothing else changes.
    kept = ("a\x00b", "a\ufffdb")
    await storage.conversations.add_exchange(1, job_id=1, user_text="a\x00b", answer="a\x00b", now=T0)
    assert [t.content in kept for t in await storage.conversations.history(1, limit=10, since=0)] == [
        True
    ] * 2
    [job] = await put(storage, NewJob("chat", {"text": "a\x00b"}))
    assert (await storage.jobs.get(job.id)).payload == {"text": "a\x00b"}  # JSON escapes it
    [running] = await claim(storage)
    buried = await storage.jobs.bury(running.id, running.lease_token or "", error="bad \x00 byte", now=T0)
    assert buried is not None and buried.last_error in ("bad \x00 byte", "bad \ufffd byte")
    await storage.kv.put("k", "v\x00")
    assert await storage.kv.get("k") in ("v\x00", "v\ufffd")
    await storage.prefs.put(1, ChatPrefs(persona="p\x00"), now=T0)
    assert (await storage.prefs.get(1)).persona in ("p\x00", "p\ufffd")


async def test_a_photo_question_is_remembered_with_its_images_references(storage: Storage) -> None:
    store = storage.conversations
    await store.add_exchange(
        1, job_id=1, user_text="what is this?", answer="a cat", now=1.0, user_images=["AgA1", "AgA2"]
    )
    await store.add_exchange(1, job_id=2, user_text="and its colour?", answer="grey", now=2.0)
    assert await store.history(1, limit=10, since=0) == [
        Turn("user", "what is this?", ("AgA1", "AgA2")),
        Turn("assistant", "a cat"),
        Turn("user", "and its colour?"),
        Turn("assistant", "grey"),
    ]
    await store.add_exchange(
        1, job_id=3, user_text="and this?", answer="a dog", now=3.0, user_images=["AgA3"]
    )
    assert await store.last_exchange(1) == (3, Turn("user", "and this?", ("AgA3",)))


async def test_a_transcript_has_times_and_images_and_only_this_chat(storage: Storage) -> None:
    store = storage.conversations
    await store.add_exchange(1, job_id=1, user_text="old", answer="old answer", now=1.0)
    await store.add_exchange(1, job_id=2, user_text="see", answer="a cat", now=5.0, user_images=["AgA"])
    await store.add_exchange(2, job_id=3, user_text="elsewhere", answer="x", now=6.0)
    assert await store.transcript(1, since=2.0, limit=10) == [
        StoredTurn("user", "see", 5.0, ("AgA",)),
        StoredTurn("assistant", "a cat", 5.0, ()),
    ]
    assert [t.content for t in await store.transcript(1, since=0, limit=3)] == ["old answer", "see", "a cat"]


async def test_an_exchange_can_take_the_place_of_an_earlier_jobs(storage: Storage) -> None:
    store = storage.conversations
    await store.add_exchange(1, job_id=1, user_text="q1", answer="a1", now=1.0)
    await store.add_exchange(1, job_id=2, user_text="q2", answer="a2", now=2.0)
    for _ in range(2):  # the /retry job itself retried: still once
        await store.add_exchange(1, job_id=3, user_text="q2", answer="b2", now=3.0, replaces_job=2)
    assert [t.content for t in await store.history(1, limit=10, since=0)] == ["q1", "a1", "q2", "b2"]
    assert await store.last_exchange(1) == (3, Turn("user", "q2"))


async def test_last_exchange_is_this_chats_latest_question(storage: Storage) -> None:
    store = storage.conversations
    assert await store.last_exchange(1) is None
    await store.add_exchange(1, job_id=1, user_text="first", answer="x", now=1.0)
    await store.add_exchange(1, job_id=2, user_text="second", answer="y", now=2.0)
    await store.add_exchange(2, job_id=3, user_text="elsewhere", answer="z", now=3.0)
    assert await store.last_exchange(1) == (2, Turn("user", "second"))
    await store.reset(1)
    assert await store.last_exchange(1) is None
    assert await store.last_exchange(2) == (3, Turn("user", "elsewhere"))


async def test_reset_deletes_only_this_chat(storage: Storage) -> None:
    store = storage.conversations
    await store.add_exchange(1, job_id=1, user_text="a", answer="b", now=1.0)
    await store.add_exchange(2, job_id=2, user_text="c", answer="d", now=1.0)
    assert await store.reset(1) == 2
    assert await store.history(1, limit=10, since=0) == []
    assert len(await store.history(2, limit=10, since=0)) == 2
    assert await store.reset(1) == 0


# -- UsageStore ---------------------------------------------------------------------------------


async def test_usage_is_recorded_once_per_billing_key_and_summed(storage: Storage) -> None:
    store = storage.usage
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


async def test_summaries_of_nothing_are_zero(storage: Storage) -> None:
    assert await storage.usage.summary(since=0) == UsageSummary()
    assert await storage.usage.summary(since=0, user_id=1) == UsageSummary()
    assert await storage.usage.top_users(since=0) == []
    assert await storage.usage.purge(before=T0) == 0


async def test_generated_pictures_are_counted(storage: Storage) -> None:
    picture = Usage("image", "gpt-image-1", images=1, cost_usd=0.04)
    await storage.usage.record(picture, key="image:1", job_id=1, chat_id=5, user_id=7, now=1.0)
    await storage.usage.record(picture, key="image:1", job_id=1, chat_id=5, user_id=7, now=2.0)  # once
    await storage.usage.record(picture, key="image:2", job_id=2, chat_id=5, user_id=7, now=3.0)
    assert await storage.usage.summary(since=0, user_id=7) == UsageSummary(2, 0, 0, 0.0, 0.08, 2)


async def test_top_users_rank_by_cost_then_by_requests(storage: Storage) -> None:
    store = storage.usage
    cheap, dear = Usage("chat", "m", cost_usd=0.25), Usage("chat", "m", cost_usd=0.5)
    calls = [
        (1, cheap),
        (2, cheap),
        (2, cheap),
        (3, dear),
        (4, cheap),
        (None, Usage("chat", "m", cost_usd=8)),
    ]
    for n, (user_id, usage) in enumerate(calls):
        await store.record(usage, key=f"k{n}", job_id=None, chat_id=None, user_id=user_id, now=T0 + n)
    # 2 and 3 spent alike (2 made more requests), 1 and 4 too (by id); a call with no user is nobody's.
    assert [user for user, _ in await store.top_users(since=T0)] == [2, 3, 1, 4]
    assert [user for user, _ in await store.top_users(since=T0, limit=2)] == [2, 3]
    assert [user for user, _ in await store.top_users(since=T0 + 3)] == [3, 4]
    assert (await store.summary(since=T0)).cost_usd == 9.5
    assert await store.purge(before=T0 + 5) == 5  # "before" is strict


# -- KeyValueStore ------------------------------------------------------------------------------


async def test_put_get_and_delete(storage: Storage) -> None:
    kv = storage.kv
    assert await kv.get(OFFSET_KEY) is None
    await kv.put(OFFSET_KEY, "41")
    await kv.put(OFFSET_KEY, "42")  # overwrites
    await kv.put(HEALTH_PROBE_KEY, "Grüße ✓")
    assert (await kv.get(OFFSET_KEY), await kv.get(HEALTH_PROBE_KEY)) == ("42", "Grüße ✓")
    await kv.delete(OFFSET_KEY)
    await kv.delete(OFFSET_KEY)  # deleting what is not there is no error
    assert (await kv.get(OFFSET_KEY), await kv.get(HEALTH_PROBE_KEY)) == (None, "Grüße ✓")


async def test_add_stores_only_when_the_key_is_new(storage: Storage) -> None:
    kv = storage.kv
    assert await kv.add("once", "first") is True
    assert await kv.add("once", "second") is False
    assert await kv.get("once") == "first"
    await kv.delete("once")
    assert await kv.add("once", "third") is True
    # Atomic: of many adds at once, exactly one stores, and its value is the one kept.
    stored = await asyncio.gather(*(kv.add("race", str(i)) for i in range(20)))
    assert stored.count(True) == 1
    assert await kv.get("race") == str(stored.index(True))


async def test_delete_before_removes_the_older_dated_keys_of_one_prefix(storage: Storage) -> None:
    kv = storage.kv
    dates = ["2024-12-31", "2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"]
    for date in dates:
        await kv.put(cost_alert_key(date), "1.00")
    for other in (OFFSET_KEY, HEALTH_PROBE_KEY, COST_ALERT_PREFIX.rstrip(":"), "zzz"):
        await kv.put(other, "kept")
    assert await kv.delete_before(COST_ALERT_PREFIX, cost_alert_key("2025-01-03")) == 3
    assert [await kv.get(cost_alert_key(date)) for date in dates] == [None, None, None, "1.00", "1.00"]
    for other in (OFFSET_KEY, HEALTH_PROBE_KEY, COST_ALERT_PREFIX.rstrip(":"), "zzz"):
        assert await kv.get(other) == "kept"
    assert await kv.delete_before(COST_ALERT_PREFIX, cost_alert_key("2025-01-03")) == 0


# -- Storage --------------------------------------------------------------------------------------


async def test_keys_are_listed_by_prefix_in_key_order(storage: Storage) -> None:
    kv = storage.kv
    for key in ("peer:b", "peer:a", "peer", "peers:x", "pee", "other:peer:c", "peer:%", "peer:_z"):
        await kv.put(key, key.upper())
    assert await kv.with_prefix("peer:") == {
        "peer:%": "PEER:%",
        "peer:_z": "PEER:_Z",
        "peer:a": "PEER:A",
        "peer:b": "PEER:B",
    }
    assert list(await kv.with_prefix("peer:", limit=2)) == ["peer:%", "peer:_z"]
    assert await kv.with_prefix("nothing:") == {}


async def test_description_says_where_the_data_lives(storage: Storage) -> None:
    assert isinstance(storage.description, str) and storage.description.strip()


async def test_maintain_is_safe_at_any_time_and_keeps_the_data(storage: Storage) -> None:
    await storage.maintain()  # empty
    await put(storage, NewJob("chat"), NewJob("chat"))
    [running] = await claim(storage, limit=1)
    await storage.conversations.add_exchange(1, job_id=running.id, user_text="q", answer="a", now=T0)
    await storage.kv.put(OFFSET_KEY, "7")
    await storage.maintain()
    await storage.maintain()
    assert await storage.jobs.get(running.id) == running
    assert (await storage.jobs.stats(now=T0)).by_state() == {"running": 1, "queued": 1}
    assert len(await storage.conversations.history(1, limit=10, since=0)) == 2
    assert await storage.kv.get(OFFSET_KEY) == "7"


async def test_the_data_survives_a_restart(open_backend: Opener, tmp_path: Path) -> None:
    first = await open_backend(tmp_path)
    try:
        await put(first, NewJob("chat", {"text": "hello"}, dedup_key="k1", group_key="g"))
        await put(first, NewJob("chat", {"text": "again"}, dedup_key="k2", group_key="g"))
        [running] = await claim(first, limit=1)
        await first.conversations.add_exchange(1, job_id=running.id, user_text="q", answer="a", now=T0)
        await first.usage.record(
            Usage("chat", "m", cost_usd=0.5), key="u", job_id=1, chat_id=1, user_id=1, now=T0
        )
        await first.kv.put(OFFSET_KEY, "42")
    finally:
        await first.close()
    again = await open_backend(tmp_path)
    try:
        assert await again.jobs.get(running.id) == running  # recovering it is the queue's business
        [known] = await again.jobs.insert_many([NewJob("chat", dedup_key="k2")], max_attempts=3, now=T0)
        assert not known.created and known.job.payload == {"text": "again"}
        assert await again.conversations.last_exchange(1) == (running.id, Turn("user", "q"))
        assert (await again.usage.summary(since=0)).cost_usd == 0.5
        assert await again.kv.get(OFFSET_KEY) == "42"
    finally:
        await again.close()
