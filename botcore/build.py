"""The ``build_*`` functions: each builds one part of the bot from the settings and the parts
it needs, and starts nothing. Only ``app.run`` calls them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import telegram

from botcore import __version__
from botcore.admin import AdminCommands
from botcore.alerts import Alerts
from botcore.breaker import CircuitBreaker
from botcore.cancels import Cancels
from botcore.chat import ChatService
from botcore.cleanup import Cleanup
from botcore.clock import Clock
from botcore.commands import Commands
from botcore.config import Settings
from botcore.errors import StartupError
from botcore.gate import Gate, RateLimits
from botcore.health import HealthServer
from botcore.intake import UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.llm import ChatModel
from botcore.messenger import Messenger
from botcore.metrics import Metrics
from botcore.models import Prices
from botcore.notices import NOTICE_KIND, Notices, unstorable_notice
from botcore.routing import COMMAND_KIND, UPDATE_KIND, Router, UpdateJobs, menu
from botcore.spending import Spending
from botcore.storage import Storage
from botcore.stt import OpenAITranscriber, SpeechApiTranscriber, SpeechToText, WhisperApiTranscriber
from botcore.stt_local import LocalWhisperTranscriber, resolve_model
from botcore.telegram_api import connect, make_bot
from botcore.voice import ACK_KIND, VOICE_KIND, VoiceService
from botcore.worker import JobKind, Worker


def build_transcriber(settings: Settings) -> SpeechToText | None:
    """The configured speech-to-text provider; None when voice is turned off."""
    timeout = max(settings.openai_timeout_s, 60.0)  # a long voice note takes a while
    if settings.transcription_mode == "openai":
        return OpenAITranscriber(
            api_key=settings.openai_api_key,
            base_url=settings.transcription_base_url,
            model=settings.transcription_model,
            language=settings.transcription_language,
            timeout_s=timeout,
        )
    if settings.transcription_mode == "whisper-api":
        return WhisperApiTranscriber(
            url=settings.whisper_api_url,
            api_key=settings.whisper_api_key,
            language=settings.transcription_language,
            timeout_s=timeout,
        )
    if settings.transcription_mode == "speech-api":
        return SpeechApiTranscriber(url=settings.speech_api_url, timeout_s=timeout)
    if settings.transcription_mode == "local":
        return LocalWhisperTranscriber(
            model=resolve_model(settings.local_whisper_model),
            threads=settings.local_whisper_threads,
            language=settings.transcription_language,
            max_seconds=settings.max_voice_seconds,
        )
    return None


def build_queue(storage: Storage, settings: Settings, clock: Clock) -> JobQueue:
    return JobQueue(
        storage.jobs,
        clock=clock,
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
        outage_max_wait_s=settings.outage_max_wait_s,
    )


async def build_bot(settings: Settings) -> telegram.Bot:
    """The Bot API client, connected: getMe passed, any webhook dropped, the menu registered."""
    bot = make_bot(
        settings.telegram_bot_token,
        settings.telegram_api_url,
        rate_per_s=settings.telegram_rate_per_s,
        group_rate_per_min=settings.telegram_group_rate_per_min,
        local_mode=settings.telegram_local_mode,
    )
    try:
        await connect(bot, settings.telegram_api_url, menu())
    except BaseException:
        await bot.shutdown()
        raise
    return bot


def build_model(settings: Settings) -> ChatModel:
    return ChatModel(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        timeout_s=settings.openai_timeout_s,
        max_reply_tokens=settings.max_reply_tokens,
    )


def build_breakers(settings: Settings, metrics: Metrics, clock: Clock) -> dict[str, CircuitBreaker]:
    return {
        name: CircuitBreaker(
            name,
            fail_max=settings.breaker_fail_max,
            reset_s=settings.breaker_reset_s,
            success_threshold=settings.breaker_success_threshold,
            clock=clock,
            observe=metrics.upstream_call,
        )
        for name in ("LLM", "transcription")
    }


def build_spending(
    settings: Settings, storage: Storage, alerts: Alerts, metrics: Metrics, clock: Clock
) -> Spending:
    return Spending(
        storage.usage,
        storage.kv,
        alerts,
        prices=Prices(
            settings.price_input_per_1m, settings.price_output_per_1m, settings.price_transcription_per_min
        ),
        clock=clock,
        admin_ids=settings.admin_user_ids,
        user_daily_usd=settings.user_daily_budget_usd,
        user_monthly_usd=settings.user_monthly_budget_usd,
        global_daily_usd=settings.global_daily_budget_usd,
        daily_alert_usd=settings.daily_cost_alert_usd,
        on_recorded=metrics.spent,
    )


def build_cleanup(settings: Settings, storage: Storage, queue: JobQueue) -> Cleanup:
    return Cleanup(
        storage,
        queue,
        done_after_s=settings.job_retention_done_s,
        dead_after_s=settings.job_retention_dead_s,
        history_ttl_days=settings.history_ttl_days,
        usage_retention_days=settings.usage_retention_days,
        full_every_s=settings.cleanup_interval_hours * 3600,
    )


@dataclass(frozen=True, slots=True)
class Base:
    """What the services share: built once, in ``run``."""

    settings: Settings
    clock: Clock
    storage: Storage
    queue: JobQueue
    bot: telegram.Bot
    messenger: Messenger
    metrics: Metrics
    breakers: dict[str, CircuitBreaker]


@dataclass(frozen=True, slots=True)
class Shared:
    """What the services share besides ``Base``."""

    spending: Spending
    notices: Notices
    cancels: Cancels


def build_chat(base: Base, shared: Shared, model: ChatModel) -> ChatService:
    settings = base.settings
    return ChatService(
        queue=base.queue,
        conversations=base.storage.conversations,
        model=model,
        messenger=base.messenger,
        breaker=base.breakers["LLM"],
        notices=shared.notices,
        cancels=shared.cancels,
        spending=shared.spending,
        clock=base.clock,
        system_prompt=settings.system_prompt,
        history_messages=settings.history_messages,
        history_ttl_days=settings.history_ttl_days,
        bot_username=base.bot.username,
        stream=settings.stream,
        stream_interval_s=settings.stream_edit_interval_s,
        llm_slots=asyncio.Semaphore(settings.llm_concurrency),
    )


def build_voice(base: Base, shared: Shared, chat: ChatService, stt: SpeechToText | None) -> VoiceService:
    return VoiceService(
        chat=chat,
        queue=base.queue,
        spending=shared.spending,
        notices=shared.notices,
        cancels=shared.cancels,
        messenger=base.messenger,
        stt=stt,
        breaker=base.breakers["transcription"],
        max_download_mb=base.settings.telegram_max_download_mb,
        max_seconds=base.settings.max_voice_seconds,
        reply=base.settings.voice_reply,
    )


def build_update_jobs(base: Base, shared: Shared, chat: ChatService, cleanup: Cleanup) -> UpdateJobs:
    """The ``tg-update``/``tg-command`` jobs, with the commands they run."""
    admin = AdminCommands(
        queue=base.queue,
        usage=base.storage.usage,
        breakers=base.breakers,
        clock=base.clock,
        version=__version__,
        cleanup=cleanup.run_once,
    )
    commands = Commands(
        chat=chat,
        conversations=base.storage.conversations,
        spending=shared.spending,
        cancels=shared.cancels,
        queue=base.queue,
        admin=admin,
    )
    return UpdateJobs(
        chat=chat,
        commands=commands,
        notices=shared.notices,
        queue=base.queue,
        bot_username=base.bot.username,
        admin_ids=base.settings.admin_user_ids,
    )


def build_job_kinds(
    base: Base, model: ChatModel, stt: SpeechToText | None, cleanup: Cleanup
) -> dict[str, JobKind]:
    """The services, and the table of job kinds the worker runs them by."""
    settings = base.settings
    alerts = Alerts(base.messenger, settings.admin_user_ids, clock=base.clock)
    shared = Shared(
        spending=build_spending(settings, base.storage, alerts, base.metrics, base.clock),
        notices=Notices(queue=base.queue, messenger=base.messenger, alerts=alerts),
        cancels=Cancels(),
    )
    chat = build_chat(base, shared, model)
    voice = build_voice(base, shared, chat, stt)
    updates = build_update_jobs(base, shared, chat, cleanup)
    return {
        # LLM calls are bounded by the chat service's slots (LLM_CONCURRENCY, voice answers
        # included), not here: a /reset or a budget notice in one chat must not queue behind
        # answers in others. A quarter of the workers stays free for everything else
        # (commands outside the chat's order, acknowledgements, notices, voice).
        UPDATE_KIND: JobKind(updates.handle, on_dead=updates.on_dead, concurrency=_message_slots(settings)),
        COMMAND_KIND: JobKind(updates.handle, on_dead=updates.on_dead),
        ACK_KIND: JobKind(voice.acknowledge),
        NOTICE_KIND: JobKind(shared.notices.send),
        VOICE_KIND: JobKind(
            voice.transcribe_and_answer, on_dead=voice.on_dead, concurrency=settings.transcription_concurrency
        ),
    }


def build_intake(base: Base) -> UpdatePoller:
    settings = base.settings
    gate = Gate(
        clock=base.clock,
        bot_id=base.bot.id,
        bot_username=base.bot.username,
        admin_ids=settings.admin_user_ids,
        allowed_user_ids=settings.allowed_user_ids,
        allowed_chat_ids=settings.allowed_chat_ids,
        rate_limits=RateLimits(settings.rate_limit_user_per_min, settings.rate_limit_global_per_min),
        exempt_admins=settings.rate_limit_exempt_admins,
    )
    return UpdatePoller(
        base.bot,
        base.queue,
        base.storage.kv,
        route=Router(gate).route,
        clock=base.clock,
        messenger=base.messenger,
        unstorable_notice=unstorable_notice,
    )


async def start_health(base: Base, poller: UpdatePoller, worker: Worker) -> HealthServer:
    settings = base.settings
    assert settings.metrics_port is not None
    health = HealthServer(
        host=settings.metrics_host,
        port=settings.metrics_port,
        poller=poller,
        kv=base.storage.kv,
        queue=base.queue,
        usage=base.storage.usage,
        metrics=base.metrics,
        workers_running=lambda: worker.alive,
        clock=base.clock,
    )
    try:
        await health.start()
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        raise StartupError(f"METRICS_PORT: cannot listen on {where} ({exc.strerror})") from None
    return health


def _message_slots(settings: Settings) -> int:
    """How many ``tg-update`` jobs may run at once: all the workers but a quarter (at least two),
    kept for the other kinds. Their LLM calls wait for LLM_CONCURRENCY's slots."""
    return max(1, settings.worker_concurrency - max(2, settings.worker_concurrency // 4))
