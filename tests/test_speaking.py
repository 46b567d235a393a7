"""Voice replies (/voice): the answer read aloud by the (fake) speech service and sent as an
OGG/Opus voice note after its text, through the intake, the jobs and the real SDKs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore import texts
from botcore.clock import ManualClock
from botcore.tts import spoken

from .fakes import FakeOpenAI, FakeTelegram, Scripted
from .services import Services, last_update, receive, run_due, services

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    async with services(tmp_path, tg, llm, clock) as built:
        yield built


async def say(s: Services, tg: FakeTelegram, text: str) -> None:
    tg.add_message(10, text)
    await receive(s, last_update(tg))
    await run_due(s)


async def test_voice_on_sends_the_text_then_a_voice_note(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, "/voice on")
    assert tg.texts_to(10) == [texts.VOICE_MODE_SET.format(mode="on")]
    await say(s, tg, "hello there")
    assert tg.texts_to(10)[-1] == "echo: hello there"  # the text answer, always
    [voice] = tg.voices
    assert voice["as"] == "voice" and voice["data"][:4] == b"OggS"
    [request] = llm.speech_requests
    assert request["input"] == "echo: hello there" and request["response_format"] == "opus"
    assert request["model"] == "gpt-4o-mini-tts" and request["voice"] == "alloy"
    usage = await s.storage.usage.summary(since=0)
    assert usage.spoken_chars == len("echo: hello there") and usage.cost_usd > 0
    await say(s, tg, "/usage")
    assert f"{len('echo: hello there')} characters read aloud" in tg.texts_to(10)[-1]


async def test_voice_auto_speaks_only_to_a_voice_note(s: Services, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    await say(s, tg, "/voice auto")
    await say(s, tg, "typed")
    assert tg.voices == []
    tg.add_voice(10, (FIXTURES / "capital.ogg").read_bytes())
    await receive(s, last_update(tg))
    await run_due(s)
    assert len(tg.voices) == 1


async def test_voice_off_is_the_default_and_bad_modes_are_explained(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, "/voice")
    await say(s, tg, "/voice loud")
    await say(s, tg, "hi")
    assert tg.texts_to(10)[:2] == [texts.VOICE_MODE.format(mode="off"), texts.VOICE_MODE_BAD]
    assert tg.voices == [] and llm.speech_requests == []


async def test_a_speech_service_that_fails_leaves_the_text_and_says_so_in_a_line(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.speech_down = True
    await say(s, tg, "/voice on")
    await say(s, tg, "hello")
    assert tg.texts_to(10)[-2:] == ["echo: hello", texts.VOICE_REPLY_FAILED]
    assert await s.queue.latest_dead(5) == []


async def test_code_and_markdown_are_not_read_aloud_and_long_answers_stop_at_a_sentence(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(
        Scripted(text="**Sure.** Run this:\n```python\nprint('x')\n```\nSee [the docs](https://x.io).")
    )
    await say(s, tg, "/voice on")
    await say(s, tg, "how?")
    assert llm.speech_requests[-1]["input"] == f"Sure. Run this: {texts.SPOKEN_CODE} See the docs."
    long = " ".join(f"Sentence number {n} is here." for n in range(200))
    cut = spoken(long, 300)
    assert len(cut) <= 300 and cut.endswith(texts.SPOKEN_REST)
    assert cut.removesuffix(texts.SPOKEN_REST).rstrip().endswith("is here.")


async def test_voice_replies_turned_off_by_the_owner_say_so(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, TTS_MODE="off", VOICE_REPLY_DEFAULT="on") as s:
        await say(s, tg, "/voice on")
        await say(s, tg, "hello")
    assert tg.texts_to(10) == [texts.TTS_OFF, "echo: hello"]
    assert tg.voices == [] and llm.speech_requests == []


async def test_an_answer_that_spends_the_budget_is_not_also_read_aloud(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    dear = {"PRICE_INPUT_PER_1M": "1000000", "USER_DAILY_BUDGET_USD": "1"}  # one answer spends it
    async with services(tmp_path, tg, llm, clock, **dear) as s:
        await say(s, tg, "/voice on")
        await say(s, tg, "hello")
    assert tg.texts_to(10)[-1] == "echo: hello"
    assert llm.speech_requests == [] and tg.voices == []
