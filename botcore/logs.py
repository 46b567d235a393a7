"""Logging setup (loguru). Owns sinks and redaction: every line passes through ``Redactor``
before it is written, so no secret reaches a log, tracebacks included."""

from __future__ import annotations

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


def setup_logging(level: str, secrets: Iterable[str], stream: TextIO | None = None) -> None:
    redact = Redactor(secrets)
    out = stream if stream is not None else sys.stderr

    def sink(message: str) -> None:
        out.write(redact(str(message)))
        out.flush()

    logger.remove()
    logger.configure(extra={"component": "-"})
    logger.add(sink, level=level, format=_format, backtrace=False, diagnose=False, colorize=False)
