"""Logging setup (loguru). Owns sinks and redaction: every line passes through ``Redactor``
before it is written (to stderr, to the log file, as text or JSON), so no secret reaches a log,
tracebacks included."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from botcore.errors import StartupError

if TYPE_CHECKING:
    from loguru import Record

_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[component]: <8} | {message}"
_CONTEXT = ("update_id", "chat_id", "job_id", "kind", "attempt")  # bound per update or job


def _format(record: Record) -> str:
    extra = record["extra"]
    context = " ".join(f"{key}={{extra[{key}]}}" for key in _CONTEXT if key in extra)
    return _FORMAT + (f" [{context}]" if context else "") + "\n{exception}"


def _json_formatter(redact: Redactor) -> Callable[[Record], str]:
    """One JSON object per line. Every string is redacted before it is encoded (an encoded
    secret could be escaped beyond recognition), and the line is handed to loguru as a field,
    so braces in the data are never read as format placeholders."""

    def format_json(record: Record) -> str:
        extra = record["extra"]
        data: dict[str, object] = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "component": extra.get("component", "-"),
            "message": redact(record["message"]),
            **{key: _redacted(extra[key], redact) for key in _CONTEXT if key in extra},
        }
        if record["exception"] is not None:
            kind, value, tb = record["exception"]
            data["exception"] = redact("".join(traceback.format_exception(kind, value, tb)))  # no locals
        extra["_json"] = json.dumps(data, ensure_ascii=False, default=str)
        return "{extra[_json]}\n"

    return format_json


def _redacted(value: object, redact: Redactor) -> object:
    """``value`` with every string inside it redacted (for JSON lines and Sentry events)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v, redact) for v in value]
    return value


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Each secret also as repr() and JSON would escape it (a free-form key may hold quotes,
        # backslashes or non-ASCII). Longest first, so one that contains another goes whole.
        forms = {
            form
            for secret in secrets
            if len(secret) >= 6
            for form in (
                secret,
                repr(secret)[1:-1],
                json.dumps(secret)[1:-1],
                json.dumps(secret, ensure_ascii=False)[1:-1],
            )
        }
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text


class _ToLoguru(logging.Handler):
    """Routes standard-library logging (python-telegram-bot, httpx, asyncio) through loguru,
    and so through the same redaction."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        component = record.name.split(".")[0][:8]
        logger.bind(component=component).opt(exception=record.exc_info).log(level, record.getMessage())


def _drop_unparsable_batch(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Error while parsing updates")


def setup_logging(
    level: str,
    secrets: Iterable[str],
    stream: TextIO | None = None,
    *,
    json_lines: bool = False,
    file: Path | None = None,
    file_max_mb: float = 10.0,
    file_backups: int = 5,
) -> None:
    """Logs to ``stream`` (stderr), and to ``file`` if given, rotated at ``file_max_mb`` with
    ``file_backups`` old files kept. ``json_lines``: one JSON object per line instead of text."""
    redact = Redactor(secrets)
    out = stream if stream is not None else sys.stderr

    def to_stream(message: str) -> None:
        out.write(redact(str(message)))
        out.flush()

    logger.remove()
    logger.configure(extra={"component": "-"})
    formatter: Callable[[Record], str] = _json_formatter(redact) if json_lines else _format
    sinks: list[Callable[[str], None] | _RotatingFile] = [to_stream]
    if file is not None:
        sinks.append(_RotatingFile(file, file_max_mb, file_backups, redact))
    for sink in sinks:
        logger.add(sink, level=level, format=formatter, backtrace=False, diagnose=False, colorize=False)
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.INFO, force=True)
    # httpx logs every request line, and a Bot API URL carries the token: those lines only when
    # debugging (redacted like every line), else only warnings. The openai SDK may bring its own
    # copy of httpx, logging as "httpx2".
    chatty = logging.INFO if level in ("TRACE", "DEBUG") else logging.WARNING
    for name in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(name).setLevel(chatty)
    # With max_retries=0 the rate limiter logs every flood-control answer with a traceback; the
    # queue owns that retry and logs it in one line.
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
    # An update python-telegram-bot cannot parse makes it log the whole batch, every user's text
    # included, at CRITICAL with a traceback. The intake says so in one line of its own and reads
    # the batch as plain JSON: the library's line is noise, and other people's messages.
    for name in ("telegram.Bot", "telegram.ext.ExtBot"):
        logging.getLogger(name).addFilter(_drop_unparsable_batch)


def setup_sentry(dsn: str, secrets: Iterable[str], *, release: str) -> None:
    """Send errors to Sentry (sentry-sdk, an optional package), scrubbed by the same redaction:
    every event and breadcrumb is redacted as a whole before it leaves, and no local variables
    are attached. Call after ``setup_logging`` (which removes loguru's other sinks)."""
    try:
        import sentry_sdk
        from sentry_sdk.integrations.loguru import LoguruIntegration
    except ImportError:
        raise StartupError("SENTRY_DSN: needs the sentry-sdk package (pip install sentry-sdk)") from None
    redact = Redactor(secrets)

    def scrub(event: Any, _hint: Any) -> Any:
        return _redacted(event, redact)

    sentry_sdk.init(
        dsn=dsn,
        release=release,
        before_send=scrub,
        before_breadcrumb=scrub,
        trace_propagation_targets=[],  # no "baggage" header (it carries the DSN's key) to upstreams
        include_local_variables=False,
        integrations=[LoguruIntegration()],
    )


class _RotatingFile:
    """A sink writing redacted lines to a file rotated by size (the standard library's rotation:
    ``bot.log``, ``bot.log.1`` … ``bot.log.<backups>``). loguru calls ``stop`` when removing it."""

    def __init__(self, path: Path, max_mb: float, backups: int, redact: Redactor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=int(max_mb * 1024 * 1024), backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._redact = redact

    def write(self, message: str) -> None:
        self._handler.emit(logging.makeLogRecord({"msg": self._redact(str(message)).rstrip("\n")}))

    def stop(self) -> None:
        self._handler.close()
