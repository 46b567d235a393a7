"""Group commit for producers: calls that arrive while a write is under way wait, and the next
write stores them all (one round trip and one commit), so many concurrent enqueues cost about
what one does. Each caller returns once its own jobs are committed. Knows no database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from botcore.errors import StorageUnavailable
from botcore.models import Enqueued, NewJob

Write = Callable[[Sequence[NewJob]], Awaitable[list[Enqueued]]]  # all or nothing, in order


class _Request(NamedTuple):
    """One producer's call, waiting for the write that carries it."""

    jobs: Sequence[NewJob]
    done: asyncio.Future[list[Enqueued]]


class GroupCommit:
    def __init__(self, write: Write) -> None:
        self._write_jobs = write
        self._waiting: list[_Request] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, jobs: Sequence[NewJob]) -> list[Enqueued]:
        """Store ``jobs`` (all or none) with whatever else is waiting; their results, in order.
        Cancelling this await leaves the others alone: the jobs are stored if their write has
        begun, and not at all if it has not."""
        if not jobs:
            return []
        request = _Request(jobs, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_waiting())
        return await request.done

    async def _write_waiting(self) -> None:
        """Store what producers asked for, one group per write, until nobody waits."""
        group: list[_Request] = []
        try:
            while self._waiting:
                group = [r for r in self._waiting if not r.done.done()]  # not the cancelled
                self._waiting = []
                await self._write_group(group)
        except BaseException as exc:  # the loop shutting down, or a bug: no caller may hang
            for request in [*group, *self._waiting]:
                _fail(request.done, exc)
            self._waiting = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None

    async def _write_group(self, group: list[_Request]) -> None:
        """One write for the whole group. If it is refused for its data, not because the database
        refuses work, each request is written alone, so bad data fails only its own caller."""
        try:
            await self._write(group)
        except Exception as exc:
            if isinstance(exc, StorageUnavailable) or len(group) == 1:
                for request in group:
                    _fail(request.done, exc)
                return
            for request in group:
                try:
                    await self._write([request])
                except StorageUnavailable as outage:  # the others would each wait it out in turn
                    for other in group:
                        _fail(other.done, outage)
                    return
                except Exception as refused:
                    _fail(request.done, refused)

    async def _write(self, group: list[_Request]) -> None:
        results = await self._write_jobs([job for request in group for job in request.jobs])
        start = 0
        for request in group:
            if not request.done.done():
                request.done.set_result(results[start : start + len(request.jobs)])
            start += len(request.jobs)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
