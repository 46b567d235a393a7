"""The bot's one error taxonomy. Foreign exceptions are translated into these where they
enter our code; workers and handlers see only these. Text for chat users lives elsewhere.

    BotError
    ├── StartupError            the process cannot start; one line to stderr, exit status 2
    │   ├── ConfigError         a setting is missing or malformed (names the variable)
    │   ├── SchemaTooNewError   the database was written by a newer version of the bot
    │   └── AlreadyRunningError another process holds the data directory
    └── JobError                raised by job handlers; the queue decides what happens next
        ├── TransientError      may succeed later: retried with backoff or after retry_after
        ├── UpstreamUnavailable a dependency is down (breaker open): deferred, no attempt spent
        └── PermanentError      retrying cannot help: the job goes straight to dead
            └── ContextTooLongError  the conversation no longer fits the model's context
"""

from __future__ import annotations


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


class JobError(BotError):
    """Raised by a job handler to tell the queue how the attempt ended."""


class TransientError(JobError):
    """Worth retrying. ``retry_after`` (seconds) overrides the backoff when the upstream said so."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamUnavailable(JobError):
    """A dependency refuses work for now (circuit open). The job waits without spending an attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(JobError):
    """Retrying cannot help (bad input, 4xx). The job goes to dead at once."""


class ContextTooLongError(PermanentError):
    """The LLM refused the request as longer than its context window."""


def parse_retry_after(value: str | None, *, cap_s: float = 600.0) -> float | None:
    """An HTTP ``Retry-After`` in seconds (the date form is ignored: the queue's backoff applies)."""
    if value is None:
        return None
    try:
        return min(max(0.0, float(value)), cap_s)
    except ValueError:
        return None
