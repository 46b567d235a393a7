import asyncio
import io
import logging

from loguru import logger

from botcore.cleanup import Cleanup
from botcore.clock import ManualClock
from botcore.conversations import ConversationStore
from botcore.db import Database
from botcore.errors import PermanentError
from botcore.jobqueue import JobQueue
from botcore.logs import setup_logging
from botcore.models import CleanupResult

from .conftest import TOKEN


def test_secrets_are_redacted_everywhere_including_tracebacks() -> None:
    out = io.StringIO()
    setup_logging("DEBUG", [TOKEN], stream=out)
    try:
        logger.info("GET https://api.telegram.org/bot{}/getMe", TOKEN)
        try:
            raise RuntimeError(f"bad url https://api.telegram.org/bot{TOKEN}/getUpdates")
        except RuntimeError:
            logger.exception("request failed")
        with logger.contextualize(job_id=7, kind="chat", attempt=2):
            logger.bind(component="worker").warning("retrying")
        logging.getLogger("telegram.ext").warning("polling error at /bot%s/getUpdates {x}", TOKEN)
    finally:
        logger.remove()
        logging.basicConfig(handlers=[], force=True)
    text = out.getvalue()
    assert TOKEN not in text
    assert text.count("[REDACTED]") == 3  # two messages and the exception's text
    assert "| telegram | polling error at /bot[REDACTED]/getUpdates {x}" in text
    assert "RuntimeError: bad url https://api.telegram.org/bot[REDACTED]/getUpdates" in text
    assert "retrying [job_id=7 kind=chat attempt=2]" in text


async def test_cleanup_removes_finished_jobs_and_expired_memory(
    db: Database, queue: JobQueue, clock: ManualClock
) -> None:
    conversations = ConversationStore(db)
    await conversations.add_exchange(1, job_id=100, user_text="old", answer="old", now=clock.now())
    await queue.enqueue("chat", {})
    await queue.enqueue("chat", {})
    first, second = await queue.claim({"chat": 2}, 2)
    assert await queue.complete(first)
    await queue.fail(second, PermanentError("no"))
    cleanup = Cleanup(queue, conversations, done_after_s=300, dead_after_s=3600, history_ttl_days=1)
    assert await cleanup.run_once() == CleanupResult(0, 0, 0)
    clock.advance(301)
    assert await cleanup.run_once() == CleanupResult(1, 0, 0)
    clock.advance(86_400)
    assert await cleanup.run_once() == CleanupResult(0, 1, 2)
    assert await conversations.history(1, limit=10, since=0) == []


async def test_cleanup_runs_periodically_until_stopped(
    db: Database, queue: JobQueue, clock: ManualClock
) -> None:
    cleanup = Cleanup(
        queue, ConversationStore(db), done_after_s=0, dead_after_s=0, history_ttl_days=7, every_s=60
    )
    task = asyncio.create_task(cleanup.run())
    await queue.enqueue("chat", {})
    [job] = await queue.claim({"chat": 1}, 1)
    assert await queue.complete(job)
    for _ in range(400):  # each minute of clock time may bring a run (bounded: 2 s of real time)
        clock.advance(61)
        if not (await queue.stats()).counts:
            break
        await asyncio.sleep(0.005)
    assert (await queue.stats()).counts == {}
    cleanup.stop()
    await asyncio.wait_for(task, 5)
