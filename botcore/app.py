"""The composition root: the only place that builds and wires objects, and tears them down in
reverse order through one AsyncExitStack. Also maps signals to a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack

import telegram
from loguru import logger

from botcore import __version__, texts
from botcore.admin import AdminCommands
from botcore.alerts import Alerts
from botcore.breaker import CircuitBreaker
from botcore.chat import NOTICE_KIND, ChatService, unstorable_notice
from botcore.cleanup import Cleanup
from botcore.clock import SystemClock
from botcore.config import Settings, load_settings
from botcore.errors import StartupError
from botcore.gate import Gate, RateLimits
from botcore.health import HealthServer
from botcore.intake import COMMAND_KIND, UPDATE_KIND, UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.llm import ChatModel
from botcore.lockfile import DataDirLock
from botcore.logs import setup_logging, setup_sentry
from botcore.messenger import Messenger
from botcore.metrics import Metrics
from botcore.models import Prices
from botcore.spending import Spending
from botcore.sqlite_storage import SqliteStorage
from botcore.storage import Storage
from botcore.stt import OpenAITranscriber, SpeechApiTranscriber, SpeechToText, WhisperApiTranscriber
from botcore.stt_local import LocalWhisperTranscriber, resolve_model
from botcore.telegram_api import make_bot
from botcore.updates import UpdateHandler
from botcore.voice import ACK_KIND, VOICE_KIND, VoiceService, route_update
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


def build_queue(storage: Storage, settings: Settings) -> JobQueue:
    return JobQueue(
        storage.jobs,
        clock=SystemClock(),
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
        outage_max_wait_s=settings.outage_max_wait_s,
    )


async def run(settings: Settings) -> None:
    log = logger.bind(component="app")
    clock = SystemClock()
    # Signals are handled from the start: one during startup lets it finish, then stops cleanly.
    stop_requested = asyncio.Event()
    stops: list[Callable[[], None]] = [stop_requested.set]
    _install_signal_handlers(stops)
    async with AsyncExitStack() as stack:
        stack.enter_context(DataDirLock(settings.data_dir))
        storage = await SqliteStorage.open(settings.db_path, synchronous=settings.sqlite_synchronous)
        stack.push_async_callback(storage.close)
        queue = build_queue(storage, settings)

        bot = make_bot(
            settings.telegram_bot_token,
            settings.telegram_api_url,
            rate_per_s=settings.telegram_rate_per_s,
            group_rate_per_min=settings.telegram_group_rate_per_min,
            local_mode=settings.telegram_local_mode,
        )
        stack.push_async_callback(bot.shutdown)
        await _connect(bot, settings.telegram_api_url)
        model = ChatModel(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            timeout_s=settings.openai_timeout_s,
            max_reply_tokens=settings.max_reply_tokens,
        )
        stack.push_async_callback(model.aclose)
        conversations, usage, kv = storage.conversations, storage.usage, storage.kv
        cleanup = Cleanup(
            storage,
            queue,
            done_after_s=settings.job_retention_done_s,
            dead_after_s=settings.job_retention_dead_s,
            history_ttl_days=settings.history_ttl_days,
            usage_retention_days=settings.usage_retention_days,
            full_every_s=settings.cleanup_interval_hours * 3600,
        )
        messenger = Messenger(bot)
        metrics = Metrics()
        alerts = Alerts(messenger, settings.admin_user_ids, clock=clock)
        spending = Spending(
            usage,
            kv,
            alerts,
            prices=Prices(
                settings.price_input_per_1m,
                settings.price_output_per_1m,
                settings.price_transcription_per_min,
            ),
            clock=clock,
            admin_ids=settings.admin_user_ids,
            user_daily_usd=settings.user_daily_budget_usd,
            user_monthly_usd=settings.user_monthly_budget_usd,
            global_daily_usd=settings.global_daily_budget_usd,
            daily_alert_usd=settings.daily_cost_alert_usd,
            on_recorded=metrics.spent,
        )
        breakers = {
            name: CircuitBreaker(
                name,
                fail_max=settings.breaker_fail_max,
                reset_s=settings.breaker_reset_s,
                success_threshold=settings.breaker_success_threshold,
                observe=metrics.upstream_call,
            )
            for name in ("LLM", "transcription")
        }
        chat = ChatService(
            queue=queue,
            conversations=conversations,
            model=model,
            messenger=messenger,
            breaker=breakers["LLM"],
            alerts=alerts,
            spending=spending,
            clock=clock,
            system_prompt=settings.system_prompt,
            history_messages=settings.history_messages,
            history_ttl_days=settings.history_ttl_days,
            bot_username=bot.username,
            stream=settings.stream,
            stream_interval_s=settings.stream_edit_interval_s,
            llm_slots=asyncio.Semaphore(settings.llm_concurrency),
        )
        updates = UpdateHandler(
            chat=chat,
            conversations=conversations,
            spending=spending,
            bot_username=bot.username,
            admin_ids=settings.admin_user_ids,
            admin=AdminCommands(
                queue=queue,
                usage=usage,
                breakers=breakers,
                clock=clock,
                version=__version__,
                cleanup=cleanup.run_once,
            ),
        )
        stt = build_transcriber(settings)
        if stt is not None:
            stack.push_async_callback(stt.aclose)
        voice = VoiceService(
            chat=chat,
            queue=queue,
            spending=spending,
            kv=kv,
            messenger=messenger,
            stt=stt,
            breaker=breakers["transcription"],
            clock=clock,
            max_download_mb=settings.telegram_max_download_mb,
            max_seconds=settings.max_voice_seconds,
            reply=settings.voice_reply,
        )
        kinds = {
            # LLM calls are bounded by the chat service's slots (LLM_CONCURRENCY, voice answers
            # included), not here: a /reset or a budget notice in one chat must not queue behind
            # answers in others. A quarter of the workers stays free for everything else
            # (commands outside the chat's order, acknowledgements, notices, voice).
            UPDATE_KIND: JobKind(updates.handle, on_dead=chat.on_dead, concurrency=_message_slots(settings)),
            COMMAND_KIND: JobKind(updates.handle, on_dead=chat.on_dead),
            ACK_KIND: JobKind(voice.acknowledge),
            NOTICE_KIND: JobKind(chat.send_notice),
            VOICE_KIND: JobKind(
                voice.transcribe_and_answer,
                on_dead=voice.on_dead,
                concurrency=settings.transcription_concurrency,
            ),
        }
        worker = Worker(
            queue,
            kinds,
            concurrency=settings.worker_concurrency,
            grace_s=settings.shutdown_grace_s,
            observe=metrics.job_finished,
        )
        cleaning = asyncio.create_task(cleanup.run())
        stack.push_async_callback(_stop_task, cleanup.stop, cleaning)
        gate = Gate(
            route_update,
            messenger,
            bot_id=bot.id,
            bot_username=bot.username,
            admin_ids=settings.admin_user_ids,
            allowed_user_ids=settings.allowed_user_ids,
            allowed_chat_ids=settings.allowed_chat_ids,
            rate_limits=RateLimits(settings.rate_limit_user_per_min, settings.rate_limit_global_per_min),
            exempt_admins=settings.rate_limit_exempt_admins,
        )
        stack.push_async_callback(gate.aclose)
        poller = UpdatePoller(
            bot, queue, kv, clock=clock, route=gate.route, unstorable_notice=unstorable_notice
        )
        polling = asyncio.create_task(poller.run())
        stack.push_async_callback(_stop_task, poller.stop, polling)
        metrics.watch(breakers=breakers, updates_received=lambda: poller.received)
        if settings.metrics_port is not None:
            health = HealthServer(
                host=settings.metrics_host,
                port=settings.metrics_port,
                poller=poller,
                kv=kv,
                queue=queue,
                usage=usage,
                metrics=metrics,
                workers_running=lambda: worker.alive,
                clock=clock,
            )
            try:
                await health.start()
            except OSError as exc:
                where = f"{settings.metrics_host}:{settings.metrics_port}"
                raise StartupError(f"METRICS_PORT: cannot listen on {where} ({exc.strerror})") from None
            stack.push_async_callback(health.aclose)
        stops += [poller.stop, worker.request_stop]
        if stop_requested.is_set():  # a signal came while starting
            for stop in stops:
                stop()
        log.info(
            "bot {} started as @{}: model {} at {}, {}; press Ctrl-C to stop",
            __version__,
            bot.username,
            settings.openai_model,
            settings.openai_base_url,
            storage.description,
        )
        if not settings.admin_user_ids:
            log.warning(
                "ADMIN_USER_IDS is empty: nobody gets alerts or admin commands{}; write to the bot "
                "to learn your Telegram id, then set it",
                "" if settings.allowed_user_ids is None else ", and nobody is served yet",
            )
        await worker.run()
    log.info("stopped cleanly")


def _message_slots(settings: Settings) -> int:
    """How many ``tg-update`` jobs may run at once: all the workers but a quarter (at least two),
    kept for the other kinds. Their LLM calls wait for LLM_CONCURRENCY's slots."""
    return max(1, settings.worker_concurrency - max(2, settings.worker_concurrency // 4))


async def _connect(bot: telegram.Bot, api_url: str) -> None:
    """getMe (fatal if it fails), then drop any webhook (it excludes polling) and register the
    command menu (both only worth a warning: the bot works without them)."""
    try:
        await bot.initialize()
    except telegram.error.InvalidToken:
        raise StartupError(
            "TELEGRAM_BOT_TOKEN: Telegram rejected this token (revoked or mistyped?)"
        ) from None
    except telegram.error.TelegramError as exc:
        raise StartupError(
            f"TELEGRAM_API_URL: cannot reach the Bot API at {api_url} ({type(exc).__name__})"
        ) from None
    log = logger.bind(component="app")
    try:
        await bot.delete_webhook()
    except telegram.error.TelegramError as exc:
        log.warning("could not remove a webhook ({}); polling fails while one is set", type(exc).__name__)
    try:
        await bot.set_my_commands(list(texts.COMMANDS))
    except telegram.error.TelegramError as exc:
        log.warning("could not register the command menu ({})", type(exc).__name__)


async def _stop_task(stop: Callable[[], None], task: asyncio.Task[None]) -> None:
    stop()
    try:
        await task
    except Exception as exc:  # already logged where it happened; shutdown goes on
        logger.bind(component="app").opt(exception=exc).error("a background task had failed")


def _install_signal_handlers(stops: list[Callable[[], None]]) -> None:
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            logger.bind(component="app").info(
                "{} received: finishing running jobs (send it again to exit at once)",
                signal.Signals(signum).name,
            )
            for stop in stops:
                stop()
        else:
            # Everything accepted is already committed to SQLite; unfinished jobs are recovered
            # at the next start, so leaving now loses nothing.
            os._exit(130)

    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler; Ctrl-C still raises KeyboardInterrupt there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, on_signal, signum)


def main() -> int:
    try:
        settings = load_settings()
        setup_logging(
            settings.log_level,
            settings.secrets(),
            json_lines=settings.log_format == "json",
            file=settings.log_file,
            file_max_mb=settings.log_file_max_mb,
            file_backups=settings.log_file_backups,
        )
        if settings.sentry_dsn:
            setup_sentry(settings.sentry_dsn, settings.secrets(), release=__version__)
        asyncio.run(run(settings))
    except StartupError as exc:
        print(f"bot.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
