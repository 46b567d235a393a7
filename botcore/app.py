"""The composition root: ``run`` builds the parts (through ``build``), starts them in order and
tears them down in reverse through one AsyncExitStack; ``main`` is what ``bot.py`` runs. Also
maps signals to a graceful stop."""

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

from botcore import __version__
from botcore.assemble import build_services
from botcore.build import (
    Base,
    build_bot,
    build_breakers,
    build_cleanup,
    build_image_generator,
    build_intake,
    build_model,
    build_queue,
    build_receipts,
    build_speech,
    build_transcriber,
    open_storage,
    start_health,
)
from botcore.clock import SystemClock
from botcore.config import Settings, load_settings
from botcore.errors import StartupError
from botcore.i18n import Languages, speaking
from botcore.jobkinds import job_kinds
from botcore.leading import Leading
from botcore.lockfile import DataDirLock
from botcore.logs import setup_logging, setup_sentry
from botcore.messenger import Messenger
from botcore.metrics import Metrics
from botcore.pacing import PacedLimiter
from botcore.peers import Peers
from botcore.storage import Storage
from botcore.webhook import WebhookServer, register
from botcore.worker import Worker


async def run(settings: Settings) -> None:
    """Start everything in order, run the worker until a signal, stop in reverse order."""
    clock = SystemClock()
    # Signals are handled from the start: one during startup lets it finish, then stops cleanly.
    stop_requested = asyncio.Event()
    stops: list[Callable[[], None]] = [stop_requested.set]
    _install_signal_handlers(stops)
    scale = settings.scale
    async with AsyncExitStack() as stack:
        if scale.database_url is None:  # SQLite: one process per data directory
            stack.enter_context(DataDirLock(settings.data_dir))
        # What is said outside a user's update or job (an admin alert) is in BOT_LANGUAGE, if set.
        stack.enter_context(speaking(Languages(settings.bot_language).default))
        storage = await open_storage(settings)
        stack.push_async_callback(storage.close)
        bot = await build_bot(settings)
        stack.push_async_callback(bot.shutdown)
        model = build_model(settings, storage, clock)
        stack.push_async_callback(model.aclose)
        stt = build_transcriber(settings)
        if stt is not None:
            stack.push_async_callback(stt.aclose)
        metrics = Metrics()
        queue = build_queue(storage, settings, clock)
        base = Base(
            settings,
            clock,
            storage,
            queue,
            bot,
            Messenger(bot),
            metrics,
            build_breakers(settings, metrics, clock),
        )
        cleanup = build_cleanup(settings, storage, queue)
        images = build_image_generator(settings)
        if images is not None:
            stack.push_async_callback(images.aclose)
        speech = build_speech(settings)
        if speech is not None:
            stack.push_async_callback(speech.aclose)
        receipts = build_receipts(base)  # set by the intake, cleared by the chat service
        services = build_services(base, model, stt, cleanup, images, speech, receipts)
        worker = Worker(
            queue,
            job_kinds(settings, services),
            concurrency=settings.worker_concurrency,
            grace_s=settings.shutdown_grace_s,
            observe=metrics.job_finished,
            alone=not storage.shared,
        )
        stack.push_async_callback(_stop_task, cleanup.stop, asyncio.create_task(cleanup.run()))
        if storage.shared:
            await _share_telegram_pace(stack, bot, storage, clock)
            # Jobs queued by other processes wake this one's workers.
            stop_listening = asyncio.Event()
            listening = asyncio.create_task(storage.watch_enqueues(queue.wake.set, stop_listening))
            stack.push_async_callback(_stop_task, stop_listening.set, listening)
        poller = build_intake(base, receipts)
        stack.push_async_callback(poller.aclose)
        polling: Leading | None = None
        if scale.takes_updates and scale.webhook is not None:
            webhook = WebhookServer(scale.webhook, poller, clock)
            await webhook.start()
            stack.push_async_callback(webhook.aclose)
            await register(bot, scale.webhook)  # listening first: Telegram's first posts land
        elif scale.takes_updates:  # polling, by one process at a time
            polling = Leading("polling", storage.leadership("polling"), poller.run, clock)
            stack.push_async_callback(_stop_task, polling.stop, asyncio.create_task(polling.run()))
        metrics.watch(
            breakers=base.breakers,
            updates_received=lambda: poller.received,
            llm_limit=services.shared.llm_limit,
        )
        if settings.metrics_port is not None:
            health = await start_health(
                base,
                poller,
                workers_running=lambda: worker.alive or not scale.works_jobs,
                polling=lambda: polling is not None and polling.leading,
            )
            stack.push_async_callback(health.aclose)
        stops += [poller.stop, worker.request_stop]
        if polling is not None:
            stops.append(polling.stop)
        if stop_requested.is_set():  # a signal came while starting
            for stop in stops:
                stop()
        _log_started(settings, bot, storage)
        if scale.works_jobs:
            await worker.run()
        else:
            await stop_requested.wait()
    logger.bind(component="app").info("stopped cleanly")


async def _share_telegram_pace(
    stack: AsyncExitStack, bot: telegram.Bot, storage: Storage, clock: SystemClock
) -> None:
    """Telegram's limits are the bot's, not the process's: each process takes its part, counted
    before the first update is taken, then kept up to date."""
    limiter = getattr(bot, "rate_limiter", None)
    if not isinstance(limiter, PacedLimiter):
        return
    peers = Peers(storage.kv, clock, limiter.share)
    with contextlib.suppress(Exception):  # the database refuses for now: the loop tries again
        await peers.beat()
    stack.push_async_callback(_stop_task, peers.stop, asyncio.create_task(peers.run()))


def _log_started(settings: Settings, bot: telegram.Bot, storage: Storage) -> None:
    log = logger.bind(component="app")
    scale = settings.scale
    log.info(
        "bot {} started as @{}: model {} at {}, {}; {}, role {}; press Ctrl-C to stop",
        __version__,
        bot.username,
        settings.openai_model,
        settings.openai_base_url,
        storage.description,
        f"webhook at {scale.webhook.url}" if scale.webhook else "polling",
        scale.role.value,
    )
    if not settings.admin_user_ids:
        log.warning(
            "ADMIN_USER_IDS is empty: nobody gets alerts or admin commands{}; write to the bot "
            "to learn your Telegram id, then set it",
            "" if settings.allowed_user_ids is None else ", and nobody is served yet",
        )


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
