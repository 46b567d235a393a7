"""Streaming replies (drafts in private chats; edits in groups and on a Bot API server without
drafts), /retry and /cancel, with the fake OpenAI server sending SSE chunks."""

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from botcore import texts
from botcore.formatting import render

from .botproc import BotProcess
from .conftest import eventually
from .fakes import FakeOpenAI, FakeTelegram, Scripted


@asynccontextmanager
async def streaming_bot(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, **env: str
) -> AsyncIterator[BotProcess]:
    process = BotProcess(tmp_path / "data", tg, llm, **{"STREAM": "true", **env}).start()
    try:
        yield process
    finally:
        await process.stop_clean()


def edits_of(tg: FakeTelegram, chat_id: int) -> list[tuple[float, int, str]]:
    """(time, message id, text) of every edit sent to the chat."""
    return [
        (t, int(p["message_id"]), p["text"])
        for (method, p), t in zip(tg.calls, tg.call_times, strict=True)
        if method == "editMessageText" and int(p["chat_id"]) == chat_id
    ]


def drafts_to(tg: FakeTelegram, chat_id: int) -> list[tuple[int, str]]:
    return [(d["draft_id"], d["text"]) for d in tg.drafts if d["chat_id"] == chat_id]


async def test_edits_are_paced_never_repeat_and_end_formatted(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.no_drafts = True  # an older self-hosted Bot API server: edits instead
    answer = "**Bold** start. " + " ".join(f"word{i}" for i in range(120))
    llm.script.append(Scripted(text=answer, piece_chars=8, piece_delay_s=0.05))  # ~4 s of pieces
    async with streaming_bot(tmp_path, tg, llm):
        tg.add_message(10, "talk")
        await eventually(lambda: tg.current_texts(10) == [render(answer)[0].text], timeout=30, what="the end")
    edits = edits_of(tg, 10)
    assert len(edits) >= 3  # it was shown growing
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(edits[:-1])]  # the final edit is not paced
    assert gaps and min(gaps) >= 0.9  # STREAM_EDIT_INTERVAL_S = 1 s (less a little network jitter)
    shown = [m["text"] for m in tg.sent if m["chat_id"] == 10]
    assert all(a != b for a, b in itertools.pairwise(shown))  # never an edit that changes nothing
    assert shown[0].startswith("**Bold**")  # plain while streaming…
    final = tg.sent[-1]
    assert final["text"].startswith("Bold start.") and final["entities"]  # …formatted at the end
    assert "⚠️" not in final["text"]
    assert [method for method, _ in tg.calls].count("sendMessageDraft") == 1  # asked once, remembered


async def test_a_private_chat_streams_drafts_then_sends_the_answer_once_formatted(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    answer = "**Bold** start. " + " ".join(f"word{i}" for i in range(120))
    llm.script.append(Scripted(text=answer, piece_chars=8, piece_delay_s=0.05))  # ~4 s of pieces
    async with streaming_bot(tmp_path, tg, llm):
        tg.add_message(10, "talk")
        await eventually(lambda: tg.current_texts(10) == [render(answer)[0].text], timeout=30, what="the end")
        await asyncio.sleep(0.5)  # nothing comes after the answer
    drafts = drafts_to(tg, 10)
    assert len(drafts) >= 3  # it was shown growing…
    assert len({draft_id for draft_id, _ in drafts}) == 1  # …as one draft, animated
    assert all(answer.startswith(text) for _, text in drafts)  # plain, as the model wrote it
    times = [
        t for (method, _), t in zip(tg.calls, tg.call_times, strict=True) if method == "sendMessageDraft"
    ]
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.9  # STREAM_EDIT_INTERVAL_S = 1 s
    assert not edits_of(tg, 10)  # no edits at all…
    assert len(tg.sent) == 1 and tg.sent[0]["entities"]  # …and one message: the answer, formatted


async def test_a_long_answer_drafts_each_message_and_ends_as_two_complete_messages(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    answer = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 8 for i in range(27))
    llm.script.append(Scripted(text=answer, piece_chars=400, piece_delay_s=0.3))  # ~5 s
    async with streaming_bot(tmp_path, tg, llm):
        tg.add_message(10, "a lot please")
        expected = [c.text for c in render(answer)]
        assert len(expected) == 2
        await eventually(lambda: tg.current_texts(10) == expected, timeout=30, what="two complete messages")
    drafts = drafts_to(tg, 10)
    assert all(0 < len(text) <= 4096 for _, text in drafts)
    assert len({draft_id for draft_id, _ in drafts}) == 2  # the second message had a draft of its own
    assert len({m["message_id"] for m in tg.sent}) == 2  # the first shown as a message once full


async def test_a_group_streams_by_editing(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    answer = " ".join(f"word{i}" for i in range(60))
    llm.script.append(Scripted(text=answer, piece_chars=8, piece_delay_s=0.1))  # ~5 s of pieces
    async with streaming_bot(tmp_path, tg, llm, ALLOWED_CHAT_IDS="-100"):
        tg.add_message(-100, "@test_bot talk", chat_type="supergroup", user_id=7)
        await eventually(lambda: tg.current_texts(-100) == [answer], timeout=30, what="the answer")
    assert not tg.drafts and not [m for m, _ in tg.calls if m == "sendMessageDraft"]
    assert edits_of(tg, -100)  # shown growing, by edits


async def test_a_6000_character_answer_ends_as_two_complete_messages(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.no_drafts = True
    answer = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 8 for i in range(27))
    assert 6000 <= len(answer) <= 6300
    llm.script.append(Scripted(text=answer, piece_chars=400, piece_delay_s=0.1))
    async with streaming_bot(tmp_path, tg, llm):
        tg.add_message(10, "a lot please")
        expected = [c.text for c in render(answer)]
        assert len(expected) == 2
        await eventually(lambda: tg.current_texts(10) == expected, timeout=30, what="two complete messages")
        tg.add_message(10, "and?")
        await eventually(lambda: len(llm.requests) == 2, timeout=30, what="the next question")
    assert llm.requests[1]["messages"][-2] == {"role": "assistant", "content": answer.strip()}  # all of it
    for message_id in {m["message_id"] for m in tg.sent if m["chat_id"] == 10}:
        versions = [m["text"] for m in tg.sent if m["message_id"] == message_id]
        assert all(a != b for a, b in itertools.pairwise(versions))  # not even the final render


async def test_a_stream_cut_midway_is_retried_and_memory_holds_one_clean_answer(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.no_drafts = True  # edits: the interrupted message is marked, then finished
    answer = "The quick brown fox jumps over the lazy dog. " * 6
    llm.script += [
        Scripted(text=answer, piece_chars=10, piece_delay_s=0.3, cut_after=8),
        Scripted(text=answer),
    ]
    async with streaming_bot(tmp_path, tg, llm):
        tg.add_message(10, "fox?")
        await eventually(
            lambda: any(texts.STREAM_INTERRUPTED in m["text"] for m in tg.sent), timeout=20, what="the mark"
        )
        await eventually(lambda: tg.current_texts(10) == [answer.strip()], timeout=30, what="the full answer")
        tg.add_message(10, "again?")
        await eventually(lambda: len(llm.requests) == 3, timeout=30, what="the next question")
    history = llm.requests[2]["messages"][1:]
    assert history == [
        {"role": "user", "content": "fox?"},
        {"role": "assistant", "content": answer.strip()},  # once, whole; no half answer
        {"role": "user", "content": "again?"},
    ]
    assert len({m["message_id"] for m in tg.sent if m["chat_id"] == 10 and not m["edited"]}) == 2  # +"again?"


async def test_kill_9_mid_stream_then_restart_gives_one_complete_answer(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.no_drafts = True
    answer = "Slowly, one piece at a time, the answer arrives. " * 4
    llm.script += [Scripted(text=answer, piece_chars=10, piece_delay_s=0.5), Scripted(text=answer)]
    process = BotProcess(tmp_path / "data", tg, llm, STREAM="true").start()
    tg.add_message(10, "slow one")
    await eventually(lambda: edits_of(tg, 10), timeout=20, what="the answer streaming")
    assert await process.kill() == -9
    async with streaming_bot(tmp_path, tg, llm):
        await eventually(lambda: tg.current_texts(10) == [answer.strip()], timeout=30, what="the answer")
    assert len({m["message_id"] for m in tg.sent if m["chat_id"] == 10}) == 1  # the same message, finished


async def test_kill_9_mid_draft_then_restart_gives_one_final_answer(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    answer = "Slowly, one piece at a time, the answer arrives. " * 4
    llm.script += [Scripted(text=answer, piece_chars=10, piece_delay_s=0.5), Scripted(text=answer)]
    process = BotProcess(tmp_path / "data", tg, llm, STREAM="true").start()
    tg.add_message(10, "slow one")
    await eventually(lambda: len(drafts_to(tg, 10)) >= 2, timeout=20, what="the draft growing")
    assert await process.kill() == -9
    assert not tg.sent  # a draft is not a message: nothing to recover
    async with streaming_bot(tmp_path, tg, llm):
        await eventually(lambda: tg.current_texts(10) == [answer.strip()], timeout=30, what="the answer")
        await asyncio.sleep(0.5)
    assert len(tg.sent) == 1 and not edits_of(tg, 10)  # one final answer, sent once


async def test_retry_regenerates_the_last_answer_and_replaces_it_in_memory(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    replies = iter(["first try", "second try", "noted"])
    llm.reply = lambda request: next(replies)
    async with streaming_bot(tmp_path, tg, llm):
        tg.add_message(10, "/retry")
        await eventually(lambda: tg.texts_to(10) == [texts.NOTHING_TO_RETRY], timeout=20, what="nothing yet")
        tg.add_message(10, "tell me a joke")
        await eventually(lambda: tg.current_texts(10)[-1:] == ["first try"], timeout=20, what="the answer")
        llm.script.append(Scripted(status=404))  # the first redo fails for good…
        tg.add_message(10, "/retry")
        await eventually(lambda: tg.current_texts(10)[-1:] == [texts.FAILED], timeout=20, what="the failure")
        tg.add_message(10, "/retry")  # …and loses nothing: the next one redoes the same answer
        await eventually(lambda: tg.current_texts(10)[-1:] == ["second try"], timeout=20, what="the redo")
        tg.add_message(10, "thanks")
        await eventually(lambda: tg.current_texts(10)[-1:] == ["noted"], timeout=20, what="the last answer")
    asked = [[m["content"] for m in r["messages"][1:]] for r in llm.requests[1:]]
    assert asked == [
        ["tell me a joke"],  # the failed redo: the old answer left out of what the model sees
        ["tell me a joke"],  # the redo
        ["tell me a joke", "second try", "thanks"],  # memory: the new answer in place of the old
    ]


async def test_cancel_stops_a_running_answer_which_is_not_retried(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.append(Scripted(text="a very long answer " * 40, piece_chars=10, piece_delay_s=0.5))
    async with streaming_bot(tmp_path, tg, llm) as bot:
        tg.add_message(10, "go on and on")
        await eventually(lambda: drafts_to(tg, 10), timeout=20, what="the stream")
        tg.add_message(10, "/cancel")
        await eventually(lambda: texts.STOPPED in tg.texts_to(10), timeout=20, what="the stop")
        await eventually(
            lambda: any(texts.STREAM_STOPPED in t for t in tg.current_texts(10)), what="the answer marked"
        )
        tg.add_message(10, "/cancel")
        tg.add_message(10, "hello")
        await eventually(lambda: "echo: hello" in tg.texts_to(10)[-1], timeout=20, what="the next answer")
        assert tg.texts_to(10).count(texts.NOTHING_TO_STOP) == 1
    assert len(llm.requests) == 2  # the stopped answer was not asked for again
    assert [m["content"] for m in llm.requests[1]["messages"][1:]] == ["hello"]  # and not remembered
    assert "will run again" not in bot.log()
