"""The services as ``botcore.build`` wires them (settings parsed from an environment, a real
SQLite file, the real SDKs pointed at the fake servers, one ManualClock), for tests that call
them directly; and a one-attempt stand-in for the worker, so that a test runs each attempt of
a job itself and moves the clock between attempts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import telegram

from botcore.alerts import Alerts
from botcore.assemble import build_services
from botcore.breaker import CircuitBreaker
from botcore.build import (
    Base,
    build_bot,
    build_breakers,
    build_cleanup,
    build_gate,
    build_image_generator,
    build_intake,
    build_model,
    build_queue,
    build_receipts,
    build_speech,
    build_transcriber,
)
from botcore.cancels import Cancels
from botcore.chat import ChatService
from botcore.clock import ManualClock
from botcore.config import Settings, parse_settings
from botcore.incoming import Incoming, parse_update
from botcore.intake import UpdatePoller
from botcore.jobkinds import job_kinds
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.metrics import Metrics
from botcore.models import Job, JobState
from botcore.notices import Notices
from botcore.routing import Router, UpdateJobs
from botcore.spending import Spending
from botcore.sqlite_db import Database
from botcore.sqlite_storage import SqliteStorage
from botcore.voice import VoiceService
from botcore.worker import JobKind

from .conftest import KEY, TOKEN
from .fakes import FakeOpenAI, FakeTelegram


def environment(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, **env: str) -> dict[str, str]:
    """The settings of a bot open to everyone and every group, without rate limits or a system
    prompt (so the fake LLM's token counts are the words of the conversation), not streaming."""
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": tg.base_url,
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_MODEL": "fake-model",
        "DATA_DIR": str(tmp_path),
        "ALLOWED_USER_IDS": "*",
        "ALLOWED_CHAT_IDS": "*",
        "RATE_LIMIT_USER_PER_MIN": "0",
        "RATE_LIMIT_GLOBAL_PER_MIN": "0",
        "STREAM": "false",
        "SYSTEM_PROMPT": "",
        **env,
    }


@dataclass
class Services:
    settings: Settings
    clock: ManualClock
    storage: SqliteStorage
    queue: JobQueue
    bot: telegram.Bot
    messenger: Messenger
    breakers: dict[str, CircuitBreaker]
    alerts: Alerts
    spending: Spending
    notices: Notices
    cancels: Cancels
    chat: ChatService
    voice: VoiceService
    updates: UpdateJobs
    router: Router  # a router with its own gate, built as build_intake builds the intake's
    intake: UpdatePoller
    kinds: dict[str, JobKind]  # the worker's table, as build_job_kinds makes it


@asynccontextmanager
async def services(
    tmp_path: Path,
    tg: FakeTelegram,
    llm: FakeOpenAI,
    clock: ManualClock,
    *,
    busy_timeout_ms: int | None = None,  # how long SQLite waits for a lock (default: its own)
    **env: str,
) -> AsyncIterator[Services]:
    """Every service, built by ``botcore.build``'s functions as ``build_job_kinds`` and
    ``build_intake`` build them."""
    settings = parse_settings(environment(tmp_path, tg, llm, **env))
    if busy_timeout_ms is None:
        storage = await SqliteStorage.open(settings.db_path)
    else:
        storage = SqliteStorage(await Database.open(settings.db_path, busy_timeout_ms=busy_timeout_ms))
    queue = build_queue(storage, settings, clock)
    metrics = Metrics()
    breakers = build_breakers(settings, metrics, clock)
    model = build_model(settings, storage, clock)
    stt = build_transcriber(settings)
    cleanup = build_cleanup(settings, storage, queue)
    bot: telegram.Bot | None = None
    intake: UpdatePoller | None = None
    images = build_image_generator(settings)
    speech = build_speech(settings)
    try:
        bot = await build_bot(settings)  # getMe: the bot's id and @username
        messenger = Messenger(bot)
        base = Base(settings, clock, storage, queue, bot, messenger, metrics, breakers)
        receipts = build_receipts(base)
        built = build_services(base, model, stt, cleanup, images, speech, receipts)
        shared, chat, voice, updates = built.shared, built.chat, built.voice, built.updates
        intake = build_intake(base, receipts)
        yield Services(
            settings=settings,
            clock=clock,
            storage=storage,
            queue=queue,
            bot=bot,
            messenger=messenger,
            breakers=breakers,
            alerts=shared.alerts,
            spending=shared.spending,
            notices=shared.notices,
            cancels=shared.cancels,
            chat=chat,
            voice=voice,
            updates=updates,
            router=Router(build_gate(base)),
            intake=intake,
            kinds=job_kinds(settings, built),
        )
    finally:
        if intake is not None:
            await intake.aclose()
        await model.aclose()
        if images is not None:
            await images.aclose()
        if speech is not None:
            await speech.aclose()
        if stt is not None:
            await stt.aclose()
        if bot is not None:
            await bot.shutdown()
        await storage.close()


def last_update(tg: FakeTelegram) -> dict[str, Any]:
    """The raw update the fake Telegram made last (``add_message``, ``add_voice``), as Telegram
    would deliver it."""
    return tg.pending[-1]


def incoming_of(raw: dict[str, Any]) -> Incoming:
    parsed = parse_update(raw)
    assert parsed is not None
    return parsed


async def receive(s: Services, raw: dict[str, Any]) -> None:
    """The intake's work on one update: parsed, routed, its jobs stored."""
    await s.intake.persist([raw])


async def claim(s: Services, kind: str) -> Job:
    """Lease the next due job of ``kind``, as a worker would."""
    jobs = await s.queue.claim({kind: 1}, 1)
    assert jobs, f"no {kind} job is due"
    return jobs[0]


@dataclass(frozen=True, slots=True)
class Attempt:
    job: Job  # as claimed, with the checkpoint earlier attempts left
    error: Exception | None
    after: Job  # as stored once the attempt's outcome was recorded


async def attempt(s: Services, kind: str) -> Attempt:
    """One attempt of the next due job of ``kind``."""
    return await _run(s, await claim(s, kind))


async def run_due(s: Services) -> list[Attempt]:
    """One attempt of every job due now, oldest first, as the worker would run them one by one
    (the clock stands still, so a job that fails waits for it to move)."""
    done = []
    while jobs := await s.queue.claim(dict.fromkeys(s.kinds, 1), 1):
        done.append(await _run(s, jobs[0]))
    return done


async def _run(s: Services, job: Job) -> Attempt:
    """Run a claimed job and record the outcome as the worker does: done, or failed with the
    queue deciding what next (and the kind's ``on_dead`` told if it is dead)."""
    spec = s.kinds[job.kind]
    try:
        await spec.run(job)
    except Exception as exc:
        after = await s.queue.fail(job, exc)
        assert after is not None, "the attempt lost its lease"
        if after.state is JobState.DEAD and spec.on_dead is not None:
            await spec.on_dead(after, exc)
        return Attempt(job, exc, after)
    assert await s.queue.complete(job)
    done = await s.queue.get(job.id)
    assert done is not None
    return Attempt(job, None, done)


async def after_a_crash(s: Services, job: Job) -> Job:
    """``job`` claimed again after its worker died mid-attempt: its lease ran out, and the new
    attempt starts from the checkpoint the old one saved."""
    s.clock.advance(s.queue.lease_s + 1)
    await s.queue.recover_expired()
    again = await claim(s, job.kind)
    assert again.id == job.id and again.lease_token != job.lease_token
    return again


def until_due(s: Services, *jobs: Job) -> None:
    """Move the clock to the time the queue set for the next attempt of these jobs (the last)."""
    s.clock.advance(max(0.0, max(job.run_at for job in jobs) - s.clock.now()))


async def spin() -> None:
    """Let every task that can go on without the clock moving do so (no time passes)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def stored(s: Services, job_id: int, key: str, *, timeout: float = 5.0) -> Any:
    """Wait (bounded) until ``job_id``'s stored checkpoint holds ``key``; its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await s.queue.get(job_id)
        if job is not None and key in (job.checkpoint or {}):
            return job.checkpoint[key]  # type: ignore[index]
        assert loop.time() < deadline, f"job {job_id} never saved {key!r}"
        await asyncio.sleep(0.005)


def methods(tg: FakeTelegram, name: str, chat_id: int | None = None) -> list[dict[str, Any]]:
    """The parameters of every call of the Bot API method ``name`` (to one chat, if given)."""
    return [p for m, p in tg.calls if m == name and (chat_id is None or int(p["chat_id"]) == chat_id)]
