"""Typed records that cross module boundaries. Storage turns rows into these; nothing here does I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class JobState(StrEnum):
    QUEUED = "queued"  # may run once run_at has come and no older job of its group is unfinished
    RUNNING = "running"  # leased by a worker
    DONE = "done"
    DEAD = "dead"  # failed for good; last_error says why


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a caller asks the queue to run."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    dedup_key: str | None = None
    group_key: str | None = None
    delay_s: float = 0.0
    max_attempts: int | None = None  # None: the queue's default
    dead_reason: str | None = None  # stored dead at once, with this reason (an unusable update)


class Job(NamedTuple):
    """A job as stored. A NamedTuple rather than a frozen dataclass: the worker builds one per
    claimed row on its hot path, and a tuple is built several times faster."""

    id: int
    kind: str
    payload: dict[str, Any]
    dedup_key: str | None
    group_key: str | None
    state: JobState
    attempts: int
    max_attempts: int
    run_at: float
    created_at: float
    updated_at: float
    lease_token: str | None
    lease_until: float | None
    deferred_since: float | None
    finished_at: float | None
    last_error: str | None
    checkpoint: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Enqueued:
    job: Job
    created: bool  # False: the dedup key already existed and nothing new was queued


@dataclass(frozen=True, slots=True)
class QueueStats:
    counts: dict[tuple[str, str], int]  # (state, kind) -> number of jobs
    oldest_waiting_age_s: float | None  # age of the oldest queued job

    def by_state(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (state, _kind), n in self.counts.items():
            totals[state] = totals.get(state, 0) + n
        return totals


class StoredTurn(NamedTuple):
    """One remembered message, as ``/export`` shows it."""

    role: str
    content: str
    created_at: float
    images: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation, as sent to the LLM."""

    role: str  # 'user' or 'assistant'
    content: str
    # Images the user sent with it: Telegram file ids as remembered, data: URLs in a request.
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatPrefs:
    """What one chat chose for itself; None everywhere is the bot's defaults (OPENAI_MODEL, the
    assistant persona, STREAM, memory on). Kept as chosen: whether a choice is still allowed
    is judged when it is used (the owner may have changed ALLOWED_MODELS or PERSONAS_FILE)."""

    model: str | None = None
    persona: str | None = None
    stream: bool | None = None
    memory: bool | None = None
    voice: str | None = None  # voice replies: "off", "on" or "auto" (None: VOICE_REPLY_DEFAULT)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one LLM, transcription or image generation call cost."""

    kind: str  # 'chat', 'transcription' or 'image'
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    cost_usd: float = 0.0
    estimated: bool = False  # the server did not say: tokens counted from the text (4 characters each)
    images: int = 0  # pictures generated
    spoken_chars: int = 0  # characters read aloud


@dataclass(frozen=True, slots=True)
class PurgeResult:
    done: int
    dead: int


@dataclass(frozen=True, slots=True)
class Prices:
    """What the owner pays, in USD: set in the configuration, never a built-in model table."""

    input_per_1m: float
    output_per_1m: float
    transcription_per_min: float
    per_model: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # MODEL_PRICES
    image_each: float = 0.0  # PRICE_IMAGE
    speech_per_1m_chars: float = 0.0  # PRICE_TTS_PER_1M_CHARS

    def cost(self, usage: Usage) -> float:
        """At the model's own prices (MODEL_PRICES) if it has any, else the default ones."""
        given, output = self._model_prices(usage.model)
        return (
            usage.prompt_tokens * given / 1e6
            + usage.completion_tokens * output / 1e6
            + usage.audio_seconds / 60 * self.transcription_per_min
            + usage.images * self.image_each
            + usage.spoken_chars * self.speech_per_1m_chars / 1e6
        )

    def _model_prices(self, model: str) -> tuple[float, float]:
        """The prices of ``model``, or of the longest name it extends: OpenAI answers with dated
        names ("gpt-4o-mini-2024-07-18") for the model asked as "gpt-4o-mini"."""
        if model in self.per_model:
            return self.per_model[model]
        extended = [name for name in self.per_model if model.startswith(name) and model[len(name)] in "-:@"]
        if extended:
            return self.per_model[max(extended, key=len)]
        return self.input_per_1m, self.output_per_1m


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Usage added up over a period: for one user, or for everyone."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    cost_usd: float = 0.0
    images: int = 0
    spoken_chars: int = 0


@dataclass(frozen=True, slots=True)
class CleanupResult:
    done_jobs: int
    dead_jobs: int
    messages: int = 0
    usage_rows: int = 0
