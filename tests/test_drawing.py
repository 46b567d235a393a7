"""/image: a picture drawn by the (fake) image service and sent with sendPhoto, through the
intake, the ``image`` job and the real SDKs, on a manual clock; a retry never pays twice."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore import spool, texts
from botcore.clock import ManualClock
from botcore.drawing import IMAGE_KIND
from botcore.errors import Cause
from botcore.models import JobState

from .fakes import Failure, FakeOpenAI, FakeTelegram
from .services import Services, attempt, last_update, receive, run_due, services, until_due


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    async with services(tmp_path, tg, llm, clock) as built:
        yield built


async def ask(s: Services, tg: FakeTelegram, text: str, chat_id: int = 10) -> None:
    tg.add_message(chat_id, text)
    await receive(s, last_update(tg))
    await run_due(s)


async def test_a_picture_is_drawn_sent_billed_and_remembered(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await ask(s, tg, "/image a red square")
    [request] = llm.image_requests
    assert request == {"model": "gpt-image-1", "prompt": "a red square", "size": "1024x1024", "n": 1}
    [photo] = tg.photos
    assert photo["data"] == llm.picture and photo["caption"] == "a red square"
    summary = await s.storage.usage.summary(since=0)
    assert summary.images == 1 and summary.cost_usd == pytest.approx(0.04)
    history = await s.storage.conversations.history(10, limit=10, since=0)
    assert history[-1].content == texts.IMAGE_REMEMBERED.format(prompt="a red square")
    assert list((s.settings.data_dir / "images").glob("*")) == []  # nothing left behind
    await ask(s, tg, "/usage")
    assert "1 pictures" in tg.texts_to(10)[-1]


async def test_a_picture_given_as_a_url_is_fetched(s: Services, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    llm.picture_as_url = True
    await ask(s, tg, "/img a lighthouse")  # the short name
    [photo] = tg.photos
    assert photo["data"] == llm.picture


async def test_a_send_that_fails_is_retried_without_drawing_again(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.fail["sendPhoto"] = [Failure(502, "Bad Gateway")]
    tg.add_message(10, "/image a blue circle")
    await receive(s, last_update(tg))
    first = await attempt(s, IMAGE_KIND)
    assert first.error is not None and len(llm.image_requests) == 1
    until_due(s, first.after)
    again = await attempt(s, IMAGE_KIND)
    assert again.error is None and again.after.state is JobState.DONE
    assert len(llm.image_requests) == 1 and len(tg.photos) == 1  # drawn and paid once
    assert (await s.storage.usage.summary(since=0)).images == 1


async def test_a_refused_prompt_gets_a_polite_word_and_no_retry(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await ask(s, tg, "/image something forbidden")
    assert tg.texts_to(10) == [texts.failed(Cause.REFUSED)]
    [dead] = await s.queue.latest_dead(5)
    assert dead.attempts == 1 and tg.photos == []


async def test_budgets_stop_a_picture_before_it_is_asked_for(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, USER_DAILY_BUDGET_USD="0") as s:
        await ask(s, tg, "/image a cat")
    assert tg.texts_to(10) == [texts.BUDGET_USER_DAY.format(limit=0)]
    assert llm.image_requests == []


async def test_without_a_prompt_or_with_drawing_off_the_user_is_told(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock) as s:
        await ask(s, tg, "/image")
    async with services(tmp_path, tg, llm, clock, IMAGE_MODE="off") as s:
        await ask(s, tg, "/image a cat")
    assert tg.texts_to(10) == [texts.IMAGE_USAGE, texts.IMAGE_OFF]
    assert llm.image_requests == []


async def test_retry_after_a_picture_does_not_ask_the_chat_model(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await ask(s, tg, "/image a red square")
    await ask(s, tg, "/retry")
    assert tg.texts_to(10) == [texts.RETRY_IMAGE] and llm.requests == []


async def test_files_left_behind_are_swept_after_a_day(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    await spool.keep(folder / "old.png", b"x")
    await spool.keep(folder / "new.png", b"y")
    os.utime(folder / "old.png", (time.time() - 2 * 86_400,) * 2)
    assert await spool.sweep(folder, older_than_s=86_400) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["new.png"]
    assert await spool.sweep(tmp_path / "missing", older_than_s=1) == 0
