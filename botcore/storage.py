"""The storage seam: one ``typing.Protocol`` per store (jobs, conversation memory, usage, small
named values, each chat's choices), the ``Storage`` bundle the app builds from settings, and
every key-value key's name. Services and the queue depend on these, never on a database
library. No I/O here.

A backend raises ``errors.StorageUnavailable`` when the database refuses work for now (locked,
full, an I/O error), and its own exception when one piece of data is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from botcore.models import (
    ChatPrefs,
    Enqueued,
    Job,
    JobState,
    NewJob,
    PurgeResult,
    QueueStats,
    StoredTurn,
    Turn,
    Usage,
    UsageSummary,
)

# -- every key-value key, named here -----------------------------------------------------------
OFFSET_KEY = "intake.offset"  # where polling resumes after a restart
HEALTH_PROBE_KEY = "health.probe"  # a small write that proves the database takes writes
COST_ALERT_PREFIX = "cost-alert:"  # + the UTC date: that day's cost alert was sent
PEER_PREFIX = "peer:"  # + a process's id: when it was last alive (several processes share limits)
ALBUM_PREFIX = "album-in:"  # + hour, chat, album: an album let in (its parts may reach other processes)


def ack_decision_key(chat_id: int, message_id: int) -> str:
    """What a message's acknowledgement decided (the message id to edit, or "refused"), for the
    job that does its work, which deletes it when done (``acks``). Named "voice-ack" since voice
    notes were the first such work: a note in flight across an upgrade keeps its decision."""
    return f"voice-ack:{chat_id}:{message_id}"


def album_part_key(chat_id: int, message_id: int) -> str:
    """This album part was asked about with the album's first: its own job has nothing to do
    (and deletes the key)."""
    return f"album-part:{chat_id}:{message_id}"


def album_key(hour: int, chat_id: int, album: str) -> str:
    """An album let in during ``hour`` (hours since the epoch, zero-padded so that keys sort by
    it and the old ones are deleted with one range)."""
    return f"{ALBUM_PREFIX}{hour:010d}:{chat_id}:{album}"


def llm_params_key(base_url: str, model: str) -> str:
    """Which request parameters this server and model accept (``llm_params.Params``, JSON)."""
    return f"llm-params:{base_url}|{model}"


def cost_alert_key(utc_date: str) -> str:
    """The key that says the daily cost alert of ``utc_date`` (YYYY-MM-DD) was sent; dated keys
    sort by date, so the old ones are deleted with one range."""
    return COST_ALERT_PREFIX + utc_date


Lease = tuple[int, str]  # a job id and the lease token its claim got


STATES = {state.value: state for state in JobState}


def dump(value: Mapping[str, Any]) -> str:
    """A job's payload or checkpoint as every backend stores it: compact JSON text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def job_from_row(row: Sequence[Any]) -> Job:
    """A ``jobs`` row, its columns in the order every backend selects them, as a ``Job``.
    Positional: this runs once per claimed row on the worker's hot path."""
    checkpoint = None if row[16] is None else json.loads(row[16])
    return Job(row[0], row[1], json.loads(row[2]), row[3], row[4], STATES[row[5]], *row[6:16], checkpoint)


def images_of(stored: object) -> tuple[str, ...]:
    """A remembered question's images (Telegram file ids) from the JSON a backend keeps them
    in; nothing for anything else (a row written by hand, an older row)."""
    try:
        images = json.loads(stored) if isinstance(stored, str) else []
    except ValueError:
        return ()
    return tuple(i for i in images if isinstance(i, str)) if isinstance(images, list) else ()


class JobStore(Protocol):
    """The durable queue's rows. Writes that take leases are fenced by the lease token: a job
    whose lease passed to a newer attempt is left alone, and the caller learns so."""

    async def insert_many(
        self, new_jobs: Sequence[NewJob], *, max_attempts: int, now: float
    ) -> list[Enqueued]:
        """All or nothing; a job whose dedup key exists is returned as it is, not queued again."""
        ...

    async def finish_and_claim(
        self, leases: Sequence[Lease], wants: Mapping[str, int], *, limit: int, now: float, lease_s: float
    ) -> tuple[set[int], list[Job]]:
        """Mark the leased jobs done and lease up to ``wants[kind]`` ready jobs per kind, ``limit``
        in all, oldest first, none whose group has an older unfinished job. Atomic."""
        ...

    async def next_run_at(self, kinds: Iterable[str], *, after: float) -> float | None: ...

    async def renew(self, leases: Sequence[Lease], *, lease_until: float, now: float) -> set[int]: ...

    async def reschedule(
        self, job_id: int, token: str, *, run_at: float, error: str, now: float, deferred: bool
    ) -> Job | None: ...

    async def bury(self, job_id: int, token: str, *, error: str, now: float) -> Job | None: ...

    async def release_many(self, leases: Sequence[Lease], *, now: float) -> int: ...

    async def recover(self, *, now: float, expired_before: float, error: str) -> list[Job]: ...

    async def save_checkpoint(
        self, job_id: int, token: str, data: Mapping[str, Any], *, now: float
    ) -> bool: ...

    async def by_dedup_key(self, key: str) -> Job | None: ...

    async def get(self, job_id: int) -> Job | None: ...

    async def queued_in_group(self, group_key: str, kind: str, *, limit: int = 100) -> list[Job]:
        """The queued jobs of ``kind`` in ``group_key``, oldest first (an album's other parts)."""
        ...

    async def latest_dead(self, limit: int) -> list[Job]: ...

    async def revive(self, job_id: int, *, now: float) -> Job | None: ...

    async def stats(self, *, now: float) -> QueueStats: ...

    async def purge(self, *, done_before: float, dead_before: float) -> PurgeResult: ...


class ConversationStore(Protocol):
    """Per-chat memory. Storing a job's exchange twice is a no-op."""

    async def history(
        self, chat_id: int, *, limit: int, since: float, leave_out_job: int | None = None
    ) -> list[Turn]: ...

    async def add_exchange(
        self,
        chat_id: int,
        *,
        job_id: int,
        user_text: str,
        answer: str,
        now: float,
        replaces_job: int | None = None,
        user_images: Sequence[str] = (),
    ) -> None: ...

    async def last_exchange(self, chat_id: int) -> tuple[int, Turn] | None: ...

    async def transcript(self, chat_id: int, *, since: float, limit: int) -> list[StoredTurn]:
        """The chat's remembered messages since ``since``, oldest first, the newest ``limit``."""
        ...

    async def reset(self, chat_id: int) -> int: ...

    async def purge_expired(self, *, before: float) -> int: ...


class UsageStore(Protocol):
    """Billed calls, recorded once per billing key, and their sums."""

    async def record(
        self,
        usage: Usage,
        *,
        key: str,
        job_id: int | None,
        chat_id: int | None,
        user_id: int | None,
        now: float,
    ) -> bool: ...

    async def summary(self, *, since: float, user_id: int | None = None) -> UsageSummary: ...

    async def top_users(self, *, since: float, limit: int = 5) -> list[tuple[int, UsageSummary]]: ...

    async def purge(self, *, before: float) -> int: ...


class KeyValueStore(Protocol):
    """Small named values that must survive a restart; their keys are named above."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...

    async def add(self, key: str, value: str) -> bool:
        """Store unless the key exists (atomic); True if this call stored it."""
        ...

    async def delete(self, key: str) -> None: ...

    async def delete_before(self, prefix: str, before: str) -> int: ...

    async def with_prefix(self, prefix: str, *, limit: int = 1000) -> dict[str, str]:
        """The keys that start with ``prefix`` and their values, the first ``limit`` in key order."""
        ...


class ChatPrefsStore(Protocol):
    """Each chat's own choices (/model, /persona, /settings); a chat that chose nothing has none."""

    async def get(self, chat_id: int) -> ChatPrefs:
        """This chat's choices; all defaults (``ChatPrefs()``) when it made none."""
        ...

    async def put(self, chat_id: int, prefs: ChatPrefs, *, now: float) -> None:
        """Replace this chat's choices; all defaults forgets the chat."""
        ...


class RateCounter(Protocol):
    """Message rate limits counted in the database, for several processes (None with one)."""

    async def hit(
        self, limits: Sequence[tuple[str, int]], *, window_s: int, now: float
    ) -> tuple[int, float] | None:
        """Count one message against every ``(key, limit)`` if all have room, atomically; else
        count nothing and return the index of the full one and the seconds until it has room."""
        ...


class Leadership(Protocol):
    """One named role ("cleanup", "polling") that exactly one process holds at a time."""

    async def hold(self) -> bool:
        """True while this process holds the role: takes it when free, confirms it when held.
        Never raises; an unreachable database means not held. Called every few seconds."""
        ...

    async def release(self) -> None: ...


class Storage(Protocol):
    """One backend's stores, opened together, closed together."""

    jobs: JobStore
    conversations: ConversationStore
    usage: UsageStore
    kv: KeyValueStore
    prefs: ChatPrefsStore
    rates: RateCounter | None  # shared rate limits; None: this process's own are the bot's
    # Other processes may work the same data at the same time: recovery then takes back only
    # jobs whose lease ran out, never all 'running' ones (False: a lockfile proves we are alone).
    shared: bool

    def leadership(self, name: str) -> Leadership: ...

    async def watch_enqueues(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``wake`` whenever another process queues jobs, until ``stop`` (returns at once
        when no other process can)."""
        ...

    @property
    def description(self) -> str:
        """Where the data lives, for the startup log line (never a password)."""
        ...

    async def maintain(self) -> None:
        """Keep the files bounded (statistics, checkpoints); cheap, and safe to call any time."""
        ...

    async def close(self) -> None: ...
