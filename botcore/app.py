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

from loguru import logger

from botcore import __version__
from botcore.cleanup import JobPurger
from botcore.clock import SystemClock
from botcore.config import Settings, load_settings
from botcore.db import Database
from botcore.errors import StartupError
from botcore.jobqueue import JobQueue
from botcore.jobstore import JobStore
from botcore.lockfile import DataDirLock
from botcore.logs import setup_logging
from botcore.worker import JobKind, Worker


def build_queue(db: Database, settings: Settings) -> JobQueue:
    return JobQueue(
        JobStore(db),
        clock=SystemClock(),
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
        outage_max_wait_s=settings.outage_max_wait_s,
    )


async def run(settings: Settings) -> None:
    log = logger.bind(component="app")
    async with AsyncExitStack() as stack:
        stack.enter_context(DataDirLock(settings.data_dir))
        db = await Database.open(settings.db_path, synchronous=settings.sqlite_synchronous)
        stack.push_async_callback(db.close)
        queue = build_queue(db, settings)
        kinds: dict[str, JobKind] = {}  # job handlers arrive with the chat and voice features
        worker = Worker(
            queue, kinds, concurrency=settings.worker_concurrency, grace_s=settings.shutdown_grace_s
        )
        purger = JobPurger(
            queue, done_after_s=settings.job_retention_done_s, dead_after_s=settings.job_retention_dead_s
        )
        purging = asyncio.create_task(purger.run())
        stack.push_async_callback(_stop_task, purger.stop, purging)
        _install_signal_handlers(worker)
        log.info(
            "bot {} started: database {} (synchronous={}); press Ctrl-C to stop",
            __version__,
            settings.db_path,
            settings.sqlite_synchronous,
        )
        await worker.run()
    log.info("stopped cleanly")


async def _stop_task(stop: Callable[[], None], task: asyncio.Task[None]) -> None:
    stop()
    await task


def _install_signal_handlers(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal(signum: int) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            logger.bind(component="app").info(
                "{} received: finishing running jobs (send it again to exit at once)",
                signal.Signals(signum).name,
            )
            worker.request_stop()
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
        setup_logging(settings.log_level, settings.secrets())
        asyncio.run(run(settings))
    except StartupError as exc:
        print(f"bot.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
