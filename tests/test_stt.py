"""Speech-to-text providers through real HTTP against fake servers on 127.0.0.1."""

from collections.abc import AsyncIterator

import pytest

from botcore.errors import PermanentError, TransientError, UpstreamUnavailable
from botcore.stt import OPENAI_UPLOAD_LIMIT, OpenAITranscriber, SpeechApiTranscriber, WhisperApiTranscriber

from .fakes import FakeOpenAI, FakeSpeechServices, Scripted

AUDIO = b"OggS\x00\x02" + b"\x01" * 500  # the providers pass the bytes on untouched


@pytest.fixture
async def speech() -> AsyncIterator[FakeSpeechServices]:
    server = await FakeSpeechServices().start()
    yield server
    await server.stop()


async def test_openai_compatible_transcription(llm: FakeOpenAI) -> None:
    stt = OpenAITranscriber(api_key="", base_url=llm.base_url, model="whisper-1", language="de", timeout_s=5)
    try:
        result = await stt.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
    assert result.text == f"heard {len(AUDIO)} bytes" and result.model == "whisper-1"
    [fields] = llm.transcriptions
    assert fields["model"] == "whisper-1" and fields["language"] == "de"
    assert fields["file"] == ("voice.ogg", AUDIO)


async def test_openai_upload_limit_is_checked_before_sending(llm: FakeOpenAI) -> None:
    stt = OpenAITranscriber(api_key="k", base_url=llm.base_url, model="whisper-1", language=None, timeout_s=5)
    try:
        with pytest.raises(PermanentError, match="25 MiB"):
            await stt.transcribe(b"\0" * (OPENAI_UPLOAD_LIMIT + 1), filename="a.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
    assert llm.transcriptions == []


@pytest.mark.parametrize(
    ("scripted", "error"),
    [
        (Scripted(status=500), TransientError),
        (Scripted(status=429), UpstreamUnavailable),
        (Scripted(status=400, body={"error": {"message": "Invalid file format."}}), PermanentError),
    ],
)
async def test_openai_transcription_errors(
    llm: FakeOpenAI, scripted: Scripted, error: type[Exception]
) -> None:
    llm.stt_script.append(scripted)
    stt = OpenAITranscriber(api_key="k", base_url=llm.base_url, model="whisper-1", language=None, timeout_s=5)
    try:
        with pytest.raises(error):
            await stt.transcribe(AUDIO, filename="a.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()


async def test_whisper_api_request_shape_and_auth(speech: FakeSpeechServices) -> None:
    stt = WhisperApiTranscriber(url=speech.base_url + "/", api_key="wa-key", language="en", timeout_s=5)
    try:
        result = await stt.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
    assert result.text == f"heard {len(AUDIO)} bytes"
    [(path, headers, fields)] = speech.requests
    assert path == "/" and headers["Authorization"] == "Bearer wa-key"
    assert fields == {"file": ("voice.ogg", AUDIO), "fileType": "ogg", "task": "transcribe", "language": "en"}


async def test_whisper_api_wrong_key_is_permanent(speech: FakeSpeechServices) -> None:
    stt = WhisperApiTranscriber(url=speech.base_url + "/", api_key="wrong", language=None, timeout_s=5)
    try:
        with pytest.raises(PermanentError, match="401"):
            await stt.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()


async def test_speech_api_request_shape(speech: FakeSpeechServices) -> None:
    stt = SpeechApiTranscriber(url=speech.base_url, timeout_s=5)
    try:
        result = await stt.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
    assert (result.text, result.language) == (f"heard {len(AUDIO)} bytes", "en")
    [(path, _, fields)] = speech.requests
    assert path == "/transcribe" and fields == {"audio": ("voice.ogg", AUDIO)}


@pytest.mark.parametrize(
    ("scripted", "error"),
    [
        (Scripted(status=503, headers={"Retry-After": "3"}), TransientError),
        (Scripted(status=429), UpstreamUnavailable),
        (Scripted(status=422), PermanentError),
        (Scripted(raw="<html>oops</html>"), PermanentError),
    ],
)
async def test_http_provider_errors(
    speech: FakeSpeechServices, scripted: Scripted, error: type[Exception]
) -> None:
    speech.script.append(scripted)
    stt = SpeechApiTranscriber(url=speech.base_url, timeout_s=5)
    try:
        with pytest.raises(error):
            await stt.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()


async def test_unreachable_http_provider_is_transient() -> None:
    stt = SpeechApiTranscriber(url="http://127.0.0.1:9", timeout_s=2)
    try:
        with pytest.raises(TransientError, match="unreachable"):
            await stt.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
    finally:
        await stt.aclose()
