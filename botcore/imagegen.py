"""Image generation through an OpenAI-compatible ``POST /images/generations``: one picture for a
prompt, as bytes, whether the server answers with ``b64_json`` or a URL (fetched here, with a
size cap and a timeout: Telegram cannot always fetch it). Translates errors; retries belong to
the queue."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass

import httpx
import openai

from botcore.errors import Cause, PermanentError, TransientError
from botcore.openai_errors import make_client, translate

_MAX_BYTES = 10 * 1024 * 1024  # Telegram takes photos up to 10 MB
# How a provider says no to a prompt: OpenAI's codes for DALL·E and gpt-image-1.
_REFUSALS = ("content_policy_violation", "moderation_blocked")


@dataclass(frozen=True, slots=True)
class Picture:
    """What the service answered: the picture itself, or where to fetch it (``fetch``)."""

    data: bytes | None
    url: str | None
    model: str


class ImageGenerator:
    def __init__(self, *, api_key: str, base_url: str, model: str, size: str, timeout_s: float) -> None:
        self._client = make_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
        self._model = model
        self._size = size
        self._timeout_s = timeout_s

    async def aclose(self) -> None:
        await self._client.close()

    async def generate(self, prompt: str) -> Picture:
        try:
            answer = await self._client.images.generate(
                model=self._model, prompt=prompt, size=self._size, n=1
            )  # type: ignore[arg-type]
        except openai.BadRequestError as exc:
            if _code(exc) in _REFUSALS:
                raise PermanentError("image generation: the prompt was refused", cause=Cause.REFUSED) from exc
            raise translate(exc, service="image generation") from exc
        except openai.APIError as exc:
            raise translate(exc, service="image generation") from exc
        item = answer.data[0] if answer.data else None
        if item is not None and item.b64_json:
            return Picture(await asyncio.to_thread(_decoded, item.b64_json), None, self._model)
        if item is not None and item.url:
            return Picture(None, item.url, self._model)
        raise PermanentError("image generation: the answer held no picture")

    async def fetch(self, url: str) -> bytes:
        """The picture at ``url``, at most _MAX_BYTES, within the timeout."""
        try:
            async with (
                httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                response.raise_for_status()
                data = bytearray()
                async for piece in response.aiter_bytes():
                    data += piece
                    if len(data) > _MAX_BYTES:
                        raise PermanentError("image generation: the picture is too large")
                return bytes(data)
        except httpx.HTTPStatusError as exc:
            raise TransientError(
                f"image generation: fetching the picture failed (HTTP {exc.response.status_code})"
            ) from exc
        except httpx.HTTPError as exc:
            raise TransientError(
                f"image generation: fetching the picture failed ({type(exc).__name__})"
            ) from exc


def _decoded(b64: str) -> bytes:
    """A ``b64_json`` picture (a few MB: decoded in a thread), at most _MAX_BYTES."""
    if len(b64) > _MAX_BYTES * 4 // 3 + 4:
        raise PermanentError("image generation: the picture is too large")
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError("image generation: the answer held no picture") from exc


def _code(exc: openai.BadRequestError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else None
