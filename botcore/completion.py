"""What one chat completion brought: the answer and the thinking kept apart, and its usage
(the server's count, or an estimate when it gave none); and a stream's pieces added up as they
come. No I/O: ``llm`` makes the calls."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from botcore.errors import Cause, PermanentError, TransientError
from botcore.incoming import clean_text
from botcore.models import Usage
from botcore.reasoning import split_thinking

_IMAGE_TOKENS = 765  # OpenAI's count for a 1024×1024 image in high detail
_CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Completion:
    text: str  # the answer, never the thinking
    usage: Usage  # the thinking's tokens included
    reasoning: str = ""  # what a reasoning model thought first, if the server showed it


class Streamed:
    """What a stream has brought so far: the content's pieces, the thinking sent in its own
    field, the usage chunk, whether it ended."""

    def __init__(self, model: str, body: dict[str, Any], *, opens_in_thought: bool) -> None:
        self.parts: list[str] = []
        self.thoughts: list[str] = []
        self.usage: CompletionUsage | None = None
        self.model = model
        self.received = self.finished = False
        self.cut_short = False  # it ended for its token budget ("length")
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
        self.cut_short = self.cut_short or choice.finish_reason == "length"
        if not choice.delta:
            return False
        thought = reasoning_field(choice.delta)
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
            return usage_of(self.model, self.usage)
        written = "".join(self.thoughts) + "".join(self.parts)
        return estimate_usage(self.model, self._body, written) if written else None

    def completion(self) -> Completion:
        """The answer of a stream that ended: never half an answer, never an empty one."""
        if not self.finished:  # the stream ended cleanly but early
            raise TransientError(
                "LLM: the stream ended before the answer did", cause=Cause.UNAVAILABLE, usage=self.billed()
            )
        split = split_thinking(
            self.content, final=True, opens_in_thought=self._opens_in_thought, cut_short=self.cut_short
        )
        reasoning = clean_text("".join(self.thoughts)).strip() or split.reasoning
        usage = self.billed() or estimate_usage(self.model, self._body, "")
        if not split.answer:
            raise empty_answer(reasoning, usage)
        return Completion(split.answer, usage, reasoning)


def reasoning_field(message: object) -> str:
    """Thinking sent beside the content: ``reasoning_content`` (DeepSeek, llama.cpp, older
    vLLM) or ``reasoning`` (Ollama's /v1, OpenRouter, newer vLLM)."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def empty_answer(reasoning: str, usage: Usage) -> PermanentError:
    if reasoning:  # the token budget went on thinking
        return PermanentError(
            "the model spent MAX_REPLY_TOKENS thinking and wrote no answer",
            cause=Cause.THOUGHT_ONLY,
            usage=usage,
        )
    return PermanentError("the model returned an empty answer", usage=usage)


def usage_of(model: str, usage: CompletionUsage | None) -> Usage:
    return Usage(
        kind="chat",
        model=model,
        prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
        completion_tokens=(usage.completion_tokens or 0) if usage else 0,
    )


def billed_or_estimated(usage: Usage, body: dict[str, Any], text: str) -> Usage:
    """A failed call's usage: the server's count, or an estimate when it sent none."""
    return (
        usage if usage.prompt_tokens or usage.completion_tokens else estimate_usage(usage.model, body, text)
    )


def _tokens(content: object) -> float:
    """A message's tokens, estimated: its text by length, each image as OpenAI counts a
    1024-pixel one in high detail (its data: URL's length says nothing of its tokens)."""
    if not isinstance(content, list):
        return len(str(content)) / _CHARS_PER_TOKEN
    text = sum(
        len(str(p.get("text", ""))) for p in content if isinstance(p, dict) and p.get("type") == "text"
    )
    images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return text / _CHARS_PER_TOKEN + images * _IMAGE_TOKENS


def estimate_usage(model: str, body: dict[str, Any], text: str) -> Usage:
    """Tokens a failed call was billed when the server did not say: about four characters a
    token (an estimate; a tokenizer per model would be a model table, which we do not keep)."""
    messages = body.get("messages")
    parts = [_tokens(m.get("content", "")) for m in messages] if isinstance(messages, list) else []
    return Usage(
        kind="chat",
        model=model,
        prompt_tokens=math.ceil(sum(parts)),
        completion_tokens=math.ceil(len(text) / _CHARS_PER_TOKEN),
        estimated=True,
    )
