"""The optional HTTP endpoint (``METRICS_PORT``): ``GET /healthz`` answers 200 when polling is
alive, the database takes a write and the workers run, else 503 with the reasons; ``GET
/metrics`` is the Prometheus text exposition. A few lines of asyncio, so the base install needs
no web framework; it serves one small request per connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loguru import logger

from botcore.clock import Clock, day_start
from botcore.intake import UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.metrics import Metrics
from botcore.storage import HEALTH_PROBE_KEY, KeyValueStore, UsageStore

_PROBE_TIMEOUT_S = 2.0
_PROBE_EVERY_S = 5.0


class HealthServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        poller: UpdatePoller,
        kv: KeyValueStore,
        queue: JobQueue,
        usage: UsageStore,
        metrics: Metrics,
        workers_running: Callable[[], bool],
        clock: Clock,
        poll_stale_s: float = 90.0,
        store_stale_s: float = 60.0,
        polling: Callable[[], bool] = lambda: True,  # whether this process polls Telegram now
    ) -> None:
        self._polling = polling
        self._polled_since = clock.now()  # when this process last started to poll
        self._host, self._port = host, port
        self._poller = poller
        self._kv = kv
        self._queue = queue
        self._usage = usage
        self._metrics = metrics
        self._workers_running = workers_running
        self._clock = clock
        self._poll_stale_s = poll_stale_s  # a long poll lasts 30 s; three missed ones are trouble
        self._store_stale_s = store_stale_s
        self._started = clock.now()
        self._server: asyncio.Server | None = None
        self._connections = asyncio.Semaphore(8)  # a scraper and a monitor need no more
        self._probe: asyncio.Task[str | None] | None = None  # one write probe shared by all
        self._probe_at = -1e18
        self._log = logger.bind(component="health")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self._log.info("health and metrics on http://{}:{}/healthz and /metrics", self._host, self._port)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._probe is not None:
            await asyncio.gather(self._probe, return_exceptions=True)

    async def problems(self) -> list[str]:
        """Why the bot is unhealthy; empty when it is well."""
        found = []
        now = self._clock.now()
        if not self._polling():  # a webhook, a worker, or another process polls
            self._polled_since = now
        else:
            last_poll = max(self._poller.last_poll_at or self._started, self._polled_since)
            if now - last_poll > self._poll_stale_s:
                found.append("polling Telegram has not succeeded lately")
        failing_since = self._poller.store_failing_since
        if failing_since is not None and now - failing_since > self._store_stale_s:
            found.append(f"updates could not be stored for {now - failing_since:.0f} s")
        problem = await self._database_problem()
        if problem is not None:
            found.append(problem)
        if not self._workers_running():
            found.append("the workers are not running")
        return found

    async def _database_problem(self) -> str | None:
        """A small write, at most one at a time and one every few seconds however often the
        endpoint is asked: probes must not pile up in front of the bot's own statements."""
        if self._probe is None or (
            self._probe.done() and self._clock.now() - self._probe_at > _PROBE_EVERY_S
        ):
            self._probe_at = self._clock.now()
            self._probe = asyncio.create_task(self._write_probe())
        try:
            return await asyncio.wait_for(asyncio.shield(self._probe), _PROBE_TIMEOUT_S)
        except TimeoutError:
            return "the database is not writable (a write is waiting on a lock)"

    async def _write_probe(self) -> str | None:
        try:
            await self._kv.put(HEALTH_PROBE_KEY, str(self._clock.now()))
        except Exception as exc:  # locked, read-only, disk full… the reason is what matters
            return f"the database is not writable ({type(exc).__name__})"
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections.locked():
            writer.close()  # too many at once
            return
        async with self._connections:
            await self._answer(reader, writer)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 and parts[0] == "GET" else ""
            if path == "/healthz":
                problems = await self.problems()
                status, body = (503, "\n".join(problems)) if problems else (200, "ok")
                await self._reply(writer, status, body.encode() + b"\n", "text/plain; charset=utf-8")
            elif path == "/metrics":
                now = self._clock.now()
                body = self._metrics.render(
                    await self._queue.stats(), await self._usage.summary(since=day_start(now))
                )
                await self._reply(writer, 200, body, "text/plain; version=0.0.4; charset=utf-8")
            else:
                await self._reply(writer, 404, b"not found: try /healthz or /metrics\n", "text/plain")
        except (TimeoutError, ConnectionError, ValueError):  # slow, gone, or a line too long
            pass
        except Exception as exc:
            self._log.opt(exception=exc).error("health endpoint failed")
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str) -> None:
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
