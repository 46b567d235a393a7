"""A reasoning model's thinking told apart from its answer: in content, whole and in pieces cut
anywhere, and through the real SDK in each shape servers send it, plain and streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from botcore import texts
from botcore.clock import ManualClock
from botcore.errors import Cause, PermanentError
from botcore.llm import ChatModel
from botcore.messenger import Messenger
from botcore.models import JobState, Turn
from botcore.reasoning import Split, split_thinking
from botcore.sqlite_storage import SqliteStorage
from botcore.streaming import StreamingReply
from botcore.telegram_api import make_bot

from .conftest import TOKEN, eventually
from .fakes import FakeOpenAI, FakeTelegram, Scripted
from .services import last_update, methods, receive, run_due, services

THOUGHT = "The user greets me. I should greet back < politely >."
ANSWER = "Hello! How can I help you today?"


def test_whole_replies_in_each_shape() -> None:
    for content in (f"<think>{THOUGHT}</think>\n\n{ANSWER}", f"\n<think>\n{THOUGHT}\n</think>{ANSWER}"):
        assert split_thinking(content, final=True) == Split(THOUGHT, ANSWER, False)
    # The opening tag left out (the chat template put it in the prompt):
    assert split_thinking(f"{THOUGHT}\n</think>\n\n{ANSWER}", final=True) == Split(THOUGHT, ANSWER, False)
    assert split_thinking(ANSWER, final=True) == Split("", ANSWER, False)  # no thinking at all
    # Out of tokens while thinking: no answer at all, and the thinking is not it.
    assert split_thinking(f"<think>{THOUGHT}", final=True) == Split(THOUGHT, "", False)
    assert split_thinking("<think></think>", final=True) == Split("", "", False)


def test_a_stream_shows_no_tag_and_no_thinking_while_it_comes() -> None:
    assert split_thinking("<thi", final=False) == Split("", "", False)
    assert split_thinking("<think>The user", final=False) == Split("The user", "", True)
    assert split_thinking(f"<think>{THOUGHT}</thi", final=False) == Split(THOUGHT, "", True)
    assert split_thinking(f"<think>{THOUGHT}</think>Hel", final=False) == Split(THOUGHT, "Hel", False)
    assert split_thinking("Hello <", final=False) == Split("", "Hello ", False)  # maybe a tag
    # A model known to leave out the opening tag: its content is thinking until </think>.
    assert split_thinking("The user greets", final=False, opens_in_thought=True) == Split(
        "The user greets", "", True
    )
    assert split_thinking("Hi there", final=True, opens_in_thought=True) == Split("", "Hi there", False)


@given(
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=30),
    shape=st.sampled_from(["tags", "no-open", "plain"]),
)
def test_cut_anywhere_the_answer_so_far_never_shows_thinking_and_ends_as_a_whole_reply(
    cuts: list[int], shape: str
) -> None:
    content = {
        "tags": f"<think>{THOUGHT}</think>\n{ANSWER}",
        "no-open": f"{THOUGHT}</think>\n{ANSWER}",
        "plain": ANSWER,
    }[shape]
    for cut in sorted({min(c, len(content)) for c in cuts}):
        shown = split_thinking(content[:cut], final=False, opens_in_thought=shape == "no-open").answer
        assert "<" not in shown.replace("< politely >", "") or shape == "plain"
        assert "think" not in shown and "greets" not in shown
        assert ANSWER.startswith(shown.strip()) or not shown.strip()
    whole = split_thinking(content, final=True)
    assert whole.answer == ANSWER
    assert whole.reasoning == ("" if shape == "plain" else THOUGHT)


# -- through the real SDK, against the fake server in each of the shapes servers use ----------

SHAPES = ["reasoning_content", "reasoning", "think", "think-no-open"]


@pytest.fixture
async def model(llm: FakeOpenAI) -> AsyncIterator[ChatModel]:
    chat = ChatModel(api_key="", base_url=llm.base_url, model="qwen3", timeout_s=5, max_reply_tokens=100)
    yield chat
    await chat.aclose()


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_plain_reply_keeps_the_thinking_out_of_the_answer_and_bills_it(
    llm: FakeOpenAI, model: ChatModel, shape: str
) -> None:
    llm.script.append(Scripted(text=ANSWER, reasoning=THOUGHT, reasoning_shape=shape))
    completion = await model.complete("", [Turn("user", "hi")])
    assert (completion.text, completion.reasoning) == (ANSWER, THOUGHT)
    assert completion.usage.completion_tokens == len(ANSWER.split()) + len(THOUGHT.split())


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_stream_cut_in_small_pieces_shows_thinking_then_only_the_answer(
    llm: FakeOpenAI, model: ChatModel, shape: str
) -> None:
    seen: list[tuple[str, bool]] = []

    async def on_text(text: str, thinking: bool) -> None:
        seen.append((text, thinking))

    for attempt in range(2):
        seen.clear()
        llm.script.append(Scripted(text=ANSWER, reasoning=THOUGHT, reasoning_shape=shape, piece_chars=3))
        completion = await model.stream("", [Turn("user", "hi")], on_text)
        assert (completion.text, completion.reasoning) == (ANSWER, THOUGHT)
        assert completion.usage.completion_tokens == len(ANSWER.split()) + len(THOUGHT.split())
        assert seen[-1] == (ANSWER, False)
        if shape == "think-no-open" and attempt == 0:
            # Until "</think>" comes, nothing tells this model's thinking from an answer: the
            # first stream shows it for a moment (the delivered answer replaces it). From then
            # on the model is known, and its thinking never shows.
            continue
        first_text = next(i for i, (text, _) in enumerate(seen) if text)
        assert any(thinking for _, thinking in seen[:first_text])  # the user sees it working
        for text, _ in seen:  # and never a tag, nor the thinking, as the answer
            assert "think" not in text and "greets" not in text and ANSWER.startswith(text)


async def test_an_answer_empty_after_thinking_says_so_and_is_billed(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    for stream in (False, True):
        llm.script.append(
            Scripted(text="", reasoning=THOUGHT, reasoning_shape="think", finish_reason="length")
        )
        with pytest.raises(PermanentError) as caught:
            await (model.stream if stream else model.complete)("", [Turn("user", "hi")])
        assert caught.value.cause is Cause.THOUGHT_ONLY
        assert caught.value.usage is not None and caught.value.usage.completion_tokens == len(THOUGHT.split())
    assert "MAX_REPLY_TOKENS" in texts.failed(Cause.THOUGHT_ONLY)


# -- through the chat service: what the user sees, what is remembered -------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_the_chat_answers_and_remembers_only_the_answer_and_shows_thinking_when_asked(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock, shape: str
) -> None:
    async with services(tmp_path, tg, llm, clock, SHOW_REASONING="true") as s:
        llm.script.append(Scripted(text=ANSWER, reasoning=THOUGHT, reasoning_shape=shape))
        tg.add_message(10, "hi")
        await receive(s, last_update(tg))
        [answered] = await run_due(s)
        assert answered.error is None
        [sent] = methods(tg, "sendMessage", 10)
        assert sent["text"] == f"{THOUGHT}\n\n{ANSWER}"  # the thinking above, collapsed
        assert sent["entities"][0] == {"type": "expandable_blockquote", "offset": 0, "length": len(THOUGHT)}
        history = await s.storage.conversations.history(10, limit=10, since=0)
        assert history == [Turn("user", "hi"), Turn("assistant", ANSWER)]  # never the thinking
        usage = await s.storage.usage.summary(since=0)
        assert usage.completion_tokens == len(ANSWER.split()) + len(THOUGHT.split())


async def test_a_streamed_reply_says_thinking_until_the_answer_comes(
    tg: FakeTelegram, llm: FakeOpenAI, model: ChatModel
) -> None:
    async def remember(ids: list[int]) -> None:
        pass

    async with make_bot(TOKEN, tg.base_url) as bot:
        live = StreamingReply(
            Messenger(bot), 10, in_group=False, reply_to=None, thread_id=None, interval_s=0,
            on_new_message=remember, clock=ManualClock(),
        )  # fmt: skip
        llm.script.append(
            Scripted(
                text=ANSWER, reasoning=THOUGHT, reasoning_shape="think", piece_chars=4, piece_delay_s=0.02
            )
        )
        await model.stream("", [Turn("user", "hi")], live.update)
        await eventually(lambda: tg.current_texts(10) == [ANSWER], what="the answer shown")
        await live.close()
    assert tg.sent[0]["text"] == texts.THINKING  # the stream's first message, before any answer
    assert not any("greets" in str(p.get("text", "")) for _, p in tg.calls)  # never the thinking


async def test_a_chat_whose_model_only_thought_is_told_what_to_do(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock) as s:
        llm.script.append(
            Scripted(text="", reasoning=THOUGHT, reasoning_shape="reasoning", finish_reason="length")
        )
        tg.add_message(10, "hi")
        await receive(s, last_update(tg))
        failed, _notice = await run_due(s)
        assert failed.after.state is JobState.DEAD  # retrying would think the same way
        assert tg.texts_to(10) == [texts.failed(Cause.THOUGHT_ONLY)]
        assert (await s.storage.usage.summary(since=0)).completion_tokens == len(THOUGHT.split())


async def test_a_model_that_leaves_out_the_tag_and_runs_out_of_tokens_thinking_gives_no_answer(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    llm.script.append(Scripted(text=ANSWER, reasoning=THOUGHT, reasoning_shape="think-no-open"))
    await model.stream("", [Turn("user", "hi")])  # now it is known to leave "<think>" out
    for stream in (True, False):
        llm.script.append(Scripted(text=THOUGHT, finish_reason="length"))  # thinking, never closed
        with pytest.raises(PermanentError) as caught:
            await (model.stream if stream else model.complete)("", [Turn("user", "hi")])
        assert caught.value.cause is Cause.THOUGHT_ONLY  # never the thinking as the answer


async def test_a_model_known_to_leave_out_the_tag_is_known_after_a_restart(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    storage = await SqliteStorage.open(tmp_path / "bot.db")
    seen: list[tuple[str, bool]] = []

    async def on_text(text: str, thinking: bool) -> None:
        seen.append((text, thinking))

    for _restart in range(2):
        seen.clear()
        model = ChatModel(
            api_key="", base_url=llm.base_url, model="qwen3", timeout_s=5, max_reply_tokens=100, kv=storage.kv
        )
        llm.script.append(
            Scripted(text=ANSWER, reasoning=THOUGHT, reasoning_shape="think-no-open", piece_chars=3)
        )
        assert (await model.stream("", [Turn("user", "hi")], on_text)).text == ANSWER
        await model.aclose()
    assert not any("greets" in text for text, _ in seen)  # the first stream after the restart too
    await storage.close()
