"""What OpenAI-compatible servers do differently, through the real SDK against the fake server:
errors that arrive inside a 200 stream (OpenRouter), ": comment" keep-alive lines, and servers
that never report usage."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from botcore.clock import ManualClock
from botcore.errors import Cause, JobError, PermanentError, TransientError, UpstreamUnavailable
from botcore.llm import ChatModel
from botcore.llm_params import Params
from botcore.models import Turn
from botcore.sqlite_storage import SqliteStorage

from .fakes import FakeOpenAI, FakeTelegram, Scripted
from .services import last_update, receive, run_due, services


@pytest.fixture
async def model(llm: FakeOpenAI) -> AsyncIterator[ChatModel]:
    chat = ChatModel(api_key="", base_url=llm.base_url, model="m", timeout_s=5, max_reply_tokens=100)
    yield chat
    await chat.aclose()


@pytest.mark.parametrize(
    ("error", "kind", "cause"),
    [
        ({"code": 429, "message": "Rate limit exceeded"}, UpstreamUnavailable, Cause.RATE_LIMITED),
        ({"code": "rate_limit_exceeded", "message": "slow down"}, UpstreamUnavailable, Cause.RATE_LIMITED),
        ({"code": 502, "message": "Provider returned error"}, TransientError, Cause.UNAVAILABLE),
        ({"code": "overloaded", "message": "Overloaded"}, TransientError, Cause.UNAVAILABLE),
        ({"code": "server_error", "message": "Provider disconnected"}, TransientError, Cause.UNAVAILABLE),
        ({"code": 401, "message": "No auth credentials found"}, PermanentError, Cause.AUTH),
        ({"code": "context_length_exceeded", "message": "too long"}, PermanentError, Cause.CONTEXT_TOO_LONG),
        ({"message": "something else"}, TransientError, Cause.UNAVAILABLE),
    ],
)
async def test_an_error_inside_a_200_stream_is_judged_by_its_code_never_taken_as_an_answer(
    llm: FakeOpenAI, model: ChatModel, error: dict[str, object], kind: type[JobError], cause: Cause
) -> None:
    llm.script.append(
        Scripted(text="a partial answer that stops", piece_chars=5, stream_error=error, error_after=2)
    )
    with pytest.raises(kind) as caught:
        await model.stream("", [Turn("user", "hi")])
    assert caught.value.cause is cause
    assert "partial" not in str(caught.value) and "Provider" not in str(caught.value)  # our words only
    if isinstance(caught.value, TransientError | PermanentError):
        assert caught.value.usage is not None and caught.value.usage.estimated  # "a par…" was billed


async def test_keep_alive_comments_between_pieces_are_ignored(llm: FakeOpenAI, model: ChatModel) -> None:
    llm.script.append(Scripted(text="one two three", piece_chars=4, keep_alive=True))
    assert (await model.stream("", [Turn("user", "hi")])).text == "one two three"


async def test_a_server_that_never_reports_usage_is_billed_an_estimate_marked_as_such(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    for stream in (True, False):
        llm.script.append(Scripted(text="x" * 40, send_usage=False))
        completion = await (model.stream if stream else model.complete)("", [Turn("user", "y" * 80)])
        assert completion.usage.estimated
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
            20,
            10,
        )  # 4 chars a token
    llm.script.append(Scripted(text="x" * 40))
    assert not (await model.stream("", [Turn("user", "hi")])).usage.estimated  # the server said


async def test_the_estimate_is_recorded_and_marked_in_the_usage_table(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock) as s:
        llm.script.append(Scripted(text="x" * 40, send_usage=False))
        tg.add_message(10, "hello")
        await receive(s, last_update(tg))
        [answered] = await run_due(s)
        assert answered.error is None
        summed = await s.storage.usage.summary(since=0)
        assert summed.completion_tokens == 10  # not zero
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.db")) as db:  # the mark: a column
        assert db.execute("SELECT estimated FROM usage").fetchall() == [(1,)]


# OpenAI's words for each refusal (o-series and gpt-5; Azure for stream_options).
MAX_TOKENS = {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
    "Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error",
    "param": "max_tokens",
    "code": "unsupported_parameter",
}
MAX_COMPLETION_TOKENS = {"message": "Unrecognized request argument supplied: max_completion_tokens"}
STREAM_OPTIONS = {"message": "Unrecognized request argument supplied: stream_options"}


async def test_a_refused_length_parameter_is_swapped_once_and_remembered_across_restarts(
    tmp_path: Path, llm: FakeOpenAI
) -> None:
    llm.refuses["max_tokens"] = MAX_TOKENS  # gpt-5 behind a proxy that is not api.openai.com
    storage = await SqliteStorage.open(tmp_path / "bot.db")
    for _restart in range(2):
        model = ChatModel(
            api_key="k",
            base_url=llm.base_url,
            model="gpt-5",
            timeout_s=5,
            max_reply_tokens=100,
            kv=storage.kv,
        )
        assert (await model.complete("", [Turn("user", "hi")])).text == "echo: hi"
        assert (await model.stream("", [Turn("user", "hi")])).text == "echo: hi"
        await model.aclose()
    # One refusal, ever: the retry, the stream after it, and both calls after the restart.
    assert [("max_tokens" in r, r.get("max_completion_tokens")) for r in llm.requests] == [
        (True, None),
        *[(False, 100)] * 4,
    ]
    await storage.close()


def refusal(error: dict[str, str]) -> openai.BadRequestError:
    response = httpx.Response(400, request=httpx.Request("POST", "http://llm/v1/chat/completions"))
    return openai.BadRequestError(error["message"], response=response, body={"error": error})


def test_each_refusal_names_its_alternative_and_none_is_tried_twice() -> None:
    tokens, completion = Params("max_tokens"), Params("max_completion_tokens")
    assert tokens.after_refusal(refusal(MAX_TOKENS)) == completion
    assert completion.after_refusal(refusal(MAX_COMPLETION_TOKENS)) == tokens
    assert completion.after_refusal(refusal(MAX_TOKENS)) is None  # already swapped: no loop
    dropped = tokens.after_refusal(refusal(STREAM_OPTIONS))
    assert dropped == Params("max_tokens", stream_options=False)
    assert dropped.after_refusal(refusal(STREAM_OPTIONS)) is None
    temperature = {"message": "Unsupported value: 'temperature' does not support 0.7 with this model.",
                   "param": "temperature", "code": "unsupported_value"}  # fmt: skip
    assert tokens.after_refusal(refusal(temperature)) == Params("max_tokens", temperature=False)
    assert tokens.after_refusal(refusal({"message": "Invalid 'messages': empty"})) is None
    body = dropped.body({"model": "m", "messages": []}, 50, stream=True)
    assert body == {"model": "m", "messages": [], "max_tokens": 50, "stream": True}


async def test_a_refused_stream_option_is_dropped_and_a_refusal_naming_nothing_known_is_not_retried(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    llm.refuses["stream_options"] = STREAM_OPTIONS
    assert (await model.stream("", [Turn("user", "hi")])).text == "echo: hi"
    assert ["stream_options" in r for r in llm.requests] == [True, False]
    llm.script.append(Scripted(status=400, body={"error": {"message": "Unsupported value: 'top_k'"}}))
    with pytest.raises(PermanentError):
        await model.complete("", [Turn("user", "hi")])
    assert len(llm.requests) == 3  # no retry: we send no top_k to leave out


async def test_a_refused_value_is_not_a_refused_parameter_and_two_refusals_are_both_fixed(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    too_large = {
        "message": "max_tokens is too large: 200000. This model supports at most 16384 completion tokens.",
        "param": "max_tokens",
        "code": None,
    }
    llm.script.append(Scripted(status=400, body={"error": too_large}))
    with pytest.raises(PermanentError):
        await model.complete("", [Turn("user", "hi")])
    assert len(llm.requests) == 1  # no retry, nothing learned
    llm.refuses.update(max_tokens=MAX_TOKENS, stream_options=STREAM_OPTIONS)  # Azure with gpt-5
    assert (await model.stream("", [Turn("user", "hi")])).text == "echo: hi"
    assert (await model.stream("", [Turn("user", "hi")])).text == "echo: hi"
    last = llm.requests[-1]
    assert "max_tokens" not in last and "stream_options" not in last and last["stream"] is True
    assert len(llm.requests) == 1 + 3 + 1  # both fixed within one call, then straight away
