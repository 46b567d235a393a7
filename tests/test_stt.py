"""Speech-to-text providers through real HTTP against fake servers on 127.0.0.1, and the
audio's real length measured from its container."""

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutagen.ogg import OggPage

from botcore.audio import measure_seconds
from botcore.errors import PermanentError, TransientError, UpstreamUnavailable
from botcore.stt import OPENAI_UPLOAD_LIMIT, OpenAITranscriber, SpeechApiTranscriber, WhisperApiTranscriber

from .fakes import FakeOpenAI, FakeSpeechServices, Scripted

AUDIO = b"OggS\x00\x02" + b"\x01" * 500  # the providers pass the bytes on untouched
FIXTURES = Path(__file__).with_name("fixtures")
SPEECH = (FIXTURES / "capital.ogg").read_bytes()  # 2.3 s of espeak-ng speech


def ogg_pages(ogg: bytes) -> list[OggPage]:
    """The pages of an Ogg stream, as mutagen reads them (it recomputes CRCs when writing)."""
    stream = io.BytesIO(ogg)
    pages = []
    while True:
        try:
            pages.append(OggPage(stream))
        except EOFError:
            return pages


def ogg_claiming(seconds: float, ogg: bytes = SPEECH) -> bytes:
    """``ogg`` with its last page's granule position rewritten so that the container claims
    ``seconds`` (mutagen recomputes the page's CRC): a few seconds of audio posing as hours."""
    pages = ogg_pages(ogg)
    pages[-1].position = int(seconds * 48_000)  # Opus granules count 48 kHz samples
    return b"".join(page.write() for page in pages)


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


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"text": "hi", "usage": {"type": "duration", "seconds": 7.5}}, 7.5),  # newer OpenAI models
        ({"text": "hi", "duration": 4.25}, 4.25),  # verbose_json, and some compatible servers
        (
            {
                "text": "hi",
                "usage": {"type": "tokens", "input_tokens": 9, "output_tokens": 1, "total_tokens": 10},
            },
            None,
        ),
        ({"text": "hi", "duration": "long"}, None),
        ({"text": "hi", "duration": -1}, None),
        ({"text": "hi"}, None),
    ],
)
async def test_openai_returned_duration_is_read(
    llm: FakeOpenAI, body: dict[str, Any], seconds: float | None
) -> None:
    llm.stt_script.append(Scripted(body=body))
    stt = OpenAITranscriber(api_key="k", base_url=llm.base_url, model="whisper-1", language=None, timeout_s=5)
    try:
        result = await stt.transcribe(AUDIO, filename="a.ogg", mime="audio/ogg", seconds=1.0)
    finally:
        await stt.aclose()
    assert (result.text, result.duration_s) == ("hi", seconds)


async def test_http_providers_read_a_returned_duration(speech: FakeSpeechServices) -> None:
    speech.script.extend([Scripted(body={"duration": 3.5}), Scripted(body={"duration": 2})])
    whisper_api = WhisperApiTranscriber(
        url=speech.base_url + "/", api_key="wa-key", language=None, timeout_s=5
    )
    speech_api = SpeechApiTranscriber(url=speech.base_url, timeout_s=5)
    try:
        first = await whisper_api.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
        second = await speech_api.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")
        third = await speech_api.transcribe(AUDIO, filename="voice.ogg", mime="audio/ogg")  # none given
    finally:
        await whisper_api.aclose()
        await speech_api.aclose()
    assert (first.duration_s, second.duration_s, third.duration_s) == (3.5, 2.0, None)


@pytest.mark.parametrize("name", ["capital.ogg", "capital.mp3", "capital.m4a", "silence.ogg", "long.ogg"])
def test_the_real_length_is_read_from_the_container(name: str) -> None:
    expected = {"capital": 2.35, "silence": 3.0, "long": 32.3}[name.split(".")[0]]
    assert measure_seconds((FIXTURES / name).read_bytes()) == pytest.approx(expected, abs=0.1)


def test_a_container_claiming_hours_is_measured_as_hours() -> None:
    assert measure_seconds(ogg_claiming(7200)) == pytest.approx(7200, abs=0.1)


def test_an_mp3_whose_header_understates_its_frames_is_measured_by_its_bytes() -> None:
    """Fifty copies of a 2.4 s MP3: its first header speaks of 2.4 s, its bytes hold two minutes
    (about 2 min decoded), and the bytes at the header's bit rate tell."""
    fifty = (FIXTURES / "capital.mp3").read_bytes() * 50
    assert measure_seconds(fifty) == pytest.approx(50 * 2.43, rel=0.05)


@pytest.mark.parametrize("junk", [b"", AUDIO, b"not audio at all" * 50, b"OggS" + bytes(200), SPEECH[:60]])
def test_audio_that_cannot_be_measured_is_none(junk: bytes) -> None:
    assert measure_seconds(junk) is None


def _page(packets: list[bytes], sequence: int, *, first: bool = False) -> bytes:
    page = OggPage()
    page.packets, page.sequence, page.serial, page.first = packets, sequence, 1, first
    return page.write()


@pytest.mark.parametrize(
    "damaged",
    [
        _page([], 0) + _page([b"OpusHead\x01"], 1),  # mutagen raises IndexError
        _page([b"OpusHead\x01"], 0, first=True),  # mutagen raises struct.error
    ],
)
def test_mutagen_errors_beyond_its_own_are_none_too(damaged: bytes) -> None:
    assert measure_seconds(damaged) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_measuring_never_raises_on_damaged_audio(data: st.DataObject) -> None:
    """mutagen's parsers leak IndexError and struct.error on damaged Ogg (found by fuzzing)."""
    name = data.draw(st.sampled_from(["capital.ogg", "capital.mp3", "capital.m4a"]))
    audio = bytearray((FIXTURES / name).read_bytes())
    audio = audio[: data.draw(st.integers(0, len(audio)))]
    for _ in range(data.draw(st.integers(0, 12))):
        if audio:
            audio[data.draw(st.integers(0, len(audio) - 1))] = data.draw(st.integers(0, 255))
    seconds = measure_seconds(bytes(audio))
    assert seconds is None or seconds > 0
