"""The real application (``python bot.py`` in a subprocess) against a fake Telegram Bot API
server and a fake OpenAI-compatible server, both on 127.0.0.1 and owned by the test."""

from pathlib import Path

from botcore import texts
from botcore.formatting import render
from botcore.routing import help_text

from .botproc import BotProcess
from .conftest import eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram, Scripted, images_in


async def replies(tg: FakeTelegram, chat_id: int, count: int, timeout: float = 20) -> list[str]:
    await eventually(lambda: len(tg.texts_to(chat_id)) >= count, timeout=timeout, what=f"{count} replies")
    return tg.texts_to(chat_id)


async def test_hello_round_trip(tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess) -> None:
    update = tg.add_message(10, "hello")
    assert await replies(tg, 10, 1) == ["echo: hello"]
    methods = [m for m, _ in tg.calls]
    assert methods[:3] == ["getMe", "deleteWebhook", "setMyCommands"]
    assert "sendChatAction" in methods
    send = next(p for m, p in tg.calls if m == "sendMessage")
    assert send["reply_parameters"]["message_id"] == update
    assert llm.requests[0]["model"] == "fake-model"
    assert llm.requests[0]["messages"][0]["role"] == "system"


async def test_memory_across_turns_and_reset(tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess) -> None:
    tg.add_message(10, "my name is Ada")
    await replies(tg, 10, 1)
    tg.add_message(10, "what is my name?")
    await replies(tg, 10, 2)
    second = llm.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in second[1:]] == [
        ("user", "my name is Ada"),
        ("assistant", "echo: my name is Ada"),
        ("user", "what is my name?"),
    ]
    tg.add_message(10, "/reset")
    assert (await replies(tg, 10, 3))[2] == texts.RESET.format(count=4)
    tg.add_message(10, "hi again")
    await replies(tg, 10, 4)
    assert [m["content"] for m in llm.requests[2]["messages"][1:]] == ["hi again"]


async def test_a_long_answer_arrives_complete_and_in_order(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 12 for i in range(30)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 10_000
    llm.script.append(Scripted(text=answer))
    tg.add_message(10, "tell me a lot")
    expected = [c.text for c in render(answer)]
    assert len(expected) >= 3
    got = await replies(tg, 10, len(expected))
    assert got == expected
    joined = "".join(got)
    for p in paragraphs:
        assert p.strip() in joined


async def test_broken_markdown_still_arrives(tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess) -> None:
    llm.script.append(Scripted(text="Here is **bold without an end and `code too _and more"))
    tg.add_message(10, "format something")
    [reply] = await replies(tg, 10, 1)
    assert "bold without an end" in reply and "code too" in reply


async def test_quick_messages_in_one_chat_are_answered_in_order(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.by_prompt["one"] = Scripted(text="first answer", delay_s=0.5)  # slower than the second
    tg.add_message(10, "one")
    tg.add_message(10, "two")
    tg.add_message(20, "other chat")
    assert await replies(tg, 10, 2) == ["first answer", "echo: two"]
    assert await replies(tg, 20, 1) == ["echo: other chat"]


async def test_commands_and_non_text(tg: FakeTelegram, bot: BotProcess) -> None:
    tg.add_message(10, "/start")
    tg.add_message(10, "/help@test_bot")
    tg.add_message(10, "/frobnicate")
    tg.add_message(
        10,
        None,
        extra={
            "sticker": {
                "file_id": "x",
                "file_unique_id": "y",
                "type": "regular",
                "width": 1,
                "height": 1,
                "is_animated": False,
                "is_video": False,
            }
        },
    )
    helped = help_text(admin=False)
    assert await replies(tg, 10, 4) == [texts.START, helped, texts.UNKNOWN_COMMAND, texts.NOT_TEXT]


async def test_kill_9_mid_reply_then_restart_answers_every_message(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script.extend([Scripted(text="slow", delay_s=30)])  # the first LLM call hangs
    process = BotProcess(tmp_path / "data", tg, llm).start()
    sent = {10: ["a1", "a2", "a3"], 20: ["b1", "b2"]}
    for chat_id, words in sent.items():
        for word in words:
            tg.add_message(chat_id, word)
    await eventually(lambda: len(llm.requests) >= 1, timeout=20, what="the first LLM call")
    await eventually(lambda: tg.confirmed_below > 1000, timeout=20, what="Telegram told of stored updates")
    assert await process.kill() == -9
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        got10 = await replies(tg, 10, 3)
        got20 = await replies(tg, 20, 2)
    finally:
        assert await restarted.stop() == 0, restarted.log()
    # Every accepted message answered exactly once and in order: the killed process had sent
    # nothing (it died waiting for the LLM), so there is no duplicate either.
    assert got10 == ["echo: a1", "echo: a2", "echo: a3"]
    assert got20 == ["echo: b1", "echo: b2"]
    assert len(tg.texts_to(10)) == 3 and len(tg.texts_to(20)) == 2


async def test_refused_formatting_is_resent_as_plain_text(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.script.append(Scripted(text="This is **important**."))
    tg.fail["sendMessage"] = [Failure(400, "Bad Request: can't parse entities: unsupported start tag")]
    tg.add_message(10, "say something bold")
    assert await replies(tg, 10, 1) == ["This is important."]
    calls = [p for m, p in tg.calls if m == "sendMessage"]
    assert calls[0].get("entities") and not calls[1].get("entities")


async def test_a_failed_send_is_retried_without_asking_the_llm_again(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    tg.fail["sendMessage"] = [Failure(502, "Bad Gateway")]
    tg.add_message(10, "hello")
    assert await replies(tg, 10, 1) == ["echo: hello"]  # after the queue's 2 s backoff
    assert len(llm.requests) == 1


async def test_an_unexpected_refusal_ends_in_a_polite_apology(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    llm.script.extend([Scripted(status=404, body={"error": {"message": "no such route /v1/chat"}})])
    tg.add_message(10, "hello")
    assert await replies(tg, 10, 1) == [texts.FAILED]  # a permanent error: no retries, no raw text
    assert len(llm.requests) == 1


async def test_kill_9_between_the_parts_of_a_long_answer_resumes_where_it_stopped(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    answer = "\n\n".join(f"Part {i}: " + "lorem ipsum dolor sit amet " * 12 for i in range(30))
    expected = [c.text for c in render(answer)]
    assert len(expected) >= 3
    llm.script.append(Scripted(text=answer))
    tg.delay["sendMessage"] = [0.0, 60.0]  # the second part hangs; the bot is killed meanwhile
    process = BotProcess(tmp_path / "data", tg, llm).start()
    tg.add_message(10, "tell me a lot")
    await eventually(lambda: [m for m, _ in tg.calls].count("sendMessage") >= 2, timeout=20, what="part two")
    assert tg.texts_to(10) == expected[:1]
    assert await process.kill() == -9
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        got = await replies(tg, 10, len(expected))
    finally:
        assert await restarted.stop() == 0, restarted.log()
    assert got == expected  # part one not sent again, nothing missing, nothing out of order
    assert len(llm.requests) == 1  # the answer came from the checkpoint, not a second LLM call


async def test_an_llm_outage_opens_the_breaker_tells_the_user_once_and_recovers(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    llm.script += [Scripted(status=500)] * 2  # two chats fail: that opens it (BREAKER_FAIL_MAX=2)
    process = BotProcess(tmp_path / "data", tg, llm, BREAKER_FAIL_MAX="2", BREAKER_RESET_S="4").start()
    try:
        tg.add_message(10, "hello")
        tg.add_message(11, "hi")
        # The retries 2 s later find the breaker open: no request, the users are told, jobs wait.
        await eventually(
            lambda: tg.texts_to(10) == [texts.OUTAGE] and tg.texts_to(11) == [texts.OUTAGE],
            timeout=20,
            what="the outage notices",
        )
        assert len(llm.requests) == 2
        await eventually(
            lambda: (
                tg.texts_to(10) == [texts.OUTAGE, "echo: hello"]
                and tg.texts_to(11) == [texts.OUTAGE, "echo: hi"]
            ),
            timeout=30,
            what="the answers",
        )
    finally:
        assert await process.stop() == 0, process.log()
    assert len(llm.requests) == 4  # the failures, then the half-open trials that succeeded


async def test_a_too_long_conversation_drops_its_oldest_half_then_asks_for_reset(
    tg: FakeTelegram, llm: FakeOpenAI, bot: BotProcess
) -> None:
    for i in range(3):  # six messages of memory
        tg.add_message(10, f"fact {i}")
    await eventually(lambda: len(tg.texts_to(10)) == 3, what="three answers")
    too_long = Scripted(status=400, body={"error": {"code": "context_length_exceeded"}})
    llm.script.append(too_long)
    tg.add_message(10, "summarise")
    await eventually(lambda: len(tg.texts_to(10)) == 4, what="the fourth answer")
    assert tg.texts_to(10)[3] == "echo: summarise"
    retried = [m["content"] for m in llm.requests[-1]["messages"][1:]]
    assert retried == ["fact 2", "echo: fact 2", "summarise"]  # the oldest half dropped, once
    llm.script.extend([too_long, too_long])
    tg.add_message(10, "and again")
    await eventually(lambda: len(tg.texts_to(10)) == 5, what="the fifth reply")
    assert tg.texts_to(10)[4] == texts.CONTEXT_TOO_LONG


async def test_model_and_persona_chosen_with_buttons_survive_a_restart(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """Through the real bot: /model's keyboard, a press (parsed by python-telegram-bot from
    getUpdates), /persona, a restart, and a press refused in a group that is not allowed."""
    llm.models = ["fake-model", "qwen3:8b"]
    process = BotProcess(tmp_path / "data", tg, llm, ALLOWED_CHAT_IDS="").start()
    try:
        tg.add_message(10, "/model")
        await replies(tg, 10, 1)
        menu = tg.sent[-1]["message_id"]
        [qwen] = [data for label, data in tg.buttons_of(10, menu) if "qwen3" in label]
        tg.add_press(10, menu, qwen)
        await eventually(lambda: tg.answered, what="the press answered")
        await eventually(lambda: "qwen3:8b" in tg.current_texts(10)[-1], what="the menu edited")
        tg.add_message(10, "/persona")
        await replies(tg, 10, 2)
        personas = tg.sent[-1]["message_id"]
        tg.add_press(10, personas, "p:concise")
        await eventually(lambda: len(tg.answered) == 2, what="the second press answered")
        await eventually(lambda: "concise" in tg.current_texts(10)[-1], what="the persona menu edited")
        # A group the bot does not serve: the press is answered with why, and nothing runs.
        tg.add_press(-100777, 5, "t:memory=0", user_id=30, chat_type="supergroup")
        await eventually(lambda: len(tg.answered) == 3, what="the refused press answered")
        assert "-100777" in tg.answered[-1]["text"]
    finally:
        assert await process.stop() == 0, process.log()
    restarted = BotProcess(tmp_path / "data", tg, llm, ALLOWED_CHAT_IDS="").start()
    try:
        tg.add_message(10, "hello again")
        await eventually(lambda: tg.texts_to(10)[-1] == "echo: hello again", timeout=20, what="the answer")
    finally:
        assert await restarted.stop() == 0, restarted.log()
    assert llm.requests[-1]["model"] == "qwen3:8b"
    assert "as few words" in llm.requests[-1]["messages"][0]["content"]
    assert not [p for m, p in tg.calls if m == "editMessageText" and int(p["chat_id"]) == -100777]
    assert "Traceback" not in restarted.log()  # both runs write to the same log


async def test_kill_9_inside_an_albums_window_loses_no_photo(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """An album's parts are stored as they come; a crash before its window closes loses none:
    after the restart it is still one question with every photo."""
    image = (Path(__file__).parent / "fixtures" / "tiny.png").read_bytes()
    process = BotProcess(tmp_path / "data", tg, llm).start()
    last = 0
    for n in range(3):
        last = tg.add_photo(10, image, album="holiday", caption="which is best?" if n == 0 else None)
    await eventually(lambda: tg.confirmed_below > last, timeout=20, what="the album stored")
    assert await process.kill() == -9
    assert llm.requests == []  # killed inside the window: nothing was asked yet
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await eventually(
            lambda: "echo: which is best?" in tg.current_texts(10), timeout=20, what="the answer"
        )
    finally:
        assert await restarted.stop() == 0, restarted.log()
    [request] = llm.requests
    assert len(images_in(request)) == 3
    assert tg.current_texts(10).count("echo: which is best?") == 1


async def test_kill_9_between_drawing_and_sending_pays_for_the_picture_once(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.delay["sendPhoto"] = [30]  # the upload hangs: the bot is killed with the picture drawn
    process = BotProcess(tmp_path / "data", tg, llm).start()
    tg.add_message(10, "/image a sailing boat")
    await eventually(lambda: any(m == "sendPhoto" for m, _ in tg.calls), timeout=20, what="the upload")
    assert await process.kill() == -9
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await eventually(lambda: tg.photos, timeout=20, what="the picture sent")
    finally:
        assert await restarted.stop() == 0, restarted.log()
    assert len(llm.image_requests) == 1 and len(tg.photos) == 1
    assert tg.photos[0]["caption"] == "a sailing boat"


async def test_kill_9_between_speaking_and_sending_pays_for_the_voice_note_once(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.delay["sendVoice"] = [30]  # the upload hangs: the bot is killed with the answer spoken
    process = BotProcess(tmp_path / "data", tg, llm).start()
    tg.add_message(10, "/voice on")
    tg.add_message(10, "say something")
    await eventually(lambda: any(m == "sendVoice" for m, _ in tg.calls), timeout=20, what="the upload")
    assert await process.kill() == -9
    restarted = BotProcess(tmp_path / "data", tg, llm).start()
    try:
        await eventually(lambda: tg.voices, timeout=20, what="the voice note sent")
    finally:
        assert await restarted.stop() == 0, restarted.log()
    assert len(llm.speech_requests) == 1 and len(tg.voices) == 1
    assert tg.texts_to(10).count("echo: say something") == 1
