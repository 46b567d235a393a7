"""The LLM adapter through the real OpenAI SDK against a llm server on 127.0.0.1."""

import socket
from collections.abc import AsyncIterator

import pytest

from botcore.errors import (
    Cause,
    ContextTooLongError,
    JobError,
    PermanentError,
    TransientError,
    UpstreamUnavailable,
    http_error,
)
from botcore.llm import ChatModel
from botcore.models import Turn

from .fakes import FakeOpenAI, Scripted


@pytest.fixture
async def model(llm: FakeOpenAI) -> AsyncIterator[ChatModel]:
    chat = ChatModel(
        api_key="", base_url=llm.base_url, model="llama3.2:3b", timeout_s=2, max_reply_tokens=300
    )
    yield chat
    await chat.aclose()


async def test_completion_with_history_and_usage(llm: FakeOpenAI, model: ChatModel) -> None:
    history = [Turn("user", "my name is Ada"), Turn("assistant", "hello Ada")]
    result = await model.complete("be brief", [*history, Turn("user", "what is my name?")])
    assert result.text == "echo: what is my name?"
    [request] = llm.requests
    assert request["model"] == "llama3.2:3b"  # any model name goes through as it is
    assert request["max_tokens"] == 300
    assert request["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "hello Ada"},
        {"role": "user", "content": "what is my name?"},
    ]
    assert result.usage.kind == "chat" and result.usage.model == "llama3.2:3b"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 5)  # words, in the llm


async def test_no_system_message_when_the_prompt_is_empty(llm: FakeOpenAI, model: ChatModel) -> None:
    await model.complete("", [Turn("user", "hi")])
    assert llm.requests[0]["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("scripted", "error", "cause", "retry_after"),
    [
        (Scripted(status=500), TransientError, Cause.UNAVAILABLE, None),
        (Scripted(status=503, headers={"Retry-After": "7"}), TransientError, Cause.UNAVAILABLE, 7.0),
        (Scripted(status=408), TransientError, Cause.TIMEOUT, None),
        (
            Scripted(status=429, body={"error": {"code": "rate_limit_exceeded"}}),
            UpstreamUnavailable,
            Cause.RATE_LIMITED,
            None,
        ),
        (Scripted(status=429, headers={"Retry-After": "12"}), UpstreamUnavailable, Cause.RATE_LIMITED, 12.0),
        (
            Scripted(status=429, body={"error": {"code": "insufficient_quota"}}),
            PermanentError,
            Cause.QUOTA,
            None,
        ),
        (Scripted(status=401), PermanentError, Cause.AUTH, None),
        (Scripted(status=403), PermanentError, Cause.AUTH, None),
        (
            Scripted(status=400, body={"error": {"code": "context_length_exceeded"}}),
            ContextTooLongError,
            Cause.CONTEXT_TOO_LONG,
            None,
        ),
        (Scripted(status=404), PermanentError, Cause.OTHER, None),
        (Scripted(status=422), PermanentError, Cause.OTHER, None),
        (Scripted(text=""), PermanentError, Cause.OTHER, None),
        (Scripted(raw="<html><body>Welcome to nginx!</body></html>"), PermanentError, Cause.OTHER, None),
    ],
)
async def test_errors_become_our_taxonomy(
    llm: FakeOpenAI,
    model: ChatModel,
    scripted: Scripted,
    error: type[Exception],
    cause: Cause,
    retry_after: float | None,
) -> None:
    llm.script.append(scripted)
    with pytest.raises(error) as caught:
        await model.complete("", [Turn("user", "hi")])
    assert isinstance(caught.value, JobError) and caught.value.cause is cause
    if isinstance(caught.value, TransientError | UpstreamUnavailable):
        assert caught.value.retry_after == retry_after
    assert "scripted" not in str(caught.value)  # the server's own words are not passed on
    assert len(llm.requests) == 1  # the SDK's own retries are off: the queue owns retries


def test_auth_and_quota_errors_name_the_fix() -> None:
    assert "check OPENAI_API_KEY" in str(http_error("LLM", 401, key_variable="OPENAI_API_KEY"))
    quota = http_error("LLM", 429, key_variable="OPENAI_API_KEY", code="insufficient_quota")
    assert "insufficient_quota" in str(quota) and "billing" in str(quota)


async def test_a_slow_server_is_a_transient_timeout(llm: FakeOpenAI) -> None:
    chat = ChatModel(api_key="k", base_url=llm.base_url, model="m", timeout_s=0.2, max_reply_tokens=50)
    llm.script.append(Scripted(delay_s=1.0))
    try:
        with pytest.raises(TransientError, match="timed out") as caught:
            await chat.complete("", [Turn("user", "hi")])
        assert caught.value.cause is Cause.TIMEOUT
    finally:
        await chat.aclose()


async def test_an_unreachable_server_is_transient() -> None:
    chat = ChatModel(
        api_key="k", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2, max_reply_tokens=50
    )
    try:
        with pytest.raises(TransientError):
            await chat.complete("", [Turn("user", "hi")])
    finally:
        await chat.aclose()


async def test_streaming_gives_the_same_completion_and_the_text_as_it_grows(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    seen: list[str] = []

    async def on_text(text: str, thinking: bool) -> None:
        assert not thinking
        seen.append(text)

    llm.script.append(Scripted(text="one two three four five six", piece_chars=5))
    streamed = await model.stream("be brief", [Turn("user", "count")], on_text)
    llm.script.append(Scripted(text="one two three four five six"))
    whole = await model.complete("be brief", [Turn("user", "count")])
    assert streamed == whole  # the same text and usage either way
    assert seen[0] == "one t" and seen[-1] == "one two three four five six" and len(seen) == 6


@pytest.mark.parametrize(
    ("scripted", "cause"),
    [
        (Scripted(text="a b c d e f", piece_chars=2, cut_after=2), Cause.UNAVAILABLE),  # connection lost
        (Scripted(text="a b c d e f", piece_chars=2, cut_after=2, clean_cut=True), Cause.UNAVAILABLE),
        (Scripted(status=503), Cause.UNAVAILABLE),
    ],
)
async def test_a_broken_stream_is_transient_and_never_half_an_answer(
    llm: FakeOpenAI, model: ChatModel, scripted: Scripted, cause: Cause
) -> None:
    llm.script.append(scripted)
    with pytest.raises(TransientError) as caught:
        await model.stream("", [Turn("user", "hi")])
    assert caught.value.cause is cause


async def test_a_server_that_cannot_stream_is_asked_without_streaming(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    llm.script += [Scripted(text="plain answer", no_stream=True), Scripted(text="plain answer")]
    first = await model.stream("", [Turn("user", "hi")])
    assert first.text == "plain answer" and len(llm.requests) == 2
    await model.stream("", [Turn("user", "hi")])
    assert "stream" not in llm.requests[2]  # it does not try again


async def test_a_refused_streaming_request_falls_back_once(llm: FakeOpenAI, model: ChatModel) -> None:
    llm.script += [Scripted(status=400, body={"error": {"message": "streaming is not available"}})]
    assert (await model.stream("", [Turn("user", "hi")])).text == "echo: hi"
    assert [bool(r.get("stream")) for r in llm.requests] == [True, False]


async def test_a_model_that_cannot_stream_stops_no_other_model_from_streaming(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    """OpenAI streams some models only for verified organisations: one chat's choice of such a
    model must not turn streaming off for every chat."""
    llm.script += [Scripted(status=400, body={"error": {"message": "verify your organization to stream"}})]
    await model.stream("", [Turn("user", "hi")], model="o3")
    await model.stream("", [Turn("user", "hi")], model="o3")
    await model.stream("", [Turn("user", "hi")], model="gpt-4o")
    sent = [(r["model"], bool(r.get("stream"))) for r in llm.requests]
    assert sent == [("o3", True), ("o3", False), ("o3", False), ("gpt-4o", True)]


async def test_a_refused_stream_option_is_left_out_and_streaming_goes_on(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    """(Until issue 14 this fell back to no streaming at all, as the test above still does for
    a refusal that names no parameter.)"""
    llm.script += [Scripted(status=400, body={"error": {"message": "unknown field stream_options"}})]
    assert (await model.stream("", [Turn("user", "hi")])).text == "echo: hi"
    assert (await model.stream("", [Turn("user", "hi")])).usage.estimated  # no usage asked for
    assert [(bool(r.get("stream")), "stream_options" in r) for r in llm.requests] == [
        (True, True),
        (True, False),
        (True, False),
    ]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    "step",
    [
        Scripted(text="", finish_reason="length"),  # a reasoning model that spent its tokens thinking
        Scripted(text="something unwelcome", finish_reason="content_filter"),
    ],
)
async def test_a_failed_call_that_was_billed_carries_its_usage(
    llm: FakeOpenAI, model: ChatModel, step: Scripted, streamed: bool
) -> None:
    llm.script.append(step)
    with pytest.raises(PermanentError) as failed:
        if streamed:
            await model.stream("", [Turn("user", "four words of prompt")])
        else:
            await model.complete("", [Turn("user", "four words of prompt")])
    usage = failed.value.usage
    assert usage is not None and usage.kind == "chat" and usage.model == "llama3.2:3b"
    assert usage.prompt_tokens > 0  # the server's count, or an estimate when it gave none


async def test_a_stream_broken_after_text_carries_an_estimate_of_what_it_cost(
    llm: FakeOpenAI, model: ChatModel
) -> None:
    llm.script.append(Scripted(text="x" * 400, piece_chars=100, cut_after=2))
    with pytest.raises(TransientError) as broken:
        await model.stream("", [Turn("user", "y" * 40)])
    usage = broken.value.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (
        10,
        50,
    )  # ~4 chars a token
    llm.script.append(Scripted(status=500))
    with pytest.raises(TransientError) as refused:  # nothing was generated: nothing billed
        await model.stream("", [Turn("user", "y" * 40)])
    assert refused.value.usage is None


async def test_an_unreachable_server_is_an_outage_whoever_asked() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    model = ChatModel(
        api_key="", base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout_s=2, max_reply_tokens=50
    )
    try:
        with pytest.raises(TransientError) as refused:
            await model.complete("", [Turn("user", "hi")])
    finally:
        await model.aclose()
    assert refused.value.cause is Cause.UNAVAILABLE and refused.value.shared  # not this prompt's fault
