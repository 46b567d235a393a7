"""Voice notes end to end: ``bot.py`` against the fake Telegram server (which serves the audio
file) and the fake OpenAI-compatible server (chat and /audio/transcriptions)."""

import contextlib
import io
import signal
import sqlite3
from pathlib import Path

import mutagen
import pytest

from botcore import texts
from botcore.errors import Cause

from .botproc import BotProcess
from .conftest import eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram, Scripted
from .test_stt import ogg_claiming, ogg_pages
from .test_stt_local import gone

AUDIO = b"OggS" + bytes(range(256)) * 4  # the fakes never decode it (nor can mutagen measure it)
HEARD = f"heard {len(AUDIO)} bytes"
SPEECH = (Path(__file__).with_name("fixtures") / "capital.ogg").read_bytes()
SPEECH_SECONDS = mutagen.File(io.BytesIO(SPEECH)).info.length  # 2.3 s


def usage_rows(data_dir: Path) -> list[tuple[int, str, float]]:
    """(chat, kind, audio seconds) of each call billed, read from a stopped bot's database."""
    with contextlib.closing(sqlite3.connect(data_dir / "bot.db")) as db:
        return db.execute("SELECT chat_id, kind, audio_seconds FROM usage ORDER BY id").fetchall()


async def shows(tg: FakeTelegram, chat_id: int, expected: list[str], timeout: float = 20) -> None:
    await eventually(
        lambda: tg.current_texts(chat_id) == expected, timeout=timeout, what=f"chat to show {expected}"
    )


async def test_voice_note_is_acknowledged_transcribed_and_answered(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    update = tg.add_voice(10, AUDIO, duration=4)
    await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])
    first = tg.sent[0]
    assert first["text"] == texts.VOICE_ACK and not first["edited"]  # acknowledged before anything else
    assert next(p for m, p in tg.calls if m == "getFile")["file_id"] == f"file-{update}"
    assert llm.transcriptions[0]["file"] == ("voice.ogg", AUDIO)
    assert llm.transcriptions[0]["model"] == "whisper-1"
    assert llm.requests[0]["messages"][-1] == {"role": "user", "content": HEARD}
    # The transcript is memory like a typed message: the next turn carries it.
    tg.add_message(10, "and then?")
    await eventually(lambda: len(llm.requests) == 2, what="the second turn")
    assert [m["content"] for m in llm.requests[1]["messages"][1:3]] == [HEARD, f"echo: {HEARD}"]


async def test_a_repeated_voice_update_makes_one_job(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.add_voice(10, AUDIO)
    again = dict(tg.pending[-1], update_id=tg.pending[-1]["update_id"] + 500)  # same message, redelivered
    tg.pending.append(again)
    await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])
    await eventually(lambda: tg.confirmed_below > again["update_id"], what="both updates stored")
    assert len(llm.transcriptions) == 1 and len(llm.requests) == 1
    assert sum(1 for m in tg.sent if m["text"] == texts.VOICE_ACK) == 1


async def test_a_transient_transcription_error_is_retried(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.stt_script.append(Scripted(status=500))
    tg.add_voice(10, AUDIO)
    await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])  # after 2 s
    assert len(llm.transcriptions) == 2


async def test_undecodable_audio_and_silence_get_friendly_texts(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.stt_script.extend([Scripted(status=400, body={"error": {"message": "Invalid file format."}})])
    tg.add_voice(10, b"not audio at all")
    await shows(tg, 10, [texts.VOICE_FAILED])
    llm.stt_script.append(Scripted(text=""))
    tg.add_voice(20, AUDIO)
    await shows(tg, 20, [texts.VOICE_NO_SPEECH])
    tg.add_message(20, "still there?")  # answered only after anything the voice note could cause
    await shows(tg, 20, [texts.VOICE_NO_SPEECH, "echo: still there?"])
    # An error or silence is never sent to the LLM as the user's words.
    assert [r["messages"][-1]["content"] for r in llm.requests] == ["still there?"]


async def test_oversize_and_overlong_are_refused_before_download(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.add_voice(10, AUDIO, file_size=25 * 1024 * 1024)
    tg.add_voice(20, AUDIO, duration=700)
    await shows(tg, 10, [texts.VOICE_TOO_BIG.format(size=25, limit=20)])
    await shows(tg, 20, [texts.VOICE_TOO_LONG.format(length="11 min 40 s", limit="10 min")])
    tg.add_message(20, "ok")  # in the chat's order: answered after the voice job had its turn
    await shows(tg, 20, [texts.VOICE_TOO_LONG.format(length="11 min 40 s", limit="10 min"), "echo: ok"])
    assert tg.downloads == [] and llm.transcriptions == []


async def test_audio_longer_than_it_claims_is_refused_after_download(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """It declares 1 s; its container says two hours. Nothing is transcribed, nothing billed."""
    process = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        tg.add_voice(10, ogg_claiming(7200), duration=1)
        # Opus skips its first 312 samples (6.5 ms): the container says 7199.99 s.
        too_long = texts.VOICE_TOO_LONG.format(length="119 min 59 s", limit="10 min")
        await shows(tg, 10, [too_long])  # the acknowledgement, edited
        tg.add_message(10, "ok")  # in the chat's order: answered once the voice job is over
        await shows(tg, 10, [too_long, "echo: ok"])
    finally:
        await process.stop_clean()
    assert len(tg.downloads) == 1 and llm.transcriptions == []
    assert [kind for _, kind, _ in usage_rows(tmp_path / "data")] == ["chat"]  # "ok" only


async def test_transcription_is_billed_by_the_provider_else_measured_else_declared(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    process = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        heard = f"heard {len(SPEECH)} bytes"
        tg.add_voice(10, SPEECH, duration=1)  # really 2.3 s
        await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=heard), f"echo: {heard}"])
        llm.stt_script.append(Scripted(body={"text": "hello", "usage": {"type": "duration", "seconds": 3}}))
        tg.add_voice(20, SPEECH, duration=1)  # the provider says it processed 3 s
        await shows(tg, 20, [texts.VOICE_TRANSCRIPT.format(text="hello"), "echo: hello"])
        tg.add_voice(30, AUDIO, duration=4)  # no container to measure: what was declared
        await shows(tg, 30, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])
    finally:
        await process.stop_clean()
    billed = {
        chat: seconds for chat, kind, seconds in usage_rows(tmp_path / "data") if kind == "transcription"
    }
    assert billed == {10: pytest.approx(SPEECH_SECONDS), 20: 3.0, 30: 4.0}


async def test_audio_files_and_video_notes_too(tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess) -> None:
    tg.add_voice(10, AUDIO, kind="audio")
    tg.add_voice(20, AUDIO, kind="video_note")
    await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])
    await shows(tg, 20, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])
    assert {t["file"][0] for t in llm.transcriptions} == {"song.mp3", "video_note.mp4"}


async def test_transcript_only_mode_and_voice_off(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    only = BotProcess(tmp_path / "a", tg, llm, VOICE_REPLY="transcript").start()
    try:
        tg.add_voice(10, AUDIO)
        await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD)])
    finally:
        assert await only.stop() == 0
    assert llm.requests == []
    off = BotProcess(tmp_path / "b", tg, llm, TRANSCRIPTION_MODE="off").start()
    try:
        tg.add_voice(20, AUDIO)
        await shows(tg, 20, [texts.VOICE_OFF])
    finally:
        assert await off.stop() == 0


async def test_kill_9_mid_transcription_then_restart_answers_the_voice_note(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.stt_script.append(Scripted(delay_s=60))  # the first transcription hangs
    process = BotProcess(tmp_path / "data", tg, llm).start()
    tg.add_voice(10, AUDIO)
    await eventually(lambda: len(llm.transcriptions) == 1, timeout=20, what="the transcription to start")
    assert await process.kill() == -9
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])
    finally:
        assert await restarted.stop() == 0, restarted.log()
    assert sum(1 for m in tg.sent if m["text"] == texts.VOICE_ACK) == 1  # acknowledged once


async def test_local_transcription_end_to_end(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    """Real speech, transcribed offline in the bot process by the bundled tiny.en model."""
    speech = (Path(__file__).with_name("fixtures") / "capital.ogg").read_bytes()
    process = BotProcess(tmp_path / "data", tg, llm, TRANSCRIPTION_MODE="local").start()
    try:
        tg.add_voice(10, speech, duration=3)
        await eventually(lambda: len(tg.current_texts(10)) == 2, timeout=60, what="transcript and answer")
    finally:
        assert await process.stop() == 0, process.log()
    transcript, answer = tg.current_texts(10)
    assert transcript.startswith("🎤 ") and "capital" in transcript.lower() and "france" in transcript.lower()
    assert answer == "echo: " + transcript.removeprefix("🎤 ")
    assert llm.transcriptions == []  # nothing left the process


def ogg_repeated(ogg: bytes, times: int) -> bytes:
    """One Ogg/Opus stream playing ``ogg``'s audio ``times`` times over: its audio pages repeated
    with granule positions and page numbers moved on (long speech without a large fixture)."""
    pages = ogg_pages(ogg)
    headers = [page for page in pages if page.position == 0]
    audio = [(page, page.position) for page in pages[len(headers) :]]
    out = [page.write() for page in headers]
    for round_ in range(times):
        for index, (page, position) in enumerate(audio):
            page.position = position + round_ * audio[-1][1]
            page.sequence = len(out)
            page.last = round_ == times - 1 and index == len(audio) - 1
            out.append(page.write())
    return b"".join(out)


def transcribing_children(pid: int) -> list[int]:
    """The multiprocessing children of process ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


async def transcribing_an_hour(process: BotProcess, tg: FakeTelegram) -> list[int]:
    """Send the bot (in local mode) an hour of speech, minutes of work for tiny.en here; returns
    once a child process transcribes it."""
    hour = ogg_repeated((Path(__file__).with_name("fixtures") / "long.ogg").read_bytes(), 112)
    tg.add_voice(10, hour, duration=3600)
    assert process.proc is not None
    pid, children = process.proc.pid, []
    await eventually(
        lambda: children.extend(transcribing_children(pid)) or children,
        timeout=60,
        what="the transcribing child",
    )
    return children


LOCAL_HOUR = {"TRANSCRIPTION_MODE": "local", "MAX_VOICE_SECONDS": "3660"}


async def test_shutdown_does_not_wait_for_a_local_transcription(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """Past SHUTDOWN_GRACE_S the transcribing child is killed, so the bot exits at once (it used
    to wait for the transcription to end)."""
    process = BotProcess(tmp_path / "data", tg, llm, SHUTDOWN_GRACE_S="1", **LOCAL_HOUR).start()
    try:
        children = await transcribing_an_hour(process, tg)
        await process.stop_clean()  # exit status 0 within stop()'s 30 s, no traceback
    finally:
        if process.proc is not None and process.proc.poll() is None:
            await process.kill()
    assert all(gone(child) for child in children)  # killed and reaped, not left behind
    assert "ignored cancellation" not in process.log()  # it stopped when cancelled
    assert tg.current_texts(10) == [texts.VOICE_ACK] and llm.transcriptions == []


async def test_cancel_kills_a_local_transcription(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    process = BotProcess(tmp_path / "data", tg, llm, **LOCAL_HOUR).start()
    try:
        children = await transcribing_an_hour(process, tg)
        tg.add_message(10, "/cancel")
        await shows(tg, 10, [texts.VOICE_STOPPED, texts.STOPPED])
        assert all(gone(child) for child in children)  # it used to transcribe on, for nobody
        await process.stop_clean()
    finally:
        if process.proc is not None and process.proc.poll() is None:
            await process.kill()


async def test_local_mode_without_faster_whisper_is_a_startup_error(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    # A model name that is not a directory: faster-whisper would have to download it, which the
    # check does not do. Instead point at a model directory that does not exist.
    process = BotProcess(
        tmp_path / "data", tg, llm, TRANSCRIPTION_MODE="local", LOCAL_WHISPER_MODEL=str(tmp_path / "nowhere")
    ).start()
    code = await process.stop(signal.SIGCONT)
    assert code == 2, process.log()
    assert process.log().splitlines()[-1].startswith("bot.py: LOCAL_WHISPER_MODEL:")


async def test_when_the_answer_fails_the_transcript_stays(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.script.append(Scripted(status=401, body={"error": {"code": "invalid_api_key"}}))
    tg.add_voice(10, AUDIO)
    await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), texts.failed(Cause.AUTH)])


async def test_a_refused_transcription_key_says_voice_is_unavailable(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.stt_script.append(Scripted(status=401, body={"error": {"code": "invalid_api_key"}}))
    tg.add_voice(10, AUDIO)
    await shows(tg, 10, [texts.voice_failed(Cause.AUTH)])
    assert len(llm.transcriptions) == 1 and not llm.requests
    await eventually(
        lambda: "transcription: the API key was refused (HTTP 401)" in bot.log(), what="the alert"
    )


async def test_a_deleted_acknowledgement_gets_a_new_message(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.fail["editMessageText"] = [Failure(400, "Bad Request: message to edit not found")]
    tg.add_voice(10, AUDIO)
    await eventually(lambda: f"echo: {HEARD}" in tg.current_texts(10), what="the answer")
    # (The fake still lists the acknowledgement the user deleted in Telegram.)
    assert tg.current_texts(10) == [
        texts.VOICE_ACK,
        texts.VOICE_TRANSCRIPT.format(text=HEARD),
        f"echo: {HEARD}",
    ]


async def test_a_failed_acknowledgement_does_not_hold_up_the_voice_note(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.fail["sendMessage"] = [Failure(400, "Bad Request: message thread not found")]  # the acknowledgement
    tg.add_voice(10, AUDIO)
    await shows(tg, 10, [texts.VOICE_TRANSCRIPT.format(text=HEARD), f"echo: {HEARD}"])


async def test_cancel_stops_a_transcription_which_is_not_retried(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.stt_script.append(Scripted(delay_s=60.0))
    tg.add_voice(10, AUDIO)
    await eventually(lambda: llm.transcriptions, timeout=20, what="the transcription request")
    tg.add_message(10, "/cancel")
    await shows(tg, 10, [texts.VOICE_STOPPED, texts.STOPPED])
    tg.add_message(10, "hello")
    await eventually(lambda: tg.texts_to(10)[-1:] == ["echo: hello"], timeout=20, what="the next answer")
    assert len(llm.transcriptions) == 1 and len(llm.requests) == 1  # not retried, not answered
    assert "is dead" not in bot.log()  # stopped is not failed
