"""The bot's one error taxonomy. Foreign exceptions are translated into these where they
enter our code; workers and handlers see only these. Text for chat users lives elsewhere.

    BotError
    ├── StartupError            the process cannot start; one line to stderr, exit status 2
    │   ├── ConfigError         a setting is missing or malformed (names the variable)
    │   ├── SchemaTooNewError   the database was written by a newer version of the bot
    │   └── AlreadyRunningError another process holds the data directory
    ├── StorageUnavailable      the database refuses work for now (locked, full, I/O): retry the
    │                           same work later, rather than set one piece of data aside
    └── JobError                raised by job handlers; the queue decides what happens next
        ├── LeaseLostError      another attempt owns the job now: this one stops, nothing is blamed
        ├── TransientError      may succeed later: retried with backoff or after retry_after
        ├── UpstreamUnavailable a dependency is down (breaker open): deferred, no attempt spent
        ├── NotYet              waits for another job (a voice note's acknowledgement): deferred
        └── PermanentError      retrying cannot help: the job goes straight to dead
            ├── ContextTooLongError  the conversation no longer fits the model's context
            └── StoppedByUser        the user sent /cancel

Every ``JobError`` carries a ``Cause``: what the user and the admins are told depends on it,
never on the error's own text. One that ended a call the provider billed anyway (an empty
answer, a content filter, a stream broken after text) carries that call's ``usage`` too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botcore.models import Usage


class Cause(StrEnum):
    """Why a job's attempt failed, in the words the user-facing side needs."""

    TIMEOUT = "timeout"  # the upstream took too long
    UNAVAILABLE = "unavailable"  # unreachable, or HTTP 5xx
    RATE_LIMITED = "rate-limited"  # HTTP 429 rate_limit_exceeded: wait a moment
    CIRCUIT_OPEN = "circuit-open"  # our breaker keeps calls away from a failing upstream
    QUOTA = "quota"  # HTTP 429 insufficient_quota: a billing problem; admins are alerted
    AUTH = "auth"  # HTTP 401/403 from an API: a bad key; admins are alerted
    CONTEXT_TOO_LONG = "context-too-long"
    BLOCKED = "blocked"  # Telegram: the bot may not write to this chat any more
    TELEGRAM = "telegram"  # Telegram itself failed (down, flood control): not the AI service
    STOPPED = "stopped"  # the user sent /cancel
    THOUGHT_ONLY = "thought-only"  # a reasoning model spent its token budget thinking: no answer
    NO_SUCH_MODEL = "no-such-model"  # the server does not know the model this chat uses
    BAD_FILE = "bad-file"  # a photo or document we cannot read: corrupt, too large once decoded…
    NO_TEXT = "no-text"  # a document without text to read (a scanned PDF)
    NO_VISION = "no-vision"  # the model this chat uses cannot see images
    REFUSED = "refused"  # the provider would not do this (an image prompt against its policy)
    OTHER = "other"


class BotError(Exception):
    """Base of every error this project raises on purpose."""


class StartupError(BotError):
    """The process cannot start. ``str(err)`` is the one line shown to the operator."""


class ConfigError(StartupError):
    def __init__(self, variable: str, expected: str, got: str | None = None) -> None:
        self.variable = variable
        self.expected = expected
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"{variable}: expected {expected}{shown}")


class SchemaTooNewError(StartupError):
    pass


class AlreadyRunningError(StartupError):
    pass


class StorageUnavailable(BotError):
    """Raised by a storage backend when the database, not the data, is the problem (another
    program holds its lock, the disk is full, an I/O error). ``str(err)`` is the backend's reason."""


class JobError(BotError):
    """Raised by a job handler to tell the queue how the attempt ended."""

    default_cause = Cause.OTHER

    def __init__(self, message: str, *, cause: Cause | None = None, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.cause = cause or self.default_cause
        self.usage = usage  # what the failed call was billed, if the provider billed it


class LeaseLostError(JobError):
    """The job's lease passed to a newer attempt: this attempt stops. Not the upstream's fault,
    so no circuit breaker counts it, and the queue's fenced writes ignore it."""


class TransientError(JobError):
    """Worth retrying. ``retry_after`` (seconds) overrides the backoff when the upstream said so.
    ``shared`` is set by the circuit breaker when other callers meet the same failure (an outage,
    not this one request): only then may a job wait for the service past its attempts."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        cause: Cause | None = None,
        usage: Usage | None = None,
        shared: bool = False,
    ) -> None:
        super().__init__(message, cause=cause, usage=usage)
        self.retry_after = retry_after
        self.shared = shared


class UpstreamUnavailable(JobError):
    """A dependency refuses work for now (circuit open). The job waits without spending an attempt."""

    default_cause = Cause.UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = None, cause: Cause | None = None) -> None:
        super().__init__(message, cause=cause)
        self.retry_after = retry_after


class NotYet(JobError):
    """This job must wait for another one to finish first; it runs again shortly without
    spending an attempt. Nobody failed, so no breaker counts it and the user is told nothing."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(JobError):
    """Retrying cannot help (bad input, 4xx). The job goes to dead at once."""


class StoppedByUser(PermanentError):
    """The user stopped this work with /cancel: it is not retried, and nothing more is said."""

    default_cause = Cause.STOPPED


class ContextTooLongError(PermanentError):
    """The LLM refused the request as longer than its context window."""

    default_cause = Cause.CONTEXT_TOO_LONG


def parse_retry_after(value: str | None, *, cap_s: float = 600.0) -> float | None:
    """An HTTP ``Retry-After`` in seconds (the date form is ignored: the queue's backoff applies)."""
    if value is None:
        return None
    try:
        return min(max(0.0, float(value)), cap_s)
    except ValueError:
        return None


def http_error(
    service: str, status: int, *, key_variable: str, code: str | None = None, retry_after: float | None = None
) -> JobError:
    """The one mapping from an upstream API's HTTP error status to our taxonomy (``code`` is the
    JSON error code some APIs add). Our own words only: the server's text is never passed on."""
    if status == 429 and code == "insufficient_quota":
        return PermanentError(
            f"{service}: the account is out of quota (insufficient_quota); check its billing",
            cause=Cause.QUOTA,
        )
    if status == 429:  # rate limited: waiting is the cure, so no attempt is spent
        return UpstreamUnavailable(
            f"{service}: rate limited", retry_after=retry_after, cause=Cause.RATE_LIMITED
        )
    if status == 408:
        return TransientError(f"{service}: timed out (HTTP 408)", cause=Cause.TIMEOUT)
    if status == 409 or status >= 500:
        return TransientError(f"{service}: HTTP {status}", retry_after=retry_after, cause=Cause.UNAVAILABLE)
    if status in (401, 403):
        return PermanentError(
            f"{service}: the API key was refused (HTTP {status}); check {key_variable}", cause=Cause.AUTH
        )
    return PermanentError(f"{service}: refused the request (HTTP {status}" + (f", {code})" if code else ")"))
