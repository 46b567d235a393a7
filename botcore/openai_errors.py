"""The one translation of the openai SDK's errors into our taxonomy, and the one way its client
is made, for every adapter that speaks an OpenAI-compatible API (chat, transcription, speech,
images)."""

from __future__ import annotations

import re

import openai
from openai import AsyncOpenAI

from botcore.errors import (
    Cause,
    ContextTooLongError,
    JobError,
    PermanentError,
    TransientError,
    http_error,
    parse_retry_after,
)


def make_client(*, api_key: str, base_url: str, timeout_s: float) -> AsyncOpenAI:
    """A client that never retries by itself (retries belong to the queue). A local server needs
    no key, but the SDK refuses an empty one."""
    return AsyncOpenAI(api_key=api_key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=0)


NOT_A_COMPLETION = "the LLM server's answer was not a chat completion (is OPENAI_BASE_URL right?)"


def translate(
    exc: openai.APIError, *, service: str = "LLM", key_variable: str = "OPENAI_API_KEY", model: str = ""
) -> JobError:
    """Map an SDK error to our taxonomy: worth retrying, worth waiting for, or not. The messages
    are ours (admins may read them); the server's own text is never passed on."""
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"{service}: timed out", cause=Cause.TIMEOUT)
    if isinstance(exc, openai.APIConnectionError):
        # A server unreachable or dropping connections: an outage, whoever asked.
        return TransientError(f"{service}: unreachable", cause=Cause.UNAVAILABLE, shared=True)
    if isinstance(exc, openai.APIResponseValidationError):
        return PermanentError(NOT_A_COMPLETION)
    if isinstance(exc, openai.APIStatusError):
        code = _error_code(exc)
        if exc.status_code == 400 and (
            code == "context_length_exceeded" or "context length" in str(exc).lower()
        ):
            return ContextTooLongError("the conversation is longer than the model's context")
        if exc.status_code in (400, 404) and _unknown_model(code, str(exc)):
            return PermanentError(
                f"{service}: the server does not know the model {model!r}", cause=Cause.NO_SUCH_MODEL
            )
        return http_error(
            service,
            exc.status_code,
            key_variable=key_variable,
            code=code,
            retry_after=parse_retry_after(exc.response.headers.get("retry-after")),
        )
    if isinstance(exc.body, dict):  # an error event inside a 200 stream (OpenRouter sends them)
        return _stream_error(service, exc.body, key_variable)
    return TransientError(f"{service}: {type(exc).__name__}")


# An error event's string code, as the HTTP status it stands for.
_CODES = {
    "rate_limit_exceeded": 429,
    "rate_limited": 429,
    "insufficient_quota": 429,
    "overloaded": 503,
    "overloaded_error": 503,
    "server_error": 502,
    "timeout": 408,
    "context_length_exceeded": 400,
    "invalid_api_key": 401,
}


def _stream_error(service: str, body: dict[str, object], key_variable: str) -> JobError:
    """An error that came as an event of a stream that had begun with HTTP 200: judged by its
    code (a number, as OpenRouter sends, or a word) as the same error would be as a status."""
    code = body.get("code")
    word = str(code) if isinstance(code, str) and code else None
    if word == "context_length_exceeded":
        return ContextTooLongError("the conversation is longer than the model's context")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        status = code
    elif word is not None and word.isdigit() and 400 <= int(word) < 600:
        status = int(word)
    else:
        status = _CODES.get(word or "", 502)  # an error we do not know: the server's trouble
    return http_error(f"{service} (in the stream)", status, key_variable=key_variable, code=word)


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else None


# How servers say they do not know a model: OpenAI's code, vLLM's and Ollama's 404 texts
# ("The model `x` does not exist", "model 'x' not found"), OpenRouter's 400 ("not a valid model ID").
_UNKNOWN_MODEL = re.compile(
    r"model\b.*\b(not found|does not exist|not a valid model)", re.IGNORECASE | re.DOTALL
)


def _unknown_model(code: str | None, text: str) -> bool:
    return code == "model_not_found" or bool(_UNKNOWN_MODEL.search(text))
