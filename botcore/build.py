"""The ``build_*`` functions: each builds one part of the bot from the settings and the parts
it needs, and starts nothing. Only ``app.run`` calls them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import telegram

from botcore.breaker import CircuitBreaker
from botcore.cleanup import Cleanup
from botcore.clock import Clock
from botcore.config import Settings
from botcore.errors import StartupError
from botcore.gate import Gate, RateLimits, SharedRateLimits
from botcore.health import HealthServer
from botcore.i18n import SHIPPED, Languages, speaking, telegram_code
from botcore.imagegen import ImageGenerator
from botcore.intake import UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.llm import ChatModel
from botcore.messenger import Messenger
from botcore.metrics import Metrics
from botcore.notices import unstorable_notice
from botcore.receipts import Receipts
from botcore.routing import Router, menu
from botcore.sqlite_storage import SqliteStorage
from botcore.storage import Storage
from botcore.stt import OpenAITranscriber, SpeechApiTranscriber, SpeechToText, WhisperApiTranscriber
from botcore.stt_local import LocalWhisperTranscriber, resolve_model
from botcore.telegram_api import connect, make_bot
from botcore.tts import SpeechSynth, Synth
from botcore.tts_local import LocalSpeechSynth, resolve_voice

_MODEL_BREAKERS = 32  # models with a circuit breaker of their own


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
        # Only a process that polls drops a webhook: a worker's must never undo the intake's.
        polls = settings.scale.takes_updates and settings.scale.webhook is None
        await connect(bot, settings.telegram_api_url, menus(Languages(settings.bot_language)), polls=polls)
    except BaseException:
        await bot.shutdown()
        raise
    return bot


def build_model(settings: Settings, storage: Storage, clock: Clock) -> ChatModel:
    return ChatModel(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        timeout_s=settings.openai_timeout_s,
        max_reply_tokens=settings.max_reply_tokens,
        kv=storage.kv,  # what the server turned out to accept, remembered across restarts
        vision=settings.vision,
        clock=clock,
    )


def build_image_generator(settings: Settings) -> ImageGenerator | None:
    if settings.image_mode == "off":
        return None
    return ImageGenerator(
        api_key=settings.openai_api_key,
        base_url=settings.image_base_url,
        model=settings.image_model,
        size=settings.image_size,
        timeout_s=max(settings.openai_timeout_s, 120.0),  # a picture takes longer than an answer
    )


def build_speech(settings: Settings) -> Synth | None:
    if settings.tts_mode == "off":
        return None
    if settings.tts_mode == "local":  # the voice is checked now: a wrong one stops the start
        voice = resolve_voice(settings.local_tts_voice)
        return LocalSpeechSynth(voice=voice, threads=settings.local_tts_threads)
    return SpeechSynth(
        api_key=settings.openai_api_key,
        base_url=settings.tts_base_url,
        model=settings.tts_model,
        voice=settings.tts_voice,
        timeout_s=max(settings.openai_timeout_s, 60.0),
    )


def build_breakers(settings: Settings, metrics: Metrics, clock: Clock) -> dict[str, CircuitBreaker]:
    return {name: build_breaker(name, settings, metrics, clock) for name in ("LLM", "transcription")}


def build_breaker(name: str, settings: Settings, metrics: Metrics, clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        fail_max=settings.breaker_fail_max,
        reset_s=settings.breaker_reset_s,
        success_threshold=settings.breaker_success_threshold,
        clock=clock,
        observe=metrics.upstream_call,
    )


def llm_breakers(base: Base) -> Callable[[str], CircuitBreaker]:
    """The LLM's breaker for a model: "LLM" for OPENAI_MODEL, "LLM (name)" for a model a chat
    chose, made on first use and kept with the others (``/status`` and ``/metrics`` show them).
    One model's outage or rate limit (a busy free model) then closes nothing to the others.
    Past ``_MODEL_BREAKERS`` models (typed names on a server that lists none) the rest share one."""

    def of(model: str) -> CircuitBreaker:
        name = "LLM" if model == base.settings.openai_model else f"LLM ({model})"
        if name not in base.breakers:
            if sum(n.startswith("LLM (") for n in base.breakers) >= _MODEL_BREAKERS:
                name = "LLM (other models)"
            if name not in base.breakers:
                base.breakers[name] = build_breaker(name, base.settings, base.metrics, base.clock)
        return base.breakers[name]

    return of


def build_cleanup(settings: Settings, storage: Storage, queue: JobQueue) -> Cleanup:
    return Cleanup(
        storage,
        queue,
        done_after_s=settings.job_retention_done_s,
        dead_after_s=settings.job_retention_dead_s,
        history_ttl_days=settings.history_ttl_days,
        usage_retention_days=settings.usage_retention_days,
        full_every_s=settings.cleanup_interval_hours * 3600,
        spools=(settings.data_dir / "images", settings.data_dir / "speech"),
        leadership=storage.leadership("cleanup"),
    )


async def open_storage(settings: Settings) -> Storage:
    """PostgreSQL when ``DATABASE_URL`` is set (shared by several processes), else SQLite in
    ``DATA_DIR``. The PostgreSQL driver is imported only then: it is an optional install."""
    url = settings.scale.database_url
    if url is None:
        return await SqliteStorage.open(settings.db_path, synchronous=settings.sqlite_synchronous)
    from botcore.pg_storage import PgStorage

    return await PgStorage.open(url, max_connections=settings.scale.database_pool)


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


def build_gate(base: Base) -> Gate:
    settings = base.settings
    rates = base.storage.rates
    shared = None
    if rates is not None:  # several processes: the limits are counted in the database
        shared = SharedRateLimits(
            rates,
            base.clock,
            settings.rate_limit_user_per_min,
            settings.rate_limit_global_per_min,
            kv=base.storage.kv,
        )
    return Gate(
        clock=base.clock,
        bot_id=base.bot.id,
        bot_username=base.bot.username,
        admin_ids=settings.admin_user_ids,
        allowed_user_ids=settings.allowed_user_ids,
        allowed_chat_ids=settings.allowed_chat_ids,
        rate_limits=RateLimits(settings.rate_limit_user_per_min, settings.rate_limit_global_per_min),
        exempt_admins=settings.rate_limit_exempt_admins,
        shared=shared,
    )


def build_intake(base: Base, receipts: Receipts | None = None) -> UpdatePoller:
    """The intake; ``receipts`` shared with the chat service, which clears them."""
    gate = build_gate(base)
    return UpdatePoller(
        base.bot,
        base.queue,
        base.storage.kv,
        route=Router(gate).route,
        prepare=gate.prepare if base.storage.rates is not None else None,
        clock=base.clock,
        messenger=base.messenger,
        unstorable_notice=unstorable_notice,
        receipts=receipts,
        languages=Languages(base.settings.bot_language),
    )


def menus(languages: Languages) -> dict[str | None, list[tuple[str, str]]]:
    """The command menu for each language Telegram may show it in (None: the one for everyone
    else), as ``languages`` would answer its users."""
    codes = sorted({telegram_code(language) for language in SHIPPED})
    by_code: dict[str | None, list[tuple[str, str]]] = {}
    for code in [None, *codes]:
        with speaking(languages.of(code)):
            by_code[code] = menu()
    return by_code


def build_receipts(base: Base) -> Receipts | None:
    mode = base.settings.reactions
    return None if mode == "off" else Receipts(base.messenger, base.clock, private=True, groups=mode == "on")


async def start_health(
    base: Base, poller: UpdatePoller, workers_running: Callable[[], bool], polling: Callable[[], bool]
) -> HealthServer:
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
        workers_running=workers_running,
        clock=base.clock,
        polling=polling,
    )
    try:
        await health.start()
    except OSError as exc:
        where = f"{settings.metrics_host}:{settings.metrics_port}"
        raise StartupError(f"METRICS_PORT: cannot listen on {where} ({exc.strerror})") from None
    return health
