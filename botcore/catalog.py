"""Which models a chat may choose: ALLOWED_MODELS if the owner set it, else what the LLM server
lists (``GET /models``, cached a few minutes), without the ones that cannot chat (embeddings,
speech, images). Judges a typed name against that. Stores nothing; chooses nothing."""

from __future__ import annotations

from collections.abc import Sequence

from loguru import logger

from botcore import texts
from botcore.clock import Clock
from botcore.errors import JobError
from botcore.llm import ChatModel

LIST_TTL_S = 300.0  # the server's list is asked again after this
FAILED_TTL_S = 30.0  # … and after this when it could not be had (down, slow)
MAX_NAME_CHARS = 200
# Names of models that are listed but do not answer chat completions (OpenAI lists them all).
_NOT_CHAT = (
    "embed",
    "whisper",
    "tts",
    "dall-e",
    "moderation",
    "davinci",
    "babbage",
    "transcribe",
    "realtime",
    "image",
    "audio",
    "sora",
)


class ModelCatalog:
    def __init__(self, model: ChatModel, clock: Clock, *, allowed: Sequence[str]) -> None:
        self._model = model
        self._clock = clock
        self.default = model.model
        self._allowed = tuple(allowed)
        self._listed: list[str] | None = None
        self._listed_until = -1.0
        self._failed = False  # the last attempt to list the models failed (rather than none)
        self._log = logger.bind(component="catalog")

    def allows(self, name: str) -> bool:
        """Whether a stored choice may still be used (the owner may have changed ALLOWED_MODELS)."""
        return not self._allowed or name in self._allowed

    async def offered(self) -> tuple[list[str], str]:
        """The models to offer, and a caveat when that is just the default: the server lists no
        models, or could not be asked now (a name can be typed)."""
        if self._allowed:
            return list(self._allowed), ""
        listed = await self._server_list()
        if listed is None:
            return [self.default], texts.MODELS_UNAVAILABLE if self._failed else texts.MODELS_UNLISTED
        return ([self.default] if self.default not in listed else []) + listed, ""

    async def judge(self, name: str) -> str | None:
        """None if this chat may switch to ``name``; else what to tell the user."""
        if not _usable(name):
            return texts.MODEL_BAD_NAME
        if not self.allows(name):
            return texts.MODEL_NOT_ALLOWED.format(model=name)
        if self._allowed or name == self.default:
            return None
        listed = await self._server_list()
        if listed is not None and name not in listed:
            return texts.MODEL_UNKNOWN.format(model=name)
        return None  # no list to judge by: the server will say, and the user is told to pick again

    async def _server_list(self) -> list[str] | None:
        now = self._clock.monotonic()
        if now < self._listed_until:
            return self._listed
        try:
            names = await self._model.list_models()
        except JobError as exc:
            self._log.warning("could not list the LLM server's models: {}", exc)
            self._listed, self._listed_until, self._failed = None, now + FAILED_TTL_S, True
            return None
        if names is not None:  # only what can chat, and what a chat could choose
            chat = {n for n in names if _usable(n) and not any(w in n.lower() for w in _NOT_CHAT)}
            names = sorted(chat, key=str.lower)
        self._listed, self._listed_until, self._failed = names, now + LIST_TTL_S, False
        return names


def _usable(name: str) -> bool:
    """A name a chat may choose: not empty, not too long, no spaces (llama.cpp can list paths)."""
    return bool(name) and len(name) <= MAX_NAME_CHARS and not any(c.isspace() for c in name)
