"""Text to speech through an OpenAI-compatible ``POST /audio/speech`` (OpenAI, Kokoro-FastAPI,
openedai-speech, LocalAI), asking for OGG/Opus, the one format Telegram shows as a voice note;
and the text as it is worth reading aloud (no code, no Markdown symbols, cut at a sentence).
Translates errors; retries belong to the queue."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import openai

from botcore import texts
from botcore.openai_errors import make_client, translate


@dataclass(frozen=True, slots=True)
class Speech:
    audio: bytes  # OGG/Opus, if the server did as asked
    model: str


class Synth(Protocol):
    """What reads text aloud: a server (``SpeechSynth``) or this machine (``tts_local``)."""

    async def speak(self, text: str) -> Speech: ...

    async def aclose(self) -> None: ...


class SpeechSynth:
    def __init__(self, *, api_key: str, base_url: str, model: str, voice: str, timeout_s: float) -> None:
        self._client = make_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
        self._model = model
        self._voice = voice

    async def aclose(self) -> None:
        await self._client.close()

    async def speak(self, text: str) -> Speech:
        try:
            answer = await self._client.audio.speech.create(
                model=self._model,
                voice=self._voice,  # type: ignore[arg-type]  (servers have voices OpenAI has not)
                input=text,
                response_format="opus",
            )
        except openai.APIError as exc:
            raise translate(exc, service="speech") from exc
        return Speech(answer.content, self._model)


_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.DOTALL)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+")
_SYMBOLS = re.compile(r"[*_`#>|~]+")
_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")


def spoken(text: str, max_chars: int) -> str:
    """``text`` as it is worth hearing: code blocks and links named, not spelled out; Markdown
    symbols gone; at most ``max_chars``, cut after a sentence, with a word that the rest is in
    the text."""
    text = _CODE_BLOCK.sub(f" {texts.SPOKEN_CODE} ", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(texts.SPOKEN_LINK, text)
    text = " ".join(_SYMBOLS.sub(" ", text).split())
    if len(text) <= max_chars:
        return text
    room = max_chars - len(texts.SPOKEN_REST) - 1
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, room)]
    cut = ends[-1] if ends else text.rfind(" ", 0, room)
    return text[: cut if cut > 0 else room].rstrip() + " " + texts.SPOKEN_REST
