"""Photos and documents, end to end through the intake, the jobs and the real SDKs against the
fake servers (a real SQLite file, a manual clock): what the model is sent, what the user sees,
what is remembered, and every polite refusal."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from botcore import texts
from botcore.clock import ManualClock
from botcore.documents import SUPPORTED
from botcore.errors import Cause
from botcore.i18n import gettext
from botcore.media import MEDIA_ACK_KIND, MEDIA_KIND
from botcore.models import JobState

from .fakes import FakeOpenAI, FakeTelegram, Scripted, images_in, last_text
from .services import Services, after_a_crash, claim, last_update, methods, receive, run_due, services

FIXTURES = Path(__file__).parent / "fixtures"
GROUP = -100600


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    async with services(tmp_path, tg, llm, clock) as built:
        yield built


async def arrive(s: Services, tg: FakeTelegram) -> None:
    """The update the fake Telegram made last is stored, and every job it became runs."""
    await receive(s, last_update(tg))
    await run_due(s)


def decoded(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


async def test_a_photo_with_a_caption_is_shown_to_the_model_and_remembered(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_photo(10, (FIXTURES / "photo.jpg").read_bytes(), caption="what colour is the sky here?")
    await arrive(s, tg)
    body = llm.requests[-1]
    assert last_text(body) == "what colour is the sky here?"
    [image] = images_in(body)
    assert decoded(image).format == "JPEG"
    # The largest size within IMAGE_MAX_SIDE was asked of Telegram, by file id, when the job ran.
    assert [p["file_id"] for p in methods(tg, "getFile")] == [f"photo-{last_update(tg)['update_id']}-1280"]
    ack = [m for m in tg.sent if m["text"] == texts.IMAGE_ACK]
    assert ack and (10, ack[0]["message_id"]) in tg.deleted  # acknowledged, then removed
    assert tg.current_texts(10) == ["echo: what colour is the sky here?"]
    [question, _] = await s.storage.conversations.history(10, limit=10, since=0)
    assert question.images == (methods(tg, "getFile")[0]["file_id"],)  # a reference, not the bytes
    assert "base64" not in str((await s.queue.get(2)).payload)  # type: ignore[union-attr]


async def test_the_next_question_sees_the_photo_again_and_the_one_after_a_marker(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
    await arrive(s, tg)
    assert last_text(llm.requests[-1]) == texts.IMAGE_QUESTION  # a photo alone: describe it
    tg.add_message(10, "and what colour is it?")
    await arrive(s, tg)
    assert len(images_in(llm.requests[-1])) == 1
    tg.add_message(10, "thanks")
    await arrive(s, tg)
    assert images_in(llm.requests[-1]) == []
    first_question = llm.requests[-1]["messages"][0]["content"]
    assert first_question.startswith("[1 image(s) sent earlier")


async def test_a_model_that_cannot_see_is_told_once_and_remembered(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    refusal = {"error": {"message": "Invalid content type. image_url is only supported by certain models."}}
    llm.script.append(Scripted(status=400, body=refusal))
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
    await arrive(s, tg)
    assert tg.current_texts(10)[-1] == texts.failed(Cause.NO_VISION)
    asked = len(llm.requests)
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
    await arrive(s, tg)
    assert len(llm.requests) == asked  # learned: not asked again
    assert tg.current_texts(10)[-1] == texts.failed(Cause.NO_VISION)
    tg.add_message(10, "plain text still works")
    await arrive(s, tg)
    assert tg.current_texts(10)[-1] == "echo: plain text still works"


async def test_with_vision_off_a_photo_gets_a_polite_word(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, VISION="off") as s:
        tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
        await arrive(s, tg)
    assert tg.current_texts(10) == [texts.VISION_OFF]
    assert llm.requests == [] and methods(tg, "getFile") == []


async def test_a_corrupt_photo_is_refused_politely_and_not_retried(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_photo(10, (FIXTURES / "corrupt.jpg").read_bytes())
    await arrive(s, tg)
    assert tg.current_texts(10) == [texts.failed(Cause.BAD_FILE)]  # in place of the acknowledgement
    [dead] = await s.queue.latest_dead(5)
    assert dead.kind == MEDIA_KIND and dead.attempts == 1
    assert llm.requests == []


async def test_a_pdf_is_read_and_its_text_reaches_the_prompt_and_memory(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    pdf = (FIXTURES / "two_pages.pdf").read_bytes()
    tg.add_document(
        10, pdf, file_name="report.pdf", mime_type="application/pdf", caption="what is the secret?"
    )
    await arrive(s, tg)
    prompt = last_text(llm.requests[-1])
    assert prompt.startswith("what is the secret?") and "The secret word is pomegranate." in prompt
    assert texts.DOCUMENT_ACK.format(name="report.pdf") in [m["text"] for m in tg.sent]
    tg.add_message(10, "say it again")
    await arrive(s, tg)
    remembered = " ".join(m["content"] for m in llm.requests[-1]["messages"])
    assert "pomegranate" in remembered and len(methods(tg, "getFile")) == 1  # not downloaded again


async def test_a_text_file_without_a_caption_is_summarised(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_document(10, (FIXTURES / "notes.md").read_bytes(), file_name="notes.md", mime_type="text/markdown")
    await arrive(s, tg)
    assert last_text(llm.requests[-1]).startswith(texts.DOCUMENT_QUESTION)


async def test_a_long_document_is_cut_and_the_user_told(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, DOCUMENT_MAX_CHARS="1000") as s:
        tg.add_document(10, ("word " * 2000).encode(), file_name="long.txt", mime_type="text/plain")
        await arrive(s, tg)
    assert len(last_text(llm.requests[-1])) < 1300
    assert any(t.startswith("✂️") for t in tg.current_texts(10))


async def test_a_30_mb_document_is_refused_before_it_is_fetched(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_document(
        10, b"%PDF-1.4 small", file_name="huge.pdf", mime_type="application/pdf", file_size=30 * 1024 * 1024
    )
    await arrive(s, tg)
    assert tg.current_texts(10) == [texts.DOCUMENT_TOO_BIG.format(size=30.0, limit=10)]
    assert methods(tg, "getFile") == [] and llm.requests == []


async def test_unsupported_files_and_scans_get_a_clear_word(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_document(10, b"PK\x03\x04zip", file_name="archive.zip", mime_type="application/zip")
    await arrive(s, tg)
    assert tg.current_texts(10) == [texts.DOCUMENT_UNSUPPORTED.format(supported=gettext(SUPPORTED))]
    tg.add_document(
        10, (FIXTURES / "scan.pdf").read_bytes(), file_name="scan.pdf", mime_type="application/pdf"
    )
    await arrive(s, tg)
    assert tg.current_texts(10)[-1] == texts.failed(Cause.NO_TEXT)
    assert llm.requests == []


async def test_in_a_group_only_a_photo_addressed_to_the_bot_is_answered(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    group = {"chat_type": "supergroup", "user_id": 20}
    tg.add_photo(GROUP, (FIXTURES / "tiny.png").read_bytes(), caption="look at this", **group)
    await arrive(s, tg)
    assert tg.sent == [] and llm.requests == []
    tg.add_photo(GROUP, (FIXTURES / "tiny.png").read_bytes(), caption="@test_bot what is it?", **group)
    await arrive(s, tg)
    assert last_text(llm.requests[-1]) == "Ada: what is it?"


async def test_a_photo_and_the_text_after_it_are_answered_in_order(s: Services, tg: FakeTelegram) -> None:
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes(), caption="first")
    tg.add_message(10, "second")
    await s.intake.persist(tg.pending[-2:])
    done = await run_due(s)
    assert [a.job.kind for a in done if a.after.state is JobState.DONE] == [
        MEDIA_ACK_KIND,
        MEDIA_KIND,
        "tg-update",
    ]
    assert tg.current_texts(10) == ["echo: first", "echo: second"]


async def album(s: Services, tg: FakeTelegram, count: int, *, caption_on: int = 0) -> list[int]:
    """An album of ``count`` photos arrives (as Telegram sends one: an update per photo), its
    window passes, and every job runs."""
    ids = [
        tg.add_photo(
            10,
            (FIXTURES / "tiny.png").read_bytes(),
            album="alb-1",
            caption="what are these?" if n == caption_on else None,
        )
        for n in range(count)
    ]
    await s.intake.persist(tg.pending[-count:])
    assert await run_due(s) != []  # the acknowledgement, at once
    s.clock.advance(2.0)  # the album's window
    await run_due(s)
    return ids


async def test_an_album_is_one_question_with_all_its_photos(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await album(s, tg, 3, caption_on=1)
    [request] = llm.requests
    assert len(images_in(request)) == 3 and last_text(request) == "what are these?"
    assert [m["text"] for m in tg.sent].count(texts.ALBUM_ACK) == 1
    assert tg.current_texts(10) == ["echo: what are these?"]
    assert await s.queue.latest_dead(5) == []
    assert await s.storage.kv.get("album-part:10:1001") is None  # the parts' keys are gone


async def test_an_album_past_the_limit_shows_the_first_photos_and_says_so(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await album(s, tg, 6)
    [request] = llm.requests
    assert len(images_in(request)) == 4
    assert texts.ALBUM_CUT.format(count=4) in tg.current_texts(10)


async def test_a_user_over_budget_is_told_before_anything_is_fetched(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, USER_DAILY_BUDGET_USD="0") as s:
        pdf = (FIXTURES / "two_pages.pdf").read_bytes()
        tg.add_document(10, pdf, file_name="report.pdf", mime_type="application/pdf")
        await arrive(s, tg)
        tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
        await arrive(s, tg)
    refused = texts.BUDGET_USER_DAY.format(limit=0)
    assert tg.current_texts(10) == [refused, refused]
    assert methods(tg, "getFile") == [] and llm.requests == []


NO_IMAGES = {"error": {"message": "Invalid content type. image_url is only supported by certain models."}}


async def test_an_image_error_that_says_nothing_of_the_model_does_not_make_it_blind(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
    await arrive(s, tg)
    too_many = {"error": {"message": "At most 1 image(s) may be provided in one request."}}
    llm.script.append(Scripted(status=400, body=too_many))
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes(), caption="and this one?")
    await arrive(s, tg)
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes(), caption="a third")
    await arrive(s, tg)
    assert last_text(llm.requests[-1]) == "a third" and images_in(llm.requests[-1])  # still sent images


async def test_a_text_question_is_answered_even_when_an_earlier_photo_is_refused(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
    await arrive(s, tg)
    llm.script.append(Scripted(status=400, body=NO_IMAGES))  # the model was swapped for a blind one
    tg.add_message(10, "capital of France?")
    await arrive(s, tg)
    assert tg.current_texts(10)[-1] == "echo: capital of France?"
    assert images_in(llm.requests[-1]) == []  # asked again at once, the photo as a marker


async def test_with_vision_turned_off_remembered_photos_are_markers(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock) as s:
        tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes())
        await arrive(s, tg)
    async with services(tmp_path, tg, llm, clock, VISION="off") as s:
        tg.add_message(10, "what did I send?")
        await arrive(s, tg)
    assert images_in(llm.requests[-1]) == []
    assert "photo-" not in str(llm.requests[-1])  # no file id goes to the provider
    assert llm.requests[-1]["messages"][0]["content"].startswith("[1 image(s)")


async def test_a_group_album_captioned_for_the_bot_is_asked_about_whole(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    group = {"chat_type": "supergroup", "user_id": 20}
    for n in range(3):
        caption = "@test_bot compare these" if n == 0 else None
        tg.add_photo(GROUP, (FIXTURES / "tiny.png").read_bytes(), album="g1", caption=caption, **group)
    await s.intake.persist(tg.pending[-3:])
    await run_due(s)
    s.clock.advance(2.0)
    await run_due(s)
    [request] = llm.requests
    assert len(images_in(request)) == 3


async def test_an_album_counts_once_against_the_rate_limit(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, RATE_LIMIT_USER_PER_MIN="2") as s:
        await album(s, tg, 4)
    [request] = llm.requests
    assert len(images_in(request)) == 4


async def test_an_album_part_run_again_after_a_crash_asks_nothing(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes(), album="a2", caption="two")
    tg.add_photo(10, (FIXTURES / "tiny.png").read_bytes(), album="a2")
    await s.intake.persist(tg.pending[-2:])
    await run_due(s)  # the acknowledgement
    s.clock.advance(2.0)
    collector = await claim(s, MEDIA_KIND)
    await s.kinds[MEDIA_KIND].run(collector)
    assert await s.queue.complete(collector)
    part = await claim(s, MEDIA_KIND)
    await s.kinds[MEDIA_KIND].run(part)  # covered: it keeps that, drops the key, then dies
    await s.kinds[MEDIA_KIND].run(await after_a_crash(s, part))
    assert len(llm.requests) == 1 and tg.current_texts(10) == ["echo: two"]


async def test_a_picture_format_this_install_cannot_read_is_refused_at_once(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_document(10, b"\x00\x00\x00\x18ftypheic", file_name="IMG_0001.HEIC", mime_type="image/heic")
    await arrive(s, tg)
    assert tg.current_texts(10) == [texts.DOCUMENT_UNSUPPORTED.format(supported=gettext(SUPPORTED))]
    assert methods(tg, "getFile") == []


async def test_no_document_larger_than_telegram_serves_is_tried(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, DOCUMENT_MAX_MB="50") as s:
        tg.add_document(10, b"x", file_name="big.txt", mime_type="text/plain", file_size=25 * 1024 * 1024)
        await arrive(s, tg)
    assert tg.current_texts(10) == [texts.DOCUMENT_TOO_BIG.format(size=25.0, limit=20)]
