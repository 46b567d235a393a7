"""A real worker process for the crash tests: ``python crash_worker.py DATA_DIR MODE``.

It takes the data-directory lock like the bot, runs the queue's "work" jobs (one at a time, so
the tests are deterministic) and exits 0 once nothing is left to run. Each handler appends
"start <id> <attempt>" and "end <id>" to DATA_DIR/trace.log. MODE:
  normal    run everything
  hang-on-3 the first attempt of job n=3 writes DATA_DIR/hanging and never returns
  kill-on-3 every attempt of job n=3 SIGKILLs its own process (a crash loop)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from botcore.clock import SystemClock
from botcore.jobqueue import JobQueue
from botcore.lockfile import DataDirLock
from botcore.models import Job
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.worker import JobKind, Worker


async def main(data_dir: Path, mode: str) -> None:
    trace = (data_dir / "trace.log").open("a", buffering=1)
    with DataDirLock(data_dir):
        db = await Database.open(data_dir / "bot.db")
        queue = JobQueue(SqliteJobStore(db), clock=SystemClock(), max_attempts=4)

        async def work(job: Job) -> None:
            n = job.payload["n"]
            trace.write(f"start {job.id} {job.attempts}\n")
            os.fsync(trace.fileno())
            if n == 3 and mode == "hang-on-3" and job.attempts == 1:
                (data_dir / "hanging").touch()
                await asyncio.Event().wait()
            if n == 3 and mode == "kill-on-3":
                os.kill(os.getpid(), signal.SIGKILL)
            await asyncio.sleep(0.002)
            trace.write(f"end {job.id}\n")

        worker = Worker(queue, {"work": JobKind(work)}, concurrency=1)
        task = asyncio.create_task(worker.run())
        while not task.done():
            await asyncio.sleep(0.02)
            by_state = (await queue.stats()).by_state()
            if not any(by_state.get(s) for s in ("queued", "running")):
                worker.request_stop()
        await task
        await db.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
