"""Admin commands' reports: /status, /dead, /retry <job id>, /cleanup. Reads the queue, the
breakers and usage; changes nothing but a revived job and what cleanup removes. Who may call
them is the chat service's decision. (These reports are for the owner; sentences for chat
users stay in ``texts``.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from botcore.breaker import CircuitBreaker
from botcore.clock import Clock, day_start
from botcore.concurrency import LlmLimits
from botcore.incoming import parse_update
from botcore.jobqueue import JobQueue
from botcore.models import CleanupResult, JobState
from botcore.storage import UsageStore

_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.DEAD)


class AdminCommands:
    def __init__(
        self,
        *,
        queue: JobQueue,
        usage: UsageStore,
        breakers: Mapping[str, CircuitBreaker],
        llm_limit: LlmLimits,
        clock: Clock,
        version: str,
        cleanup: Callable[[], Awaitable[CleanupResult]],
    ) -> None:
        self._queue = queue
        self._usage = usage
        self._breakers = breakers
        self._llm_limit = llm_limit
        self._clock = clock
        self._started_at = clock.now()
        self._version = version
        self._cleanup = cleanup

    async def status(self) -> str:
        now = self._clock.now()
        stats = await self._queue.stats()
        totals = stats.by_state()
        lines = [
            f"📈 Status: version {self._version}, up {_duration(now - self._started_at)}",
            "Jobs: " + ", ".join(f"{s.value} {totals.get(s.value, 0)}" for s in _STATES),
        ]
        for kind in sorted({k for _, k in stats.counts}):
            counts = ", ".join(
                f"{s.value} {stats.counts[(s.value, kind)]}"
                for s in _STATES
                if (s.value, kind) in stats.counts
            )
            lines.append(f"  {kind}: {counts}")
        oldest = stats.oldest_waiting_age_s
        lines.append("Oldest waiting job: " + ("none" if oldest is None else _duration(oldest)))
        lines.append(
            "Services: " + ", ".join(f"{name} {b.state.value}" for name, b in self._breakers.items())
        )
        limits = self._llm_limit
        how = f"found out per model, up to {limits.maximum}" if limits.adaptive else "fixed, per model"
        each = ", ".join(
            f"{model or 'other models'} {lim.in_use} of {lim.limit}" for model, lim in limits.items()
        )
        lines.append(f"LLM calls at once ({how}): {each}")
        today = await self._usage.summary(since=day_start(now))
        lines.append(f"Today (UTC): {today.requests} LLM and transcription calls, ${today.cost_usd:.4f}")
        top = await self._usage.top_users(since=day_start(now))
        if top:
            lines.append("Top users today:")
            lines += [f"  {user}: {s.requests} calls, ${s.cost_usd:.4f}" for user, s in top]
        return "\n".join(lines)

    async def dead(self, limit: int = 10) -> str:
        jobs = await self._queue.latest_dead(limit)
        if not jobs:
            return "No failed jobs. 🎉"
        now = self._clock.now()
        lines = [f"💀 The latest {len(jobs)} failed job(s); /retry <id> runs one again:"]
        for job in jobs:
            incoming = parse_update(job.payload)
            chat = incoming.chat_id if incoming is not None else job.payload.get("chat_id", "-")  # a notice
            ago = _duration(now - (job.finished_at or job.updated_at))
            lines.append(
                f"#{job.id} {job.kind}, chat {chat}, {ago} ago, {job.attempts} attempt(s): {job.last_error}"
            )
        return "\n".join(lines)

    async def retry(self, argument: str) -> str:
        if not argument.strip().lstrip("#").isdigit():
            return "Usage: /retry <job id> (see /dead for the ids)"
        job_id = int(argument.strip().lstrip("#"))
        job = await self._queue.revive(job_id)
        if job is None:
            return f"There is no failed job #{job_id} (see /dead)."
        return f"🔁 Job #{job_id} ({job.kind}) is queued again, as #{job.id}."

    async def cleanup(self) -> str:
        result = await self._cleanup()
        return (
            f"🧹 Cleanup removed {result.done_jobs} finished job(s), {result.dead_jobs} failed job(s), "
            f"{result.messages} expired message(s) and {result.usage_rows} old usage record(s)."
        )


def _duration(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
