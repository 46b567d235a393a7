"""Speech-to-text providers behind one small interface: OpenAI-compatible
(``/audio/transcriptions`` through the SDK), whisperapi.com and speech-rest-api over HTTP.
Each turns its failures into our error taxonomy; none retries (the queue does)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import openai

from botcore.attachments import usable_seconds
from botcore.errors import Cause, PermanentError, TransientError, http_error, parse_retry_after
from botcore.openai_errors import make_client, translate

OPENAI_UPLOAD_LIMIT = 25 * 1024 * 1024  # bytes: the transcription endpoint refuses more


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str  # may be empty: nothing was heard
    model: str
    language: str | None = None
    duration_s: float | None = None  # the audio the provider says it processed (and billed), if it says


class SpeechToText(Protocol):
    name: str
    max_bytes: int | None  # the largest upload the provider takes (None: no limit of its own)

    async def transcribe(
        self, audio: bytes, *, filename: str, mime: str, seconds: float | None = None
    ) -> Transcript:
        """``seconds``: how long the audio is as far as the caller knows (measured from the
        container, else declared by the sender); None when nobody can tell."""
        ...

    async def aclose(self) -> None: ...


class OpenAITranscriber:
    name = "openai"
    max_bytes = OPENAI_UPLOAD_LIMIT

    def __init__(
        self, *, api_key: str, base_url: str, model: str, language: str | None, timeout_s: float
    ) -> None:
        self._client = make_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)
        self._model = model
        self._language = language

    async def transcribe(
        self, audio: bytes, *, filename: str, mime: str, seconds: float | None = None
    ) -> Transcript:
        if len(audio) > OPENAI_UPLOAD_LIMIT:
            raise PermanentError("audio over the 25 MiB upload limit of the transcription API")
        extra: dict[str, Any] = {"language": self._language} if self._language else {}
        try:
            result = await self._client.audio.transcriptions.create(
                model=self._model, file=(filename, audio, mime), **extra
            )
        except openai.APIError as exc:
            raise translate(exc, service="transcription") from exc
        text = getattr(result, "text", result if isinstance(result, str) else "")
        return Transcript(str(text).strip(), self._model, self._language, _billed_seconds(result))

    async def aclose(self) -> None:
        await self._client.close()


class _HttpTranscriber:
    """Shared by the two multipart-over-HTTP services."""

    name = "http"
    max_bytes: int | None = None

    key_variable = "the service's settings"

    def __init__(self, *, timeout_s: float, headers: dict[str, str] | None = None) -> None:
        self._http = httpx.AsyncClient(timeout=timeout_s, headers=headers or {})

    async def _post(self, url: str, *, files: dict[str, Any], data: dict[str, str]) -> dict[str, Any]:
        try:
            response = await self._http.post(url, files=files, data=data)
        except httpx.TimeoutException as exc:
            raise TransientError(f"{self.name}: timed out", cause=Cause.TIMEOUT) from exc
        except httpx.HTTPError as exc:  # an unreachable server is an outage, whatever the audio
            raise TransientError(
                f"{self.name}: unreachable ({type(exc).__name__})", cause=Cause.UNAVAILABLE, shared=True
            ) from exc
        status = response.status_code
        if status >= 400:
            raise http_error(
                self.name,
                status,
                key_variable=self.key_variable,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise PermanentError(f"{self.name}: the answer was not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("text", ""), str):
            raise PermanentError(f"{self.name}: the answer had no text")
        return body

    async def aclose(self) -> None:
        await self._http.aclose()


class WhisperApiTranscriber(_HttpTranscriber):
    """whisperapi.com: multipart ``file``, ``fileType``, ``language``, ``task``; JSON ``{text}``."""

    name = "whisper-api"
    key_variable = "WHISPER_API_KEY"

    def __init__(self, *, url: str, api_key: str, language: str | None, timeout_s: float) -> None:
        super().__init__(timeout_s=timeout_s, headers={"Authorization": f"Bearer {api_key}"})
        self._url = url
        self._language = language

    async def transcribe(
        self, audio: bytes, *, filename: str, mime: str, seconds: float | None = None
    ) -> Transcript:
        data = {"fileType": filename.rsplit(".", 1)[-1], "task": "transcribe"}
        if self._language:
            data["language"] = self._language
        body = await self._post(self._url, files={"file": (filename, audio, mime)}, data=data)
        return Transcript(
            body.get("text", "").strip(),
            "whisperapi.com",
            self._language,
            usable_seconds(body.get("duration")),
        )


class SpeechApiTranscriber(_HttpTranscriber):
    """speech-rest-api: multipart ``audio`` to ``{url}/transcribe``; JSON ``{text, language}``."""

    name = "speech-api"
    key_variable = "the speech-rest-api server's access settings"

    def __init__(self, *, url: str, timeout_s: float) -> None:
        super().__init__(timeout_s=timeout_s)
        self._url = url.rstrip("/") + "/transcribe"

    async def transcribe(
        self, audio: bytes, *, filename: str, mime: str, seconds: float | None = None
    ) -> Transcript:
        body = await self._post(self._url, files={"audio": (filename, audio, mime)}, data={})
        language = body.get("language")
        return Transcript(
            body.get("text", "").strip(),
            "speech-rest-api",
            language if isinstance(language, str) else None,
            usable_seconds(body.get("duration")),
        )


def _billed_seconds(result: object) -> float | None:
    """The seconds an OpenAI-compatible server says it processed: ``usage`` of type "duration"
    (newer OpenAI models), else ``duration`` (verbose_json, and some compatible servers)."""
    usage = _field(result, "usage")
    if _field(usage, "type") == "duration":
        return usable_seconds(_field(usage, "seconds"))
    return usable_seconds(_field(result, "duration"))


def _field(obj: object, name: str) -> object:
    """A field of the SDK's object, or of a plain dict where the SDK did not know the field."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
