"""Which request parameters an OpenAI-compatible server accepts, per model, learned from its
refusals and remembered across restarts. OpenAI's o-series and gpt-5 refuse ``max_tokens`` (they
want ``max_completion_tokens``, which Ollama ignores), gpt-5 refuses a ``temperature`` other than
1, Azure refuses ``stream_options``. A 400 that refuses one of these is answered by a retry with
the alternative, or without it: at most one change per parameter, so never a loop. What worked
is kept only once a request with it succeeded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import openai
from loguru import logger

from botcore.storage import KeyValueStore, llm_params_key

_LIMITS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class Params:
    limit: str  # the name the answer's length limit goes out as
    stream_options: bool = True  # ask a stream for its usage chunk
    temperature: bool = True  # send a temperature, when one is set
    # Not parameters, but learned the same way and kept with them: the model leaves out
    # "<think>" (its template opened it), so its content starts as thinking; the model refused
    # an image (VISION=auto): since when (wall-clock seconds; 0: it takes images), so it is not
    # sent any for a day, then tried again (a server's model may have been swapped meanwhile).
    opens_in_thought: bool = False
    blind_since: float = 0.0

    def body(self, base: dict[str, Any], max_tokens: int, *, stream: bool) -> dict[str, Any]:
        body = {**base, self.limit: max_tokens}
        if not self.temperature:
            body.pop("temperature", None)
        if stream:
            body["stream"] = True
            if self.stream_options:
                body["stream_options"] = {"include_usage": True}
        return body

    def sending_as(self, other: Params) -> Params:
        """These, with ``other``'s request parameters (what else is known of the model stays)."""
        return replace(
            self, limit=other.limit, stream_options=other.stream_options, temperature=other.temperature
        )

    def after_refusal(self, exc: openai.BadRequestError) -> Params | None:
        """The parameters to try instead, if ``exc`` refuses one we can change; else None."""
        named = _refused_parameter(exc)
        if named in _LIMITS and named == self.limit:
            return replace(self, limit=_LIMITS[1 - _LIMITS.index(named)])
        if named == "stream_options" and self.stream_options:
            return replace(self, stream_options=False)
        if named == "temperature" and self.temperature:
            return replace(self, temperature=False)
        return None


def _refused_parameter(exc: openai.BadRequestError) -> str | None:
    """The parameter a 400 refuses: its ``param`` field (OpenAI), else the first one its message
    names (Azure writes "Unrecognized request argument supplied: stream_options"; OpenAI's
    "'max_tokens' is not supported … Use 'max_completion_tokens' instead" names two)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or exc.message).lower()
    # "max_tokens is too large" names the parameter too, but refuses its value, not the name.
    if error.get("code") not in _REFUSAL_CODES and not any(word in message for word in _REFUSALS):
        return None
    param = error.get("param")
    if isinstance(param, str) and param in _KNOWN:
        return param
    named = [(found.start(), name) for name in _KNOWN if (found := re.search(rf"\b{name}\b", message))]
    return min(named)[1] if named else None


_KNOWN = (*_LIMITS, "stream_options", "temperature")
_REFUSALS = ("unsupported", "not supported", "unrecognized", "unknown", "extra", "not permitted")
_REFUSAL_CODES = ("unsupported_parameter", "unsupported_value")


class ServerParams:
    """The parameters each model of one server accepts: learned, kept in memory and in the
    key-value store (None: memory only)."""

    def __init__(self, base_url: str, default: Params, kv: KeyValueStore | None) -> None:
        self._base_url = base_url
        self._default = default
        self._kv = kv
        self._known: dict[str, Params] = {}

    async def get(self, model: str) -> Params:
        if model not in self._known:
            stored = await self._kv.get(llm_params_key(self._base_url, model)) if self._kv else None
            self._known[model] = _loads(stored) or self._default
        return self._known[model]

    async def learn(self, model: str, change: Callable[[Params], Params], why: str) -> None:
        """Apply ``change`` to what is known of ``model`` now (another call may have learned
        something meanwhile), and keep the result."""
        params = change(await self.get(model))
        self._known[model] = params
        logger.bind(component="llm").warning("learned of {} at this server: {}; remembered", model, why)
        if self._kv is not None:
            await self._kv.put(llm_params_key(self._base_url, model), json.dumps(asdict(params)))


def _loads(stored: str | None) -> Params | None:
    try:
        data = json.loads(stored) if stored else None
        return Params(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):  # written by another version: learn again
        return None
