"""The chat LLM adapter: one chat completion through the OpenAI SDK against any
OpenAI-compatible server. Translates the SDK's errors into ours; retries belong to the queue."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from loguru import logger
from openai import AsyncOpenAI, AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from botcore.errors import (
    Cause,
    ContextTooLongError,
    PermanentError,
    TransientError,
)
from botcore.incoming import clean_text
from botcore.models import Turn, Usage
from botcore.openai_errors import NOT_A_COMPLETION, translate
from botcore.reasoning import CLOSE, OPEN, split_thinking

_CHARS_PER_TOKEN = 4


async def _noop(_text: str, _thinking: bool) -> None:
    return None


OnText = Callable[[str, bool], Awaitable[None]]  # the answer so far; whether the model is thinking


@dataclass(frozen=True, slots=True)
class Completion:
    text: str  # the answer, never the thinking
    usage: Usage  # the thinking's tokens included
    reasoning: str = ""  # what a reasoning model thought first, if the server showed it


class ChatModel:
    def __init__(
        self, *, api_key: str, base_url: str, model: str, timeout_s: float, max_reply_tokens: int
    ) -> None:
        # A local server needs no key, but the SDK refuses an empty one.
        self._client = AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout_s, max_retries=0
        )
        self.model = model
        # OpenAI's newer models refuse max_tokens; most other servers know only max_tokens.
        is_openai = urlsplit(base_url).hostname == "api.openai.com"
        self._limit = {"max_completion_tokens" if is_openai else "max_tokens": max_reply_tokens}
        self._streams = True  # until the server shows it cannot
        # Models seen to leave out "<think>" (their template opens it): their content starts as
        # thinking, so a stream never shows it as the answer, even for a moment.
        self._opens_in_thought: set[str] = set()

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(
        self,
        system_prompt: str,
        turns: Sequence[Turn],
        on_text: OnText = _noop,
    ) -> Completion:
        """The same completion, streamed: ``on_text`` gets the answer so far after each piece,
        and whether the model is still thinking (it paces itself). A stream that breaks midway
        raises like a failed call."""
        if not self._streams:
            return await self.complete(system_prompt, turns)
        body = self._body(system_prompt, turns)
        got = _Streamed(self.model, body, opens_in_thought=self.model in self._opens_in_thought)
        try:
            stream = await self._client.post(  # raw, like complete(), for the same reason
                "/chat/completions",
                body={**body, "stream": True, "stream_options": {"include_usage": True}},
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=AsyncStream[ChatCompletionChunk],
            )
            async with stream:
                async for chunk in stream:
                    if got.add(chunk):
                        await on_text(*got.progress())
        except openai.BadRequestError as exc:
            error = translate(exc)
            if isinstance(error, ContextTooLongError) or got.received:
                error.usage = got.billed()
                raise error from exc
            return await self._without_streaming(system_prompt, turns, "refused the streaming request")
        except openai.APIError as exc:
            error = translate(exc)
            error.usage = got.billed()
            raise error from exc
        except httpx.TimeoutException as exc:  # mid-stream, not wrapped by the SDK
            raise TransientError(
                "LLM: the stream timed out", cause=Cause.TIMEOUT, usage=got.billed()
            ) from exc
        except httpx.HTTPError as exc:  # the connection broke mid-stream
            why = f"LLM: the stream broke ({type(exc).__name__})"
            raise TransientError(why, cause=Cause.UNAVAILABLE, usage=got.billed()) from exc
        except ValueError as exc:  # an event that is not JSON
            raise TransientError(
                "LLM: the stream was garbled", cause=Cause.UNAVAILABLE, usage=got.billed()
            ) from exc
        if not got.received:  # the server ignored "stream": it answered with plain JSON
            return await self._without_streaming(system_prompt, turns, "does not stream")
        completion = got.completion()
        self._learn(completion, got.content)
        return completion

    def _learn(self, completion: Completion, content: str) -> None:
        """Remember a model that closes thinking it never opened (see ``split_thinking``)."""
        if completion.reasoning and OPEN not in content and CLOSE in content:
            self._opens_in_thought.add(self.model)

    async def _without_streaming(self, system_prompt: str, turns: Sequence[Turn], why: str) -> Completion:
        """Ask again without streaming; if that works, stop trying to stream (this server can't)."""
        completion = await self.complete(system_prompt, turns)
        self._streams = False
        logger.warning("the LLM server {}; answering without streaming from now on (set STREAM=false)", why)
        return completion

    async def complete(self, system_prompt: str, turns: Sequence[Turn]) -> Completion:
        try:
            # client.post (the SDK's documented way to send a raw request) rather than
            # chat.completions.create: create() type-walks every message of the request body,
            # which cost about 5 ms of CPU per call with ten messages of history (measured).
            # The response is parsed, and errors raised, exactly as create() does.
            body = self._body(system_prompt, turns)
            response = await self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        except openai.APIError as exc:
            raise translate(exc) from exc
        except (ValueError, TypeError) as exc:  # a 200 that is not a completion
            raise PermanentError(NOT_A_COMPLETION) from exc
        if not isinstance(response, ChatCompletion):  # e.g. a web page: the SDK hands back its text
            raise PermanentError(NOT_A_COMPLETION)
        choice = response.choices[0] if response.choices else None
        content = clean_text(choice.message.content or "") if choice else ""
        split = split_thinking(content, final=True)
        text = split.answer
        reasoning = _reasoning_field(choice.message) if choice else ""
        reasoning = clean_text(reasoning or split.reasoning)
        model = response.model or self.model
        usage = (
            _usage(model, response.usage) if response.usage else _estimate(model, body, content + reasoning)
        )
        if choice is not None and getattr(choice, "finish_reason", None) == "content_filter":
            raise PermanentError(
                "the model's content filter refused to answer", usage=_billed(usage, body, text)
            )
        if not text:  # e.g. a reasoning model that spent MAX_REPLY_TOKENS thinking: billed all the same
            raise _empty(reasoning, _billed(usage, body, content + reasoning))
        return Completion(text, usage, reasoning)

    def estimate(self, system_prompt: str, turns: Sequence[Turn], text: str) -> Usage:
        """What a call that stopped after writing ``text`` cost, estimated (the server never said)."""
        return _estimate(self.model, self._body(system_prompt, turns), text)

    def _body(self, system_prompt: str, turns: Sequence[Turn]) -> dict[str, Any]:
        return {"model": self.model, "messages": _messages(system_prompt, turns), **self._limit}


class _Streamed:
    """What a stream has brought so far: the content's pieces, the thinking sent in its own
    field, the usage chunk, whether it ended."""

    def __init__(self, model: str, body: dict[str, Any], *, opens_in_thought: bool) -> None:
        self.parts: list[str] = []
        self.thoughts: list[str] = []
        self.usage: CompletionUsage | None = None
        self.model = model
        self.received = self.finished = False
        self._body = body
        self._opens_in_thought = opens_in_thought

    @property
    def content(self) -> str:
        return clean_text("".join(self.parts))

    def add(self, chunk: ChatCompletionChunk) -> bool:
        """Take one chunk; True when it brought text (of the answer or of the thinking)."""
        self.received = True
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return False
        choice = chunk.choices[0]
        if choice.finish_reason == "content_filter":
            raise PermanentError("the model's content filter refused to answer", usage=self.billed())
        self.finished = self.finished or choice.finish_reason is not None
        if not choice.delta:
            return False
        thought = _reasoning_field(choice.delta)
        if thought:
            self.thoughts.append(thought)
        if choice.delta.content:
            self.parts.append(choice.delta.content)
        return bool(thought or choice.delta.content)

    def progress(self) -> tuple[str, bool]:
        """The answer so far, and whether the model is thinking now."""
        split = split_thinking(self.content, final=False, opens_in_thought=self._opens_in_thought)
        thinking = split.thinking or (bool(self.thoughts) and not split.answer)
        return split.answer, thinking

    def billed(self) -> Usage | None:
        """What a stream that fails now was billed: its usage chunk, else an estimate once text
        was produced (a provider bills what it generated, thinking included)."""
        if self.usage is not None:
            return _usage(self.model, self.usage)
        written = "".join(self.thoughts) + "".join(self.parts)
        return _estimate(self.model, self._body, written) if written else None

    def completion(self) -> Completion:
        """The answer of a stream that ended: never half an answer, never an empty one."""
        if not self.finished:  # the stream ended cleanly but early
            raise TransientError(
                "LLM: the stream ended before the answer did", cause=Cause.UNAVAILABLE, usage=self.billed()
            )
        split = split_thinking(self.content, final=True)
        reasoning = clean_text("".join(self.thoughts)).strip() or split.reasoning
        usage = self.billed() or _estimate(self.model, self._body, "")
        if not split.answer:
            raise _empty(reasoning, usage)
        return Completion(split.answer, usage, reasoning)


def _reasoning_field(message: object) -> str:
    """Thinking sent beside the content: ``reasoning_content`` (DeepSeek, llama.cpp, older
    vLLM) or ``reasoning`` (Ollama's /v1, OpenRouter, newer vLLM)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _empty(reasoning: str, usage: Usage) -> PermanentError:
    if reasoning:  # the token budget went on thinking
        return PermanentError(
            "the model spent MAX_REPLY_TOKENS thinking and wrote no answer",
            cause=Cause.THOUGHT_ONLY,
            usage=usage,
        )
    return PermanentError("the model returned an empty answer", usage=usage)


def _usage(model: str, usage: CompletionUsage | None) -> Usage:
    return Usage(
        kind="chat",
        model=model,
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
    )


def _billed(usage: Usage, body: dict[str, Any], text: str) -> Usage:
    """A failed call's usage: the server's count, or an estimate when it sent none."""
    return usage if usage.prompt_tokens or usage.completion_tokens else _estimate(usage.model, body, text)


def _estimate(model: str, body: dict[str, Any], text: str) -> Usage:
    """Tokens a failed call was billed when the server did not say: about four characters a
    token (an estimate; a tokenizer per model would be a model table, which we do not keep)."""
    messages = body.get("messages")
    prompt_chars = sum(len(str(m.get("content", ""))) for m in messages) if isinstance(messages, list) else 0
    return Usage(
        kind="chat",
        model=model,
        prompt_tokens=math.ceil(prompt_chars / _CHARS_PER_TOKEN),
        completion_tokens=math.ceil(len(text) / _CHARS_PER_TOKEN),
        estimated=True,
    )


def _messages(system_prompt: str, turns: Sequence[Turn]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": t.role, "content": t.content} for t in turns]
