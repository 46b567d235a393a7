"""Logging setup (loguru). Owns sinks and redaction: every line passes through ``Redactor``
before it is written, so no secret reaches a log, tracebacks included."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[component]: <8} | {message}"
_CONTEXT = ("update_id", "chat_id", "job_id", "kind", "attempt")  # bound per update or job


def _format(record: Record) -> str:
    extra = record["extra"]
    context = " ".join(f"{key}={{extra[{key}]}}" for key in _CONTEXT if key in extra)
    return _FORMAT + (f" [{context}]" if context else "") + "\n{exception}"


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

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


def setup_logging(level: str, secrets: Iterable[str], stream: TextIO | None = None) -> None:
    redact = Redactor(secrets)
    out = stream if stream is not None else sys.stderr

    def sink(message: str) -> None:
        out.write(redact(str(message)))
        out.flush()

    logger.remove()
    logger.configure(extra={"component": "-"})
    logger.add(sink, level=level, format=_format, backtrace=False, diagnose=False, colorize=False)
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.INFO, force=True)
    # httpx logs every request line, and a Bot API URL carries the token: keep only its warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # With max_retries=0 the rate limiter logs every flood-control answer with a traceback; the
    # queue owns that retry and logs it in one line.
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
