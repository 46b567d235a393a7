"""The voice service called directly, job by job: the acknowledgement, then the transcription
(which waits for the acknowledgement's decision), the edit into the transcript and the answer,
and what is said when a voice job fails for good. Real SQLite, the real SDKs against the fakes
(the fake OpenAI server transcribes), real recordings from tests/fixtures, a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore import texts
from botcore.clock import ManualClock
from botcore.errors import Cause, NotYet, PermanentError
from botcore.models import JobState, Turn
from botcore.notices import NOTICE_KIND
from botcore.storage import ack_decision_key
from botcore.voice import ACK_KIND, VOICE_KIND

from .fakes import FakeOpenAI, FakeTelegram, Scripted
from .services import (
    Services,
    after_a_crash,
    attempt,
    claim,
    last_update,
    methods,
    receive,
    services,
    until_due,
)

FIXTURES = Path(__file__).with_name("fixtures")
SPEECH = (FIXTURES / "capital.ogg").read_bytes()  # 2.31 s by its container
LONG = (FIXTURES / "long.ogg").read_bytes()  # 32.31 s
HEARD = f"heard {len(SPEECH)} bytes"  # what the fake transcription server hears
TRANSCRIPT = texts.VOICE_TRANSCRIPT.format(text=HEARD)
ADMIN = 1


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    async with services(tmp_path, tg, llm, clock, ADMIN_USER_IDS=str(ADMIN)) as built:
        yield built


async def voice_note(s: Services, tg: FakeTelegram, audio: bytes = SPEECH, **kwargs: int) -> None:
    """A voice note arrives in chat 10 and the intake stores its two jobs."""
    tg.add_voice(10, audio, **kwargs)
    await receive(s, last_update(tg))


async def decision(s: Services, tg: FakeTelegram) -> str | None:
    """What the acknowledgement of the last voice note left for its voice job."""
    message = last_update(tg)["message"]
    return await s.storage.kv.get(ack_decision_key(message["chat"]["id"], message["message_id"]))


async def acknowledged(s: Services, tg: FakeTelegram) -> int:
    """Run the acknowledgement job; the id of the message it sent."""
    ack = await attempt(s, ACK_KIND)
    assert ack.error is None and ack.after.checkpoint == {"sent": 1}
    return int(await decision(s, tg) or 0)


async def test_the_acknowledgement_says_processing_and_leaves_its_message_id_for_the_voice_job(
    s: Services, tg: FakeTelegram
) -> None:
    await voice_note(s, tg)
    raw = last_update(tg)
    job = await claim(s, ACK_KIND)
    await s.voice.acknowledge(job)  # then its worker dies before recording it done
    [sent] = tg.sent
    assert sent["text"] == texts.VOICE_ACK and not sent["edited"]
    [call] = methods(tg, "sendMessage", 10)
    assert call["reply_parameters"]["message_id"] == raw["message"]["message_id"]
    again = await after_a_crash(s, job)
    assert again.checkpoint == {"sent": 1}
    assert await decision(s, tg) == str(sent["message_id"])
    await s.voice.acknowledge(again)
    assert len(tg.sent) == 1  # acknowledged once


async def test_the_voice_job_waits_for_the_acknowledgement_then_edits_it_into_the_transcript_and_answers(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await voice_note(s, tg, duration=1)  # it claims 1 s; its container says 2.31 s
    early = await attempt(s, VOICE_KIND)  # the acknowledgement job is still queued
    assert isinstance(early.error, NotYet)
    assert early.after.state is JobState.QUEUED and early.after.attempts == 0  # no attempt spent
    until_due(s, early.after)
    ack_job = await claim(s, ACK_KIND)  # running, but no decision yet
    running = await attempt(s, VOICE_KIND)
    assert isinstance(running.error, NotYet)
    assert tg.sent == [] and tg.downloads == [] and llm.transcriptions == []
    await s.voice.acknowledge(ack_job)
    assert await s.queue.complete(ack_job)
    until_due(s, running.after)
    done = await attempt(s, VOICE_KIND)
    assert done.error is None and done.after.state is JobState.DONE
    ack_id = tg.sent[0]["message_id"]
    [edit] = methods(tg, "editMessageText", 10)
    assert (int(edit["message_id"]), edit["text"]) == (ack_id, TRANSCRIPT)
    assert tg.current_texts(10) == [TRANSCRIPT, f"echo: {HEARD}"]
    assert llm.transcriptions[0]["file"] == ("voice.ogg", SPEECH)
    assert llm.requests[0]["messages"] == [{"role": "user", "content": HEARD}]
    history = await s.storage.conversations.history(10, limit=10, since=0)
    assert history == [Turn("user", HEARD), Turn("assistant", f"echo: {HEARD}")]
    voice = await s.storage.usage.summary(since=0)
    assert voice.requests == 2 and voice.audio_seconds == pytest.approx(2.31, abs=0.01)  # as measured


async def test_a_voice_job_that_waits_past_the_acknowledgements_retention_still_edits_it(
    s: Services, tg: FakeTelegram
) -> None:
    """The acknowledgement job is finished and purged (JOB_RETENTION_DONE_S) long before a voice
    note behind a slow answer gets its turn: its decision must outlive it."""
    await voice_note(s, tg)
    ack_id = await acknowledged(s, tg)
    s.clock.advance(3600)
    assert (await s.queue.purge(done_after_s=300, dead_after_s=300)).done == 1  # the ack job
    done = await attempt(s, VOICE_KIND)
    assert done.error is None
    [edit] = methods(tg, "editMessageText", 10)
    assert (int(edit["message_id"]), edit["text"]) == (ack_id, TRANSCRIPT)
    assert await decision(s, tg) is None  # the voice job cleared it


async def test_a_note_too_large_is_refused_before_anything_is_downloaded(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await voice_note(s, tg, file_size=25 * 1024 * 1024)  # over TELEGRAM_MAX_DOWNLOAD_MB (20)
    ack = await attempt(s, ACK_KIND)
    assert ack.error is None and await decision(s, tg) == "refused"
    voice = await attempt(s, VOICE_KIND)
    assert voice.error is None and voice.after.state is JobState.DONE
    assert tg.current_texts(10) == [texts.VOICE_TOO_BIG.format(size=25, limit=20)]
    assert methods(tg, "getFile") == [] and tg.downloads == []
    assert llm.transcriptions == [] and llm.requests == []


async def test_a_note_longer_than_it_claims_is_measured_after_download_and_refused(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, MAX_VOICE_SECONDS="20") as s:
        await voice_note(s, tg, LONG, duration=5)  # it claims 5 s
        ack_id = await acknowledged(s, tg)
        voice = await attempt(s, VOICE_KIND)
        assert voice.error is None
        too_long = texts.VOICE_TOO_LONG.format(length="32.4 s", limit="20 s")
        [edit] = methods(tg, "editMessageText", 10)
        assert (int(edit["message_id"]), edit["text"]) == (ack_id, too_long)  # in place of "Processing…"
        assert tg.current_texts(10) == [too_long]
        assert len(tg.downloads) == 1 and llm.transcriptions == [] and llm.requests == []
        assert (await s.storage.usage.summary(since=0)).requests == 0  # nothing billed


async def test_a_transcription_that_fails_for_good_is_said_in_place_of_the_acknowledgement(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.stt_script.append(Scripted(status=400, body={"error": {"message": "Invalid file format."}}))
    await voice_note(s, tg)
    ack_id = await acknowledged(s, tg)
    dead = await attempt(s, VOICE_KIND)  # the worker calls on_dead: edited in place
    assert isinstance(dead.error, PermanentError) and dead.after.state is JobState.DEAD
    [edit] = methods(tg, "editMessageText", 10)
    assert (int(edit["message_id"]), edit["text"]) == (ack_id, texts.VOICE_FAILED)
    assert tg.current_texts(10) == [texts.VOICE_FAILED]
    assert await s.queue.by_dedup_key(f"notice:{dead.after.id}") is None  # no notice besides
    assert llm.requests == []  # the error is never the user's words


async def test_when_the_answer_fails_after_the_transcript_the_failure_is_a_durable_notice(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(status=401, body={"error": {"code": "invalid_api_key"}}))
    await voice_note(s, tg)
    await acknowledged(s, tg)
    dead = await attempt(s, VOICE_KIND)
    assert isinstance(dead.error, PermanentError) and dead.after.state is JobState.DEAD
    assert tg.current_texts(10) == [TRANSCRIPT]  # the transcript stays
    notice = await s.queue.by_dedup_key(f"notice:{dead.after.id}")
    assert notice is not None and notice.state is JobState.QUEUED
    assert notice.payload["text"] == texts.failed(Cause.AUTH)  # as the chat says it: not "voice"
    sent = await attempt(s, NOTICE_KIND)
    assert sent.error is None
    assert tg.current_texts(10) == [TRANSCRIPT, texts.failed(Cause.AUTH)]
    [alert] = tg.texts_to(ADMIN)  # only the owner can fix a refused key
    assert "the API key was refused (HTTP 401)" in alert
