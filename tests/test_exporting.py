"""/export (the chat's remembered conversation as a Markdown or JSON file) and the visible receipt
(REACTIONS), through the intake, the jobs and the real SDKs against the fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore import texts
from botcore.clock import ManualClock

from .conftest import eventually
from .fakes import FakeOpenAI, FakeTelegram, Scripted
from .services import Services, last_update, receive, run_due, services, spin


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    async with services(tmp_path, tg, llm, clock) as built:
        yield built


async def say(s: Services, tg: FakeTelegram, text: str, chat_id: int = 10, **kwargs: object) -> None:
    tg.add_message(chat_id, text, **kwargs)  # type: ignore[arg-type]
    await receive(s, last_update(tg))
    await run_due(s)


async def test_export_sends_the_conversation_as_markdown_and_as_json(s: Services, tg: FakeTelegram) -> None:
    await say(s, tg, "what is the capital of France?")
    await say(s, tg, "/export")
    [markdown] = tg.documents
    text = markdown["data"].decode()
    assert markdown["filename"] == "conversation-10.md"
    assert "Model: fake-model · Persona: assistant" in text
    assert "## You, " in text and "what is the capital of France?" in text
    assert "## Assistant, " in text and "echo: what is the capital of France?" in text
    assert markdown["caption"] == texts.EXPORT_CAPTION.format(count=2)
    await say(s, tg, "/export json")
    document = json.loads(tg.documents[-1]["data"])
    assert [m["role"] for m in document["messages"]] == ["user", "assistant"]
    assert document["messages"][0]["content"] == "what is the capital of France?"
    assert document["model"] == "fake-model" and document["messages"][0]["time"].endswith("+00:00")


async def test_nothing_to_export_and_bad_forms_are_said(s: Services, tg: FakeTelegram) -> None:
    await say(s, tg, "/export")
    await say(s, tg, "/export pdf")
    assert tg.texts_to(10) == [texts.EXPORT_NOTHING, texts.EXPORT_USAGE]
    assert tg.documents == []


async def test_after_reset_there_is_nothing_to_export(s: Services, tg: FakeTelegram) -> None:
    await say(s, tg, "remember this")
    await say(s, tg, "/reset")
    await say(s, tg, "/export")
    assert tg.texts_to(10)[-1] == texts.EXPORT_NOTHING


async def test_in_a_group_only_admins_export(s: Services, tg: FakeTelegram) -> None:
    group = {"chat_type": "supergroup", "user_id": 20}
    await say(s, tg, "@test_bot hello", chat_id=-100700, **group)
    await say(s, tg, "/export@test_bot", chat_id=-100700, **group)
    assert tg.texts_to(-100700)[-1] == texts.EXPORT_ADMINS_ONLY and tg.documents == []
    tg.admins[-100700] = {20}
    await say(s, tg, "/export@test_bot", chat_id=-100700, **group)
    assert len(tg.documents) == 1


# -- the visible receipt (REACTIONS) ---------------------------------------------------------------


async def test_a_message_still_waiting_gets_a_receipt_cleared_once_answered(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    update = tg.add_message(10, "hello")
    await receive(s, last_update(tg))
    await spin()  # the receipt's wait has begun
    s.clock.advance(1.5)  # nothing answered it within the moment (the AI service is slow)
    await eventually(lambda: tg.reactions, what="the receipt")
    assert tg.reactions == [(10, update, "👀")]
    await run_due(s)
    await eventually(lambda: tg.reactions[-1] == (10, update, None), what="the receipt cleared")


async def test_a_message_whose_answer_must_wait_gets_its_receipt_after_all(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(status=503))  # the answer began, failed, and will be tried again
    update = tg.add_message(10, "hello")
    await receive(s, last_update(tg))
    await spin()
    await run_due(s)
    s.clock.advance(1.5)
    await eventually(lambda: tg.reactions == [(10, update, "👀")], what="the receipt")


async def test_a_message_whose_answer_is_being_written_needs_no_receipt(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(delay_s=0.5))  # the model takes its time; "typing…" shows meanwhile
    tg.add_message(10, "hello")
    await receive(s, last_update(tg))
    await spin()
    answering = asyncio.create_task(run_due(s))
    await eventually(lambda: llm.requests, what="the answer being written")
    s.clock.advance(1.5)
    await asyncio.wait_for(answering, 10)
    await asyncio.sleep(0.1)
    assert tg.texts_to(10) == ["echo: hello"] and tg.reactions == []


async def test_an_answer_within_the_moment_costs_no_reaction_at_all(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, "hello")
    s.clock.advance(5.0)
    await spin()
    assert tg.texts_to(10) == ["echo: hello"] and tg.reactions == []
    assert "setMessageReaction" not in [m for m, _ in tg.calls]


async def test_a_chat_that_refuses_reactions_is_not_asked_again_and_still_answered(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.no_reactions.add(10)
    for text in ("one", "two"):
        tg.add_message(10, text)
        await receive(s, last_update(tg))
        await spin()
        s.clock.advance(1.5)
        await spin()
        await run_due(s)
    assert tg.texts_to(10) == ["echo: one", "echo: two"]
    assert sum(1 for m, _ in tg.calls if m == "setMessageReaction") == 1  # refused once, then left alone


async def test_groups_get_no_receipt_by_default_and_off_is_off(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock) as s:
        await say(s, tg, "@test_bot hi", chat_id=-100800, chat_type="supergroup", user_id=20)
    async with services(tmp_path, tg, llm, clock, REACTIONS="off") as s:
        await say(s, tg, "hi")
    assert tg.reactions == [] and len(tg.texts_to(10)) == 1
