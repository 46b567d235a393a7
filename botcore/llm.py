"""The chat LLM adapter: one chat completion through the OpenAI SDK against any
OpenAI-compatible server. Translates the SDK's errors into ours; retries belong to the queue."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from loguru import logger
from openai import AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from botcore.clock import Clock, SystemClock
from botcore.completion import (
    Completion,
    Streamed,
    billed_or_estimated,
    empty_answer,
    estimate_usage,
    reasoning_field,
    usage_of,
)
from botcore.errors import (
    Cause,
    ContextTooLongError,
    PermanentError,
    TransientError,
)
from botcore.incoming import clean_text
from botcore.llm_params import Params, ServerParams
from botcore.models import Turn, Usage
from botcore.openai_errors import NOT_A_COMPLETION, make_client, translate
from botcore.reasoning import CLOSE, OPEN, split_thinking
from botcore.storage import KeyValueStore


async def _noop(_text: str, _thinking: bool) -> None:
    return None


_LIST_TIMEOUT_S = 10.0
OnText = Callable[[str, bool], Awaitable[None]]  # the answer so far; whether the model is thinking


class ChatModel:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        model: str,
        timeout_s: float,
        max_reply_tokens: int,
        kv: KeyValueStore | None = None,  # where what the server accepts is remembered
        vision: str = "auto",  # auto: a model that refuses an image is remembered as blind
        clock: Clock | None = None,
    ) -> None:
        self._client = make_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
        self.model = model
        # OpenAI's newer models refuse max_tokens; most other servers know only max_tokens. What
        # a server refuses after all is learned per model (llm_params).
        is_openai = urlsplit(base_url).hostname == "api.openai.com"
        self._max_tokens = max_reply_tokens
        self._params = ServerParams(
            base_url, Params("max_completion_tokens" if is_openai else "max_tokens"), kv
        )
        self._vision = vision
        self._clock = clock or SystemClock()
        self._cannot_stream: set[str] = set()  # models the server would not stream (until restart)

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(
        self,
        system_prompt: str,
        turns: Sequence[Turn],
        on_text: OnText = _noop,
        on_first_token: Callable[[], None] | None = None,
        *,
        model: str | None = None,
    ) -> Completion:
        """The same completion, streamed: ``on_text`` gets the answer so far after each piece,
        and whether the model is still thinking (it paces itself). A stream that breaks midway
        raises like a failed call."""
        model = model or self.model
        if model in self._cannot_stream:
            return await self.complete(system_prompt, turns, model=model)
        body = self._body(system_prompt, turns, model)
        params = await self._params.get(model)
        got = Streamed(model, body, opens_in_thought=params.opens_in_thought)
        try:
            stream = await self._post(body, stream=True)
            async with stream:
                async for chunk in stream:
                    if got.add(chunk):
                        if on_first_token is not None and len(got.parts) + len(got.thoughts) == 1:
                            on_first_token()  # timed here, before any Telegram edit waits
                        await on_text(*got.progress())
        except openai.BadRequestError as exc:
            error = translate(exc, model=model)
            if isinstance(error, ContextTooLongError) or got.received:
                error.usage = got.billed()
                raise error from exc
            return await self._without_streaming(system_prompt, turns, model, "refused the streaming request")
        except openai.APIError as exc:
            error = translate(exc, model=model)
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
            return await self._without_streaming(system_prompt, turns, model, "does not stream")
        completion = got.completion()
        await self._learn_habit(model, completion, got.content)
        return completion

    async def _learn_habit(self, model: str, completion: Completion, content: str) -> None:
        """Remember a model that closes thinking it never opened (see ``split_thinking``), with
        what its server accepts, so even the first stream after a restart never shows it."""
        params = await self._params.get(model)
        if completion.reasoning and OPEN not in content and CLOSE in content and not params.opens_in_thought:
            await self._params.learn(
                model, lambda current: replace(current, opens_in_thought=True), "it leaves out <think>"
            )

    async def _without_streaming(
        self, system_prompt: str, turns: Sequence[Turn], model: str, why: str
    ) -> Completion:
        """Ask again without streaming; if that works, stop trying to stream this model (the
        server can't, or not for this model: OpenAI streams some only for verified accounts)."""
        completion = await self.complete(system_prompt, turns, model=model)
        self._cannot_stream.add(model)
        logger.warning("the LLM server {} for {}; answering without streaming from now on", why, model)
        return completion

    async def complete(
        self, system_prompt: str, turns: Sequence[Turn], *, model: str | None = None
    ) -> Completion:
        model = model or self.model
        try:
            # client.post (the SDK's documented way to send a raw request) rather than
            # chat.completions.create: create() type-walks every message of the request body,
            # which cost about 5 ms of CPU per call with ten messages of history (measured).
            # The response is parsed, and errors raised, exactly as create() does.
            body = self._body(system_prompt, turns, model)
            response = await self._post(body, stream=False)
        except openai.APIError as exc:
            raise translate(exc, model=model) from exc
        except (ValueError, TypeError) as exc:  # a 200 that is not a completion
            raise PermanentError(NOT_A_COMPLETION) from exc
        if not isinstance(response, ChatCompletion):  # e.g. a web page: the SDK hands back its text
            raise PermanentError(NOT_A_COMPLETION)
        choice = response.choices[0] if response.choices else None
        content = clean_text(choice.message.content or "") if choice else ""
        split = split_thinking(
            content,
            final=True,
            opens_in_thought=(await self._params.get(model)).opens_in_thought,
            cut_short=getattr(choice, "finish_reason", None) == "length",
        )
        text = split.answer
        field = clean_text(reasoning_field(choice.message)) if choice else ""
        reasoning = field or split.reasoning
        written = content + field  # the thinking once: in the content, or in its own field
        billed_as = response.model or model
        usage = (
            usage_of(billed_as, response.usage)
            if response.usage
            else estimate_usage(billed_as, body, written)
        )
        if choice is not None and getattr(choice, "finish_reason", None) == "content_filter":
            raise PermanentError(
                "the model's content filter refused to answer",
                usage=billed_or_estimated(usage, body, written),
            )
        if not text:  # e.g. a reasoning model that spent MAX_REPLY_TOKENS thinking: billed all the same
            raise empty_answer(reasoning, billed_or_estimated(usage, body, written))
        return Completion(text, usage, reasoning)

    def estimate(
        self, system_prompt: str, turns: Sequence[Turn], text: str, *, model: str | None = None
    ) -> Usage:
        """What a call that stopped after writing ``text`` cost, estimated (the server never said)."""
        model = model or self.model
        return estimate_usage(model, self._body(system_prompt, turns, model), text)

    async def list_models(self) -> list[str] | None:
        """The model ids the server offers (``GET /models``); None when it has no such list (a
        404, or something that is not one). Other failures raise, translated."""
        try:
            # A menu waits for this: a server that is down must not hold it for OPENAI_TIMEOUT.
            page = await self._client.with_options(timeout=_LIST_TIMEOUT_S).models.list()
            return [clean_text(m.id) for m in page.data if isinstance(m.id, str) and m.id]
        except openai.NotFoundError:
            return None
        except openai.APIError as exc:
            raise translate(exc) from exc
        except (ValueError, TypeError, AttributeError):  # a 200 that is no model list
            return None

    def _body(self, system_prompt: str, turns: Sequence[Turn], model: str) -> dict[str, Any]:
        return {"model": model, "messages": _messages(system_prompt, turns)}

    async def _post(self, body: dict[str, Any], *, stream: bool) -> Any:
        """The request, with the parameters this server accepts for this model; a 400 that
        refuses one of them is tried once more with its alternative, and the answer is learned."""
        model = body["model"]
        first = params = await self._params.get(model)
        tried = {first}
        while True:  # no set of parameters twice: this ends (there are eight)
            try:
                sent = await self._send(params.body(body, self._max_tokens, stream=stream), stream=stream)
            except openai.APIStatusError as exc:
                if _has_images(body) and _refuses_images(exc):
                    await self._blind(model)
                    raise PermanentError(
                        f"LLM: the model {model!r} does not take images", cause=Cause.NO_VISION
                    ) from exc
                if not isinstance(exc, openai.BadRequestError):
                    raise
                better = params.after_refusal(exc)
                if better is None or better in tried:
                    raise
                tried.add(better)
                params = better
                continue
            if params != first:  # learned only once it worked
                why = "it refuses " + _changed(first, params)
                await self._params.learn(model, lambda now, worked=params: now.sending_as(worked), why)
            return sent

    async def sees_images(self, model: str) -> bool:
        """False for a day after ``model`` refused an image at this server (VISION=auto)."""
        since = (await self._params.get(model)).blind_since
        return not since or self._clock.now() - since > _BLIND_FOR_S

    async def _blind(self, model: str) -> None:
        if self._vision == "auto":
            now = self._clock.now()
            await self._params.learn(
                model, lambda known: replace(known, blind_since=now), "it refuses images"
            )

    async def _send(self, body: dict[str, Any], *, stream: bool) -> Any:
        if not stream:
            return await self._client.post("/chat/completions", body=body, cast_to=ChatCompletion)
        return await self._client.post(  # raw, like complete(), for the same reason
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


def _changed(before: Params, after: Params) -> str:
    return ", ".join(
        f"{name}={getattr(before, name)!r}"
        for name in ("limit", "stream_options", "temperature")
        if getattr(before, name) != getattr(after, name)
    )


def _messages(system_prompt: str, turns: Sequence[Turn]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": t.role, "content": _content(t)} for t in turns]


def _content(turn: Turn) -> str | list[dict[str, Any]]:
    """Text, or with images OpenAI's content parts: the text, then each image as a data: URL."""
    if not turn.images:
        return turn.content
    images = [{"type": "image_url", "image_url": {"url": url}} for url in turn.images]
    return [{"type": "text", "text": turn.content}, *images]


def _has_images(body: dict[str, Any]) -> bool:
    return any(isinstance(m.get("content"), list) for m in body["messages"])


# How servers say a model takes no images at all: OpenAI ("image_url is only supported by certain
# models"), vLLM ("… is not a multimodal model"), OpenRouter (404 "No endpoints found that support
# image input"), Ollama ("… missing data required for image input"), llama.cpp ("image input is
# not supported"). Not any error that mentions an image: "at most 1 image(s) may be provided", an
# image it could not decode, a context too long with images in it say nothing of the model.
_NO_IMAGES = re.compile(
    r"only supported by certain models|not a multimodal model|support image input"
    r"|required for image input|image input is not supported|does not support (images|image input|vision)",
    re.IGNORECASE,
)
_BLIND_FOR_S = 86_400.0


def _refuses_images(exc: openai.APIStatusError) -> bool:
    return exc.status_code in (400, 404, 415, 422) and bool(_NO_IMAGES.search(str(exc)))
