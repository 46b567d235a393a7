"""The durable job queue's API and policy: enqueue with dedup, claim with leases, and what
happens after an attempt (done, retry with 2/4/8 s backoff, defer, dead). Runs no jobs itself."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loguru import logger

from botcore.clock import Clock
from botcore.errors import (
    Cause,
    LeaseLostError,
    NotYet,
    PermanentError,
    StorageUnavailable,
    TransientError,
    UpstreamUnavailable,
)
from botcore.group_commit import GroupCommit
from botcore.models import Enqueued, Job, NewJob, PurgeResult, QueueStats
from botcore.storage import JobStore, Lease

_MAX_ERROR_CHARS = 500


def _leases(jobs: Sequence[Job]) -> list[Lease]:
    """The (id, lease token) pairs that fence writes to these claimed jobs."""
    return [(job.id, job.lease_token) for job in jobs if job.lease_token is not None]


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_MAX_ERROR_CHARS]


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        *,
        clock: Clock,
        lease_s: float = 60.0,
        max_attempts: int = 4,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
        jitter: float = 0.1,
        defer_s: float = 5.0,
        outage_max_wait_s: float = 600.0,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self.clock = clock
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._jitter = jitter
        self._defer_s = defer_s
        self._outage_max_wait_s = outage_max_wait_s
        self._rng = rng or random.Random()
        # Set on every enqueue and finish, so an idle worker looks at once instead of polling.
        self.wake = asyncio.Event()
        self._log = logger.bind(component="queue")
        # Calls that arrive while a write is under way share the next one (group commit).
        self._commits = GroupCommit(self._insert)

    # -- producers -------------------------------------------------------------------------

    async def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        dedup_key: str | None = None,
        group_key: str | None = None,
        delay_s: float = 0.0,
        max_attempts: int | None = None,
    ) -> Enqueued:
        """Queue a job. With a ``dedup_key`` already known, returns that job and queues nothing.
        Returns once the job is committed."""
        new = NewJob(kind, dict(payload or {}), dedup_key, group_key, delay_s, max_attempts)
        [result] = await self.enqueue_many([new])
        return result

    async def enqueue_many(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Queue several jobs in one transaction: all are stored, or none. Returns once they are
        committed. Calls made while a write is under way share the next write, one round trip
        and one commit for all of them; one call's refused data fails that call alone."""
        return await self._commits.submit(new_jobs)

    async def _insert(self, new_jobs: Sequence[NewJob]) -> list[Enqueued]:
        results = await self._store.insert_many(
            new_jobs, max_attempts=self.max_attempts, now=self.clock.now()
        )
        if any(r.created for r in results):
            self.wake.set()
        return results

    # -- workers ---------------------------------------------------------------------------

    async def claim(self, wants: Mapping[str, int], limit: int) -> list[Job]:
        """Lease up to ``wants[kind]`` ready jobs per kind, ``limit`` in all."""
        _, jobs = await self.finish_and_claim([], wants, limit)
        return jobs

    async def complete(self, job: Job) -> bool:
        """Mark a claimed job done. False when its lease had been lost (a newer attempt owns it)."""
        done, _ = await self.finish_and_claim([job], {}, 0)
        return job.id in done

    async def finish_and_claim(
        self, done: Sequence[Job], wants: Mapping[str, int], limit: int
    ) -> tuple[set[int], list[Job]]:
        """Record finished jobs and lease new ones in one statement: the worker's hot path, one
        commit per batch. Returns the ids of ``done`` whose lease still held, and the new jobs."""
        leases = _leases(done)
        finished, jobs = await self._store.finish_and_claim(
            leases, wants, limit=limit, now=self.clock.now(), lease_s=self.lease_s
        )
        if finished:
            self.wake.set()  # their groups' next jobs may start now
        return finished, jobs

    async def next_run_at(self, kinds: Iterable[str], *, after: float | None = None) -> float | None:
        """When a job of these kinds next comes due after ``after`` (default: now); None when
        none is waiting for a time."""
        return await self._store.next_run_at(kinds, after=self.clock.now() if after is None else after)

    async def fail(self, job: Job, exc: BaseException) -> Job | None:
        """Decide what a failed attempt leads to. Returns the job in its new state,
        or None when the lease had been lost and a newer attempt owns the job."""
        assert job.lease_token is not None, "only a claimed job can fail"
        now = self.clock.now()
        error = describe_error(exc)
        if isinstance(exc, PermanentError):
            return await self._store.bury(job.id, job.lease_token, error=error, now=now)
        if isinstance(exc, UpstreamUnavailable | NotYet) or self._waits_for_upstream(job, exc):
            # Read afresh: a checkpoint saved during this attempt restarted the outage clock.
            current = await self._store.get(job.id)
            since = job.deferred_since if current is None else current.deferred_since
            waited = 0.0 if since is None else now - since
            remaining = self._outage_max_wait_s - waited
            if remaining <= 0:
                error = f"upstream unavailable for over {self._outage_max_wait_s:g} s: {error}"
                return await self._store.bury(job.id, job.lease_token, error=error, now=now)
            # Never sooner than the upstream asked (one last try may then pass the maximum), but
            # our own open circuit is only waited for up to the maximum: it would refuse anyway.
            retry_after = getattr(exc, "retry_after", None)
            delay = retry_after if retry_after else min(self._defer_s, remaining)
            if getattr(exc, "cause", None) is Cause.CIRCUIT_OPEN:
                delay = min(delay, remaining)
            return await self._store.reschedule(
                job.id, job.lease_token, run_at=now + delay, error=error, now=now, deferred=True
            )
        if job.attempts >= job.max_attempts:
            return await self._store.bury(job.id, job.lease_token, error=error, now=now)
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        delay = retry_after if retry_after is not None else self.backoff(job.attempts)
        delay += self._rng.uniform(0.0, self._jitter * delay)
        return await self._store.reschedule(
            job.id, job.lease_token, run_at=now + delay, error=error, now=now, deferred=False
        )

    def will_retry(self, job: Job, exc: BaseException) -> bool:
        """Whether this failure leads to another attempt (short of the outage limit)."""
        if isinstance(exc, PermanentError):
            return False
        return (
            job.attempts < job.max_attempts
            or isinstance(exc, UpstreamUnavailable | NotYet)
            or self._waits_for_upstream(job, exc)
        )

    @staticmethod
    def _waits_for_upstream(job: Job, exc: BaseException) -> bool:
        """An upstream that keeps failing (5xx, unreachable, timeouts) for other jobs too, after
        this job's last attempt: the job then waits for it, like during an open circuit, rather
        than drop an accepted message (the breaker soon keeps the calls away). A request that
        fails alone (``shared`` unset: other calls succeed) ends after its attempts, so one
        prompt that always fails cannot hold its chat for OUTAGE_MAX_WAIT_S."""
        return (
            isinstance(exc, TransientError)
            and exc.shared
            and exc.cause in (Cause.UNAVAILABLE, Cause.TIMEOUT)
            and job.attempts >= job.max_attempts
        )

    def backoff(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed try: 2, 4, 8 s … (before jitter)."""
        return min(self._backoff_base_s * 2 ** (max(attempts, 1) - 1), self._backoff_max_s)

    async def release(self, jobs: Sequence[Job]) -> int:
        """Hand unfinished jobs back without spending their attempt (shutdown)."""
        leases = _leases(jobs)
        return await self._store.release_many(leases, now=self.clock.now())

    async def renew(self, jobs: Sequence[Job]) -> set[int]:
        """Extend the leases of running jobs; returns the ids whose lease was still ours."""
        now = self.clock.now()
        leases = _leases(jobs)
        return await self._store.renew(leases, lease_until=now + self.lease_s, now=now)

    async def recover_expired(self) -> list[Job]:
        """Requeue running jobs whose lease ran out (their worker stalled or died)."""
        now = self.clock.now()
        return await self._recover(now, now, "lease expired: the worker stalled or died mid-job")

    async def recover_after_crash(self) -> list[Job]:
        """At startup, with the data directory locked: every 'running' job belongs to a process
        that died, so requeue all of them, however long their lease had left."""
        now = self.clock.now()
        return await self._recover(now, float("inf"), "interrupted: the previous process stopped mid-job")

    async def _recover(self, now: float, expired_before: float, error: str) -> list[Job]:
        jobs = await self._store.recover(now=now, expired_before=expired_before, error=error)
        if jobs:
            self._log.warning("recovered {} interrupted job(s): {}", len(jobs), error)
            self.wake.set()
        return jobs

    async def save_checkpoint(self, job: Job, data: Mapping[str, Any]) -> None:
        """Keep progress across attempts (e.g. an answer already generated). Fenced by the lease:
        raises ``LeaseLostError`` when a newer attempt owns the job, so this one stops. A
        database that refuses for a moment (another program holding its lock) is waited for, up
        to about half the lease: the progress in hand (an answer the provider billed) is worth
        more than the attempt that would otherwise make it again."""
        assert job.lease_token is not None, "only a claimed job can save progress"
        deadline = self.clock.now() + self.lease_s / 2
        pause = 0.5
        while True:
            try:
                saved = await self._store.save_checkpoint(job.id, job.lease_token, data, now=self.clock.now())
            except Exception as exc:
                if not isinstance(exc, StorageUnavailable) or self.clock.now() + pause > deadline:
                    raise
                self._log.warning("job {}: the database refused its progress ({}); trying again", job.id, exc)
                await self.clock.wait(asyncio.Event(), pause)
                pause = min(pause * 2, 4.0)
                continue
            if not saved:
                raise LeaseLostError("lost the job's lease; a newer attempt carries on")
            return

    # -- operators -------------------------------------------------------------------------

    async def get(self, job_id: int) -> Job | None:
        return await self._store.get(job_id)

    async def by_dedup_key(self, key: str) -> Job | None:
        return await self._store.by_dedup_key(key)

    async def queued_in_group(self, group_key: str, kind: str) -> list[Job]:
        return await self._store.queued_in_group(group_key, kind)

    async def latest_dead(self, limit: int = 10) -> list[Job]:
        return await self._store.latest_dead(limit)

    async def revive(self, job_id: int) -> Job | None:
        """Put a dead job back (an operator's ``/retry``); it runs again with fresh attempts."""
        job = await self._store.revive(job_id, now=self.clock.now())
        if job is not None:
            self.wake.set()
        return job

    async def stats(self) -> QueueStats:
        return await self._store.stats(now=self.clock.now())

    async def purge(self, *, done_after_s: float, dead_after_s: float) -> PurgeResult:
        now = self.clock.now()
        return await self._store.purge(done_before=now - done_after_s, dead_before=now - dead_after_s)
