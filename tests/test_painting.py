"""The streamed reply's painter on a manual clock (edits, drafts, keep-alive, fallback, marks),
and the two lanes of Telegram's pacing (an answer before a cosmetic call; a cosmetic call called
off before it leaves costs nothing), with the real python-telegram-bot against the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from botcore import texts
from botcore.clock import ManualClock
from botcore.messenger import Messenger
from botcore.pacing import Lane
from botcore.streaming import KEEP_ALIVE_S, Drafts, StreamingReply
from botcore.telegram_api import make_bot

from .conftest import TOKEN, eventually
from .fakes import Failure, FakeTelegram
from .services import methods, spin


@pytest.fixture
async def messenger(tg: FakeTelegram) -> AsyncIterator[Messenger]:
    async with make_bot(TOKEN, tg.base_url) as bot:
        yield Messenger(bot)


def streamed(
    messenger: Messenger, clock: ManualClock, chat_id: int, *, drafts: Drafts | None = None
) -> StreamingReply:
    async def remember(ids: list[int]) -> None:
        pass

    return StreamingReply(
        messenger,
        chat_id,
        in_group=chat_id < -1000,  # -5: a chat that is not a group but refuses drafts
        reply_to=None,
        thread_id=None,
        interval_s=1.0,
        on_new_message=remember,
        clock=clock,
        drafts=drafts,
        draft_id=65,
    )


def shown(tg: FakeTelegram, chat_id: int) -> list[tuple[str, bool]]:
    return [(m["text"], m["edited"]) for m in tg.sent if m["chat_id"] == chat_id]


def drafted(tg: FakeTelegram) -> list[tuple[int, str]]:
    return [(d["draft_id"], d["text"]) for d in tg.drafts]


async def settle() -> None:
    """Long enough for a painter woken now to have made its call to the local fake server."""
    await spin()
    await asyncio.sleep(0.1)


async def test_streamed_edits_keep_the_interval_of_the_clock_and_never_repeat(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    live = streamed(messenger, clock, 10)
    await live.update("a")  # the first piece at once
    await eventually(lambda: shown(tg, 10) == [("a", False)], what="the first piece")
    await live.update("ab")  # the same instant: held back
    clock.advance(0.5)
    await live.update("abc")  # half the interval: held back
    await settle()
    assert shown(tg, 10) == [("a", False)]
    await live.update("abcd")
    clock.advance(0.5)  # the interval has passed: one edit with all of it
    await eventually(lambda: shown(tg, 10) == [("a", False), ("abcd", True)], what="the edit")
    # wait_turn waits for the clock: one interval after that last show.
    turn = asyncio.create_task(live.wait_turn())
    await spin()
    assert not turn.done()
    clock.advance(0.9)
    await spin()
    assert not turn.done()
    clock.advance(0.1)
    await asyncio.wait_for(turn, 5)
    await live.update("abcd")  # nothing new: no edit, though one would be allowed
    await settle()
    assert shown(tg, 10) == [("a", False), ("abcd", True)]
    assert live.ids == [tg.sent[0]["message_id"]]
    await live.close()


async def test_in_a_group_edits_come_no_more_than_every_three_seconds(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    live = streamed(messenger, clock, -1001, drafts=Drafts())  # never drafts in a group
    await live.update("one")
    await eventually(lambda: shown(tg, -1001) == [("one", False)], what="the first piece")
    for n in range(2):
        clock.advance(1.0)
        await live.update(f"one {n}")
        await settle()
    assert shown(tg, -1001) == [("one", False)]
    await live.update("one two three")
    clock.advance(1.0)
    await eventually(lambda: shown(tg, -1001) == [("one", False), ("one two three", True)], what="edit")
    await live.close()
    assert not tg.drafts


async def test_flood_control_widens_the_interval_instead_of_failing(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    live = streamed(messenger, clock, 10)
    await live.update("a")
    await eventually(lambda: shown(tg, 10) == [("a", False)], what="the first piece")
    tg.fail["editMessageText"] = [Failure(429, "Too Many Requests: retry after 5", retry_after=5)]
    await live.update("ab")
    clock.advance(1.0)  # refused: Telegram asks for 5 s
    await eventually(lambda: len(methods(tg, "editMessageText", 10)) == 1, what="the refused edit")
    await live.update("abc")
    clock.advance(4.9)
    await settle()
    assert len(methods(tg, "editMessageText", 10)) == 1  # only the refused one
    await live.update("abcd")
    clock.advance(0.1)
    await eventually(lambda: shown(tg, 10) == [("a", False), ("abcd", True)], what="the next edit")
    await live.close()


async def test_a_draft_is_paced_and_kept_alive_while_nothing_changes(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    live = streamed(messenger, clock, 10, drafts=Drafts())
    await live.update("", thinking=True)  # a reasoning model thinks: Telegram's own placeholder
    await eventually(lambda: drafted(tg) == [(65, "")], what="the empty draft")
    await live.update("Hello")
    await settle()
    assert drafted(tg) == [(65, "")]  # within the interval: held back
    clock.advance(1.0)
    await eventually(lambda: drafted(tg) == [(65, ""), (65, "Hello")], what="the text")
    clock.advance(KEEP_ALIVE_S - 1)
    await settle()
    assert len(tg.drafts) == 2  # unchanged, and not yet about to fade
    clock.advance(1.0)
    await eventually(lambda: drafted(tg)[-1:] == [(65, "Hello")] and len(tg.drafts) == 3, what="keep-alive")
    await live.close()
    assert not tg.sent  # a draft is never a message


async def test_a_server_without_drafts_is_asked_once_then_edits_are_used(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    tg.no_drafts = True  # an older self-hosted Bot API server: 404
    drafts = Drafts()
    first = streamed(messenger, clock, 10, drafts=drafts)
    await first.update("one")
    await eventually(lambda: shown(tg, 10) == [("one", False)], what="the fallback message")
    assert not drafts.available and not first.drafting
    await first.close()
    second = streamed(messenger, clock, 11, drafts=drafts)
    await second.update("two")
    await eventually(lambda: shown(tg, 11) == [("two", False)], what="the next answer's message")
    await second.close()
    assert methods(tg, "sendMessageDraft", 10) and not methods(tg, "sendMessageDraft", 11)


async def test_a_chat_that_refuses_drafts_gets_edits_and_others_keep_drafts(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    drafts = Drafts()
    live = streamed(messenger, clock, -5, drafts=drafts)  # the fake refuses drafts to chat ids < 0
    await live.update("one")
    await eventually(lambda: shown(tg, -5) == [("one", False)], what="an edited message instead")
    await live.close()
    assert drafts.available  # a refusal by one chat is not the server lacking the method


async def test_a_final_mark_leaves_the_drafted_text_as_a_message_a_passing_one_nothing(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    passing = streamed(messenger, clock, 10, drafts=Drafts())
    await passing.update("half an")
    await eventually(lambda: drafted(tg) == [(65, "half an")], what="the draft")
    await passing.mark(texts.STREAM_INTERRUPTED, final=False)  # it will be retried: the draft fades
    assert not tg.sent
    stopped = streamed(messenger, clock, 11, drafts=Drafts())
    await stopped.update("half an")
    await eventually(lambda: len(tg.drafts) == 2, what="the second draft")
    await stopped.mark(texts.STREAM_STOPPED)
    assert shown(tg, 11) == [(f"half an\n\n{texts.STREAM_STOPPED}", False)]


async def test_close_calls_off_a_preview_that_has_not_left(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    tg.delay["sendMessageDraft"] = [0.3]
    live = streamed(messenger, clock, 10, drafts=Drafts())
    await live.update("first")
    await eventually(lambda: methods(tg, "sendMessageDraft", 10), what="the draft under way")
    await live.update("first and more")
    clock.advance(1.0)
    await live.close()  # the draft under way lands (it was waited for); the next never goes
    await asyncio.sleep(0.2)
    assert drafted(tg) == [(65, "first")]


# -- Pacing: two lanes --------------------------------------------------------------------------


async def test_an_answer_waiting_for_its_turn_goes_before_a_cosmetic_call(tg: FakeTelegram) -> None:
    async with make_bot(TOKEN, tg.base_url, rate_per_s=5) as bot:
        messenger = Messenger(bot)
        answers = [asyncio.create_task(messenger.send_text(10 + n, "answer")) for n in range(10)]
        await spin()  # five went at once; five wait for their turn
        lane = Lane()
        receipt = asyncio.create_task(messenger.react(10, 1, "👀", lane=lane))
        await asyncio.wait_for(asyncio.gather(*answers, receipt), 10)
    order = [method for method, _ in tg.calls if method in ("sendMessage", "setMessageReaction")]
    assert order == ["sendMessage"] * 10 + ["setMessageReaction"]
    assert lane.started


async def test_a_cosmetic_call_called_off_before_its_turn_never_reaches_telegram(tg: FakeTelegram) -> None:
    async with make_bot(TOKEN, tg.base_url, rate_per_s=5) as bot:
        messenger = Messenger(bot)
        answers = [asyncio.create_task(messenger.send_text(10 + n, "answer")) for n in range(8)]
        await spin()
        lane = Lane()
        receipt = asyncio.create_task(messenger.react(10, 1, "👀", lane=lane))
        await spin()
        receipt.cancel()
        await asyncio.gather(receipt, return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*answers), 10)
        await asyncio.sleep(0.3)  # a turn would have come by now
        assert not lane.started
        # With the line empty, a cosmetic call goes at once.
        await asyncio.wait_for(messenger.react(10, 1, None, lane=Lane()), 5)
    assert [m for m, _ in tg.calls].count("setMessageReaction") == 1


async def test_a_long_draft_closed_while_its_first_part_is_sent_sends_no_more(
    tg: FakeTelegram, messenger: Messenger, clock: ManualClock
) -> None:
    tg.delay["sendMessage"] = [0.3]  # the first full part is on its way when the answer is ready
    live = streamed(messenger, clock, 10, drafts=Drafts())
    await live.update("word " * 1000)  # past one message: the first part becomes a message
    await eventually(lambda: methods(tg, "sendMessage", 10), what="the first part under way")
    await live.close()  # waits for that part (its id is needed), then nothing more
    await asyncio.sleep(0.2)
    assert len(live.ids) == 1 and not tg.drafts


async def test_a_cosmetic_call_to_a_group_leaves_its_turn_to_the_groups_answers(tg: FakeTelegram) -> None:
    async with make_bot(TOKEN, tg.base_url, rate_per_s=1000, group_rate_per_min=60) as bot:
        messenger = Messenger(bot)
        await asyncio.gather(*(messenger.send_text(-1001, f"answer {n}") for n in range(60)))  # none left
        receipt = asyncio.create_task(messenger.react(-1001, 1, "👀", lane=Lane()))  # it came first…
        await spin()
        answer = asyncio.create_task(messenger.send_text(-1001, "the last answer"))
        await asyncio.wait_for(asyncio.gather(receipt, answer), 10)
    order = [m for m, _ in tg.calls if m in ("sendMessage", "setMessageReaction")]
    assert order[60:] == ["sendMessage", "setMessageReaction"]  # …but the next turn was the answer's


async def test_a_rate_under_one_a_second_still_sends(tg: FakeTelegram) -> None:
    async with make_bot(TOKEN, tg.base_url, rate_per_s=0.5) as bot:
        await asyncio.wait_for(Messenger(bot).send_text(10, "slowly"), 5)
    assert tg.texts_to(10) == ["slowly"]
