"""What ``/cancel`` can stop: the generations and transcriptions running now, per chat. A stop
requested this way surfaces as ``StoppedByUser`` (never retried); any other cancellation, such
as shutdown, stays a cancellation, so the job goes back to the queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from botcore.errors import StoppedByUser


class Cancels:
    def __init__(self) -> None:
        self._running: dict[int, dict[int, asyncio.Task[object]]] = {}  # chat -> job -> task
        self._requested: set[int] = set()  # job ids the user asked to stop

    @contextlib.asynccontextmanager
    async def scope(self, chat_id: int, job_id: int) -> AsyncIterator[None]:
        """Run the block as work ``/cancel`` in this chat may stop."""
        task = asyncio.current_task()
        assert task is not None
        self._running.setdefault(chat_id, {})[job_id] = task
        try:
            yield
        except asyncio.CancelledError:
            if job_id not in self._requested:
                raise
            task.uncancel()  # this cancellation was ours, and it ends here
            raise StoppedByUser("stopped by the user (/cancel)") from None
        finally:
            self._requested.discard(job_id)
            running = self._running.get(chat_id, {})
            running.pop(job_id, None)
            if not running:
                self._running.pop(chat_id, None)

    def cancel(self, chat_id: int) -> int:
        """Stop what runs in this chat now; how many were stopped."""
        running = self._running.get(chat_id, {})
        for job_id, task in running.items():
            self._requested.add(job_id)
            task.cancel()
        return len(running)
