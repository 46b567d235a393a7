"""Prometheus metrics (prometheus-client) in a registry of our own: counters and histograms fed
by hooks (jobs, upstream calls), and gauges read when scraped (updates received, jobs by state
and kind, circuit states, today's tokens and cost). Serving them is ``health.py``'s job."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from botcore.breaker import BreakerState, CircuitBreaker
from botcore.concurrency import LlmLimits
from botcore.models import Job, QueueStats, Usage, UsageSummary

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
_STATES = tuple(BreakerState)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._job_duration = Histogram(
            "bot_job_duration_seconds",
            "How long a job's attempt ran, by kind and outcome",
            ["kind", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            "bot_job_queue_wait_seconds",
            "How long a job waited in the queue after it was due",
            ["kind"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600),
            registry=self.registry,
        )
        self._upstream = Histogram(
            "bot_upstream_latency_seconds",
            "LLM and transcription calls, by upstream and outcome",
            ["upstream", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._spent = Counter(
            "bot_cost_usd", "Money spent on LLM and transcription calls", ["kind"], registry=self.registry
        )
        self._tokens = Counter(
            "bot_tokens", "Tokens used, by direction", ["direction"], registry=self.registry
        )
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    def watch(
        self,
        *,
        breakers: Mapping[str, CircuitBreaker],
        updates_received: Callable[[], int],
        llm_limit: LlmLimits | None = None,
    ) -> None:
        """What is read live at each scrape."""
        self._snapshot.breakers, self._snapshot.updates_received = breakers, updates_received
        self._snapshot.llm_limit = llm_limit

    def job_finished(self, job: Job, outcome: str, duration_s: float, waited_s: float) -> None:
        self._job_duration.labels(job.kind, outcome).observe(duration_s)
        self._queue_wait.labels(job.kind).observe(waited_s)

    def upstream_call(self, upstream: str, outcome: str, seconds: float) -> None:
        self._upstream.labels(upstream, outcome).observe(seconds)

    def spent(self, usage: Usage) -> None:
        self._spent.labels(usage.kind).inc(usage.cost_usd)
        self._tokens.labels("prompt").inc(usage.prompt_tokens)
        self._tokens.labels("completion").inc(usage.completion_tokens)

    def render(self, queue: QueueStats, today: UsageSummary) -> bytes:
        """The text exposition, with the database's figures read just before."""
        self._snapshot.queue, self._snapshot.today = queue, today
        return generate_latest(self.registry)


class _Snapshot(Collector):
    def __init__(self) -> None:
        self.breakers: Mapping[str, CircuitBreaker] = {}
        self.updates_received: Callable[[], int] = lambda: 0
        self.llm_limit: LlmLimits | None = None
        self.queue = QueueStats(counts={}, oldest_waiting_age_s=None)
        self.today = UsageSummary()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "bot_updates_received", "Telegram updates received", value=self.updates_received()
        )
        jobs = GaugeMetricFamily(
            "bot_jobs", "Jobs in the queue's table, by state and kind", labels=["state", "kind"]
        )
        for (state, kind), count in sorted(self.queue.counts.items()):
            jobs.add_metric([state, kind], count)
        yield jobs
        age = self.queue.oldest_waiting_age_s
        yield GaugeMetricFamily(
            "bot_oldest_waiting_job_seconds", "Age of the oldest queued job (0: none)", value=age or 0.0
        )
        circuit = GaugeMetricFamily(
            "bot_circuit_state", "1 for each upstream's current circuit state", labels=["upstream", "state"]
        )
        for name, breaker in self.breakers.items():
            current = breaker.state
            for state in _STATES:
                circuit.add_metric([name, state.value], 1.0 if state is current else 0.0)
        yield circuit
        yield GaugeMetricFamily(
            "bot_requests_today", "LLM and transcription calls today (UTC)", value=self.today.requests
        )
        yield GaugeMetricFamily("bot_cost_usd_today", "Money spent today (UTC)", value=self.today.cost_usd)
        if self.llm_limit is not None:
            allowed = GaugeMetricFamily(
                "bot_llm_concurrency_limit", "LLM calls allowed at once now, per model", labels=["model"]
            )
            running = GaugeMetricFamily(
                "bot_llm_calls_in_flight", "LLM calls running now, per model", labels=["model"]
            )
            for model, limit in self.llm_limit.items():
                allowed.add_metric([model], limit.limit)
                running.add_metric([model], limit.in_use)
            yield allowed
            yield running
