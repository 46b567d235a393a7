"""Runs queued jobs: one dispatcher that records finished jobs and claims new ones in a single
statement per batch and wakes on enqueue, a heartbeat that renews leases, and graceful shutdown.
It takes a table of job kinds; it knows no service."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from loguru import logger

from botcore.errors import JobError, NotYet, StorageUnavailable, UpstreamUnavailable
from botcore.jobqueue import JobQueue, describe_error
from botcore.models import Job, JobState

Handler = Callable[[Job], Awaitable[None]]
# Told of every attempt's end: the job, "done" or "failed", seconds it ran, seconds it had
# waited in the queue after it was due.
Observer = Callable[[Job, str, float, float], None]
# Told once when a job fails for good, with the error that ended it (None: it never finished,
# e.g. it crashed the process on every attempt).
DeadHandler = Callable[[Job, BaseException | None], Awaitable[None]]
_PAUSE_FIRST_S, _PAUSE_MAX_S = 1.0, 10.0  # after a database error: 1 s, doubling to 10 s
_CANCEL_WAIT_S = 2.0  # at least this long for cancelled handlers to finish at shutdown


@dataclass(frozen=True, slots=True)
class JobKind:
    run: Handler  # must be safe to run twice: a crash between its work and our record re-runs it
    on_dead: DeadHandler | None = None  # e.g. to tell the user why, politely
    concurrency: int | None = None  # at most this many of this kind at once (None: the worker's)


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        kinds: Mapping[str, JobKind],
        *,
        concurrency: int = 32,
        grace_s: float = 10.0,
        idle_poll_s: float = 5.0,
        observe: Observer | None = None,
        alone: bool = True,  # no other process works this queue (SQLite, under its lockfile)
    ) -> None:
        self._queue = queue
        self._alone = alone
        self._kinds = dict(kinds)
        self._concurrency = concurrency
        self._grace_s = grace_s
        self._idle_poll_s = idle_poll_s  # safety net only: enqueues and finished jobs wake us
        self._observe = observe
        self._leased: dict[int, Job] = {}  # every job we hold a lease on, until its outcome is written
        self._tasks: dict[int, asyncio.Task[None]] = {}  # handler tasks (a failure is recorded in them)
        self._by_kind: Counter[str] = Counter()  # handlers executing, per kind
        self._succeeded: list[Job] = []  # handlers returned; the dispatcher writes them with its next claim
        self._stopping = asyncio.Event()
        self._alive = False
        self._log = logger.bind(component="worker")

    @property
    def alive(self) -> bool:
        """Dispatching jobs (between start and the beginning of shutdown)."""
        return self._alive

    @property
    def running(self) -> int:
        """Jobs held by this worker: executing, or with their outcome still being written."""
        return len(self._leased)

    def request_stop(self) -> None:
        self._stopping.set()
        self._queue.wake.set()

    async def run(self) -> None:
        """Run until ``request_stop``. Alone (the app holds the data-directory lock), every job
        left 'running' belongs to a dead process and is recovered at once; with other processes
        alive, only the jobs whose lease ran out are (a live process keeps renewing its own)."""
        await self._recover()
        heartbeat = asyncio.create_task(self._heartbeat())
        self._alive = True
        try:
            await self._dispatch()
        finally:
            self._alive = False
            self._stopping.set()
            heartbeat.cancel()
            # gather, not suppress(CancelledError): a cancel aimed at run() itself still propagates.
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._shutdown()

    async def _recover(self) -> None:
        pause = _PAUSE_FIRST_S
        while not self._stopping.is_set():
            try:
                queue = self._queue
                await self._notify_dead(
                    await (queue.recover_after_crash() if self._alone else queue.recover_expired())
                )
                return
            except Exception as exc:
                self._database_failed(exc, f"could not recover interrupted jobs; retrying in {pause:g} s")
                await self._queue.clock.wait(self._stopping, pause)
                pause = min(pause * 2, _PAUSE_MAX_S)

    async def _dispatch(self) -> None:
        clock, wake = self._queue.clock, self._queue.wake
        pause = _PAUSE_FIRST_S
        while not self._stopping.is_set():
            wake.clear()
            try:
                timeout = await self._dispatch_once()
                pause = _PAUSE_FIRST_S
            except Exception as exc:
                # The database refused (locked by another program, disk full…): nothing is lost,
                # since finished jobs stay pending here and leases protect the rest. Back off.
                self._database_failed(exc, f"could not claim or record jobs; retrying in {pause:g} s")
                timeout, pause = pause, min(pause * 2, _PAUSE_MAX_S)
                wake.clear()
            if timeout is not None and not wake.is_set():
                await clock.wait(wake, timeout)

    def _database_failed(self, exc: Exception, what: str) -> None:
        """A database that refuses for now is expected (a backup holding a lock, a full disk):
        one line, no traceback. Anything else is a bug worth its traceback."""
        if isinstance(exc, StorageUnavailable):
            self._log.warning("{}: {}", what, exc)
        else:
            self._log.opt(exception=exc).error(what)

    async def _dispatch_once(self) -> float | None:
        """One round: record finished jobs and claim new ones. Returns how long to wait for a
        wake-up before the next round (None: go again at once)."""
        claimed_at = self._queue.clock.now()  # no later than the claim's own "now"
        wants = self._wants()
        if wants or self._succeeded:
            free = self._concurrency - len(self._tasks)
            jobs = await self._finish_and_claim(wants, free)
            if jobs and len(jobs) == min(free, sum(wants.values())):
                return None  # a full batch: there may be more ready right now
        timeout = self._idle_poll_s
        wants = self._wants()
        if wants:
            # From the claim's time, not now: a job that came due in between is not missed.
            next_at = await self._queue.next_run_at(wants, after=claimed_at)
            if next_at is not None:
                timeout = min(timeout, max(0.0, next_at - self._queue.clock.now()))
        return timeout

    async def _finish_and_claim(self, wants: Mapping[str, int], free: int) -> list[Job]:
        """Write the outcome of jobs whose handler returned, and claim new ones, in one statement."""
        succeeded, self._succeeded = self._succeeded, []
        try:
            finished, jobs = await self._queue.finish_and_claim(succeeded, wants, free)
        except BaseException:
            self._succeeded[:0] = succeeded  # not written: try again with the next batch
            raise
        for job in succeeded:
            del self._leased[job.id]
            if job.id not in finished:
                self._log.warning("job {} finished after losing its lease; a newer attempt owns it", job.id)
        for job in jobs:
            self._start(job)
        return jobs

    def _wants(self) -> dict[str, int]:
        free = self._concurrency - len(self._tasks)
        if free <= 0:
            return {}
        wants = {}
        for name, kind in self._kinds.items():
            room = (kind.concurrency or self._concurrency) - self._by_kind[name]
            if room > 0:
                wants[name] = min(room, free)
        return wants

    def _start(self, job: Job) -> None:
        self._by_kind[job.kind] += 1
        self._leased[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._execute(job))

    async def _execute(self, job: Job) -> None:
        kind = self._kinds[job.kind]
        clock = self._queue.clock
        started = clock.now()
        try:
            with logger.contextualize(job_id=job.id, kind=job.kind, attempt=job.attempts):
                try:
                    await kind.run(job)
                except Exception as exc:
                    self._observed(job, "failed", started)
                    try:
                        await self._after_failure(job, exc)
                    except Exception as record_exc:
                        self._database_failed(
                            record_exc,
                            f"could not record how job {job.id} failed; it runs again once its lease ends",
                        )
                    self._leased.pop(job.id, None)
                else:
                    self._observed(job, "done", started)
                    self._succeeded.append(job)
        finally:
            # Reached on cancellation too; the job then stays leased until shutdown releases it.
            # A newer attempt of the same job may have started here after this one lost its
            # lease: leave its entry alone.
            if self._tasks.get(job.id) is asyncio.current_task():
                del self._tasks[job.id]
            self._by_kind[job.kind] -= 1
            self._queue.wake.set()

    def _observed(self, job: Job, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(job, outcome, self._queue.clock.now() - started, max(0.0, started - job.run_at))

    async def _after_failure(self, job: Job, exc: Exception) -> None:
        if isinstance(exc, StorageUnavailable):
            self._log.warning("job {} ({}): the database refused: {}", job.id, job.kind, exc)
        elif not isinstance(exc, JobError):
            # A bug or an untranslated error: log it whole (variables are never shown) and retry.
            self._log.opt(exception=exc).error("job {} ({}) raised unexpectedly", job.id, job.kind)
        after = await self._queue.fail(job, exc)
        self._leased.pop(job.id, None)  # the outcome is written: no more lease renewals
        if after is None:
            self._log.warning("job {} failed after losing its lease: {}", job.id, describe_error(exc))
        elif after.state is JobState.DEAD:
            self._log.error(
                "job {} ({}) is dead after {} attempt(s): {}",
                job.id,
                job.kind,
                after.attempts,
                after.last_error,
            )
            await self._notify_dead([after], exc)
        else:
            wait = max(0.0, after.run_at - self._queue.clock.now())  # recording may have taken a while
            # A wait (for an upstream, for another job) is expected; a failed attempt is worth a warning.
            level = "INFO" if isinstance(exc, UpstreamUnavailable | NotYet) else "WARNING"
            self._log.log(
                level, "job {} ({}) will run again in {:.1f} s: {}", job.id, job.kind, wait, after.last_error
            )

    async def _notify_dead(self, jobs: Iterable[Job], exc: BaseException | None = None) -> None:
        for job in jobs:
            kind = self._kinds.get(job.kind)
            if job.state is not JobState.DEAD or kind is None or kind.on_dead is None:
                continue
            try:
                await kind.on_dead(job, exc)
            except Exception as hook_exc:
                self._log.opt(exception=hook_exc).error("on_dead hook of job {} failed", job.id)

    async def _heartbeat(self) -> None:
        clock, interval = self._queue.clock, self._queue.lease_s / 3
        beat_at = clock.now() + interval
        while not self._stopping.is_set():
            await clock.wait(self._stopping, beat_at - clock.now())
            if self._stopping.is_set():
                return
            # Fixed schedule: time that passed while renewing still counts toward the next beat.
            beat_at = max(beat_at + interval, clock.now())
            try:
                jobs = list(self._leased.values())
                kept = await self._queue.renew(jobs)
                for job in jobs:
                    if job.id not in kept and job.id in self._leased:
                        self._log.warning("lost the lease of job {}; its result will be discarded", job.id)
                await self._notify_dead(await self._queue.recover_expired())
            except Exception as exc:
                self._database_failed(exc, "lease heartbeat failed; will try again")

    async def _shutdown(self) -> None:
        if self._tasks:
            self._log.info("waiting up to {:g} s for {} running job(s)", self._grace_s, len(self._tasks))
            _, pending = await asyncio.wait(list(self._tasks.values()), timeout=self._grace_s)
            for task in pending:
                task.cancel()
            if pending:  # a cancelled handler may still clean up (kill a child process): a moment
                _, stuck = await asyncio.wait(pending, timeout=max(self._grace_s, _CANCEL_WAIT_S))
                if stuck:  # a handler that ignores cancellation must not hold up the exit
                    self._log.error("{} job(s) ignored cancellation; releasing them anyway", len(stuck))
        if self._succeeded:
            await self._finish_and_claim({}, 0)
        if self._leased:  # cancelled mid-handler: back to the queue without spending the attempt
            released = await self._queue.release(list(self._leased.values()))
            self._leased.clear()
            self._log.info("handed {} unfinished job(s) back to the queue", released)
