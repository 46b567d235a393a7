"""Each chat's model, persona, streaming and memory, chosen with /model, /persona, /settings and
their inline keyboards: end to end through the intake (the press parsed, let in or refused,
answered), the jobs (in the chat's order) and the real SDKs against the fake servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from botcore import menus, texts
from botcore.catalog import ModelCatalog
from botcore.clock import ManualClock
from botcore.llm import ChatModel
from botcore.models import ChatPrefs
from botcore.personas import built_in
from botcore.routing import COMMAND_KIND, UPDATE_KIND

from .conftest import eventually
from .fakes import Failure, FakeOpenAI, FakeTelegram
from .services import (
    Services,
    after_a_crash,
    claim,
    incoming_of,
    last_update,
    methods,
    receive,
    run_due,
    services,
)

ADMIN = 1
GROUP = -100500


@pytest.fixture
async def s(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock) -> AsyncIterator[Services]:
    llm.models = ["fake-model", "qwen3:8b", "deepseek-r1:7b", "nomic-embed-text"]
    async with services(tmp_path, tg, llm, clock, ADMIN_USER_IDS=str(ADMIN)) as built:
        yield built


async def say(s: Services, tg: FakeTelegram, chat_id: int, text: str, **kwargs: object) -> None:
    """A message arrives, the intake stores its jobs, and they run."""
    tg.add_message(chat_id, text, **kwargs)  # type: ignore[arg-type]
    await receive(s, last_update(tg))
    await run_due(s)


async def press(
    s: Services, tg: FakeTelegram, chat_id: int, message_id: int, data: str, **kwargs: object
) -> None:
    tg.add_press(chat_id, message_id, data, **kwargs)  # type: ignore[arg-type]
    await receive(s, last_update(tg))
    await run_due(s)


def menu_message(tg: FakeTelegram, chat_id: int) -> int:
    """The id of the latest message we sent to ``chat_id`` with buttons."""
    with_buttons = [m for m in tg.sent if m["chat_id"] == chat_id and m.get("reply_markup")]
    assert with_buttons, "no menu was sent"
    return int(with_buttons[-1]["message_id"])


def latest_text(tg: FakeTelegram, chat_id: int, message_id: int) -> str:
    return [m["text"] for m in tg.sent if m["chat_id"] == chat_id and m["message_id"] == message_id][-1]


def button(tg: FakeTelegram, chat_id: int, message_id: int, starts: str) -> str:
    """The data of the button whose label starts with ``starts``."""
    found = [data for label, data in tg.buttons_of(chat_id, message_id) if label.startswith(starts)]
    assert found, f"no button {starts!r} in {tg.buttons_of(chat_id, message_id)}"
    return found[0]


async def test_model_menu_lists_the_servers_chat_models_and_a_press_switches_this_chat(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, 10, "/model")
    menu = menu_message(tg, 10)
    labels = [label for label, _ in tg.buttons_of(10, menu)]
    assert labels[:3] == ["deepseek-r1:7b", "✅ fake-model", "qwen3:8b"]  # the current one marked
    assert not any("embed" in label for label in labels)  # listed, but cannot chat
    await press(s, tg, 10, menu, button(tg, 10, menu, "qwen3"))
    await eventually(lambda: tg.answered, what="the press answered")  # the spinner stopped
    assert texts.MODEL_SET.format(model="qwen3:8b") in latest_text(tg, 10, menu)
    assert "✅ qwen3:8b" in [label for label, _ in tg.buttons_of(10, menu)]
    await say(s, tg, 10, "hello")
    assert llm.requests[-1]["model"] == "qwen3:8b"
    await say(s, tg, 11, "hello from another chat")
    assert llm.requests[-1]["model"] == "fake-model"  # the choice is this chat's only


async def test_a_choice_survives_a_restart(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    llm.models = ["fake-model", "qwen3:8b"]
    async with services(tmp_path, tg, llm, clock) as first:
        await say(first, tg, 10, "/model qwen3:8b")
        await say(first, tg, 10, "/persona coder")
    async with services(tmp_path, tg, llm, clock) as again:
        await say(again, tg, 10, "hi")
    assert llm.requests[-1]["model"] == "qwen3:8b"
    assert llm.requests[-1]["messages"][0] == {"role": "system", "content": built_in("")["coder"].prompt}


async def test_typed_model_names_are_checked_against_the_servers_list(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, 10, "/model gpt-9-imaginary")
    assert tg.texts_to(10)[-1] == texts.MODEL_UNKNOWN.format(model="gpt-9-imaginary")
    await say(s, tg, 10, "/model deepseek-r1:7b")
    assert tg.texts_to(10)[-1] == texts.MODEL_SET.format(model="deepseek-r1:7b")
    await say(s, tg, 10, "/model deepseek-r1:7b")
    assert tg.texts_to(10)[-1] == texts.MODEL_SAME.format(model="deepseek-r1:7b")
    await say(s, tg, 10, "/model fake-model")  # back to the default: stored as no choice at all
    assert await s.storage.prefs.get(10) == ChatPrefs()
    assert llm.model_list_calls == 1  # the list is cached


async def test_a_server_without_a_model_list_takes_typed_names_and_says_so(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    llm.models = None
    llm.missing_models = {"gone-model"}
    async with services(tmp_path, tg, llm, clock) as s:
        await say(s, tg, 10, "/model")
        menu = menu_message(tg, 10)
        assert texts.MODELS_UNLISTED.strip() in latest_text(tg, 10, menu)
        assert tg.buttons_of(10, menu)[0][0] == "✅ fake-model"
        await say(s, tg, 10, "/model gone-model")  # nothing to check it against: taken
        assert tg.texts_to(10)[-1] == texts.MODEL_SET.format(model="gone-model")
        await say(s, tg, 10, "hello?")
        # The server does not know it: the user is told to choose another, not a generic apology.
        assert "/model" in tg.texts_to(10)[-1] and "doesn't know the model" in tg.texts_to(10)[-1]


async def test_allowed_models_restrict_the_choice(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, ALLOWED_MODELS="qwen3:8b, gpt-5") as s:
        await say(s, tg, 10, "/model")
        menu = menu_message(tg, 10)
        assert [label for label, _ in tg.buttons_of(10, menu)][:3] == ["✅ fake-model", "qwen3:8b", "gpt-5"]
        await say(s, tg, 10, "/model deepseek-r1:7b")
        assert tg.texts_to(10)[-1] == texts.MODEL_NOT_ALLOWED.format(model="deepseek-r1:7b")
        assert llm.model_list_calls == 0  # ALLOWED_MODELS is the list
    # The owner narrows ALLOWED_MODELS: a chat's choice that is no longer allowed gives way.
    async with services(tmp_path, tg, llm, clock, ALLOWED_MODELS="gpt-5") as s:
        await s.storage.prefs.put(10, ChatPrefs(model="qwen3:8b"), now=0)
        await say(s, tg, 10, "hi")
        assert llm.requests[-1]["model"] == "fake-model"


async def test_a_model_name_too_long_for_a_button_still_works(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    long_name = "accounts/fireworks/models/" + "deepseek-r1-distill-llama-70b-instruct" * 2
    llm.models = [long_name]
    await say(s, tg, 10, "/model")
    menu = menu_message(tg, 10)
    data = button(tg, 10, menu, "accounts/")
    assert len(data.encode()) <= menus.MAX_DATA_BYTES
    await press(s, tg, 10, menu, data)
    await say(s, tg, 10, "hi")
    assert llm.requests[-1]["model"] == long_name


async def test_choosing_a_persona_starts_a_fresh_conversation_with_its_prompt(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, 10, "remember the number 7")
    await say(s, tg, 10, "/persona")
    menu = menu_message(tg, 10)
    assert [label for label, _ in tg.buttons_of(10, menu)][:4] == [
        "✅ assistant",
        "translator",
        "coder",
        "concise",
    ]
    await press(s, tg, 10, menu, "p:translator")
    assert texts.PERSONA_SET.format(persona="translator") in latest_text(tg, 10, menu)
    await say(s, tg, 10, "Guten Morgen")
    sent = llm.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": built_in("")["translator"].prompt}
    assert [m["content"] for m in sent[1:]] == ["Guten Morgen"]  # the old conversation is gone
    await say(s, tg, 10, "/persona nobody")
    assert tg.texts_to(10)[-1] == texts.PERSONA_UNKNOWN.format(persona="nobody")


async def test_settings_buttons_turn_streaming_and_memory_off_and_on(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    await say(s, tg, 10, "first question")
    await say(s, tg, 10, "/settings")
    menu = menu_message(tg, 10)
    text = latest_text(tg, 10, menu)
    assert "fake-model (default)" in text and "assistant" in text and "Memory: on" in text
    await press(s, tg, 10, menu, button(tg, 10, menu, "💾"))
    assert texts.MEMORY_OFF_NOTE in latest_text(tg, 10, menu)
    await say(s, tg, 10, "second question")
    await say(s, tg, 10, "third question")
    assert [m["content"] for m in llm.requests[-1]["messages"]] == ["third question"]  # stands alone
    await press(s, tg, 10, menu, button(tg, 10, menu, "💾"))
    await say(s, tg, 10, "fourth question")
    assert [m["content"] for m in llm.requests[-1]["messages"]] == [
        "fourth question"
    ]  # nothing kept while off
    await say(s, tg, 10, "fifth question")
    assert len(llm.requests[-1]["messages"]) == 3  # remembering again
    # Streaming (off in these tests' settings) turned on for this chat only.
    await press(s, tg, 10, menu, button(tg, 10, menu, "⚡"))
    assert (await s.storage.prefs.get(10)).stream is True
    await say(s, tg, 10, "stream this")
    assert llm.requests[-1].get("stream") is True


async def test_in_a_group_only_admins_change_settings(s: Services, tg: FakeTelegram, llm: FakeOpenAI) -> None:
    group = {"chat_type": "supergroup"}
    await say(s, tg, GROUP, "/model@test_bot", user_id=20, **group)
    menu = menu_message(tg, GROUP)
    sent = len(tg.texts_to(GROUP))
    await press(s, tg, GROUP, menu, button(tg, GROUP, menu, "qwen3"), user_id=20, **group)
    assert texts.ADMINS_ONLY in latest_text(tg, GROUP, menu)  # said on the menu: no new message
    assert len(tg.texts_to(GROUP)) == sent + 1 and tg.sent[-1]["edited"]
    assert await s.storage.prefs.get(GROUP) == ChatPrefs()
    await say(s, tg, GROUP, "/model@test_bot qwen3:8b", user_id=20, **group)
    assert tg.texts_to(GROUP)[-1] == texts.ADMINS_ONLY
    tg.admins[GROUP] = {21}
    await press(s, tg, GROUP, menu, button(tg, GROUP, menu, "qwen3"), user_id=21, **group)
    assert (await s.storage.prefs.get(GROUP)).model == "qwen3:8b"
    checks = tg.member_checks
    await say(s, tg, GROUP, "/persona@test_bot coder", user_id=ADMIN, **group)  # the bot's admin
    assert (await s.storage.prefs.get(GROUP)).persona == "coder"
    assert tg.member_checks == checks  # no need to ask Telegram


async def test_a_refused_press_stores_no_job_and_is_answered_at_once(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, ALLOWED_CHAT_IDS="-1007") as s:
        tg.add_press(GROUP, 5, "t:stream=1", user_id=20, chat_type="supergroup")
        await receive(s, last_update(tg))
        assert await run_due(s) == []  # no job
        await eventually(lambda: tg.answered, what="the press answered")
        [answer] = tg.answered
        assert answer["text"].startswith("🔒") and str(GROUP) in answer["text"]
        assert await s.storage.prefs.get(GROUP) == ChatPrefs()


async def test_a_press_is_stored_before_it_is_answered_and_runs_in_the_chats_order(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    tg.add_message(10, "a question first")
    tg.add_press(10, 99, "t:memory=0")
    await s.intake.persist(tg.pending[-2:])
    await eventually(lambda: tg.answered, what="the press answered")  # once stored, before any job ran
    done = await run_due(s)
    assert [a.job.payload.get("callback_query") is not None for a in done] == [False, True]
    # The menu (message 99) is edited in place.
    assert [p for p in methods(tg, "editMessageText", 10) if int(p["message_id"]) == 99]


async def test_presses_of_buttons_we_never_made_are_harmless(s: Services, tg: FakeTelegram) -> None:
    forged = ("", "x:y", "ml:abc", "ml:²", "ml:-1", "t:stream=2", "m#0000", "p:" + "z" * 40, "ml:99999")
    for data in forged:
        await press(s, tg, 10, 5, data)
    assert await s.storage.prefs.get(10) == ChatPrefs()
    await eventually(lambda: len(tg.answered) == len(forged), what="every press answered")
    assert not await s.queue.latest_dead(10)  # no job failed over any of them


async def test_someone_speaking_as_a_channel_or_unknown_to_telegram_changes_nothing(
    s: Services, tg: FakeTelegram
) -> None:
    channel = {"sender_chat": {"id": -100999, "type": "channel", "title": "Some channel"}}
    await say(s, tg, GROUP, "/model@test_bot qwen3:8b", user_id=20, chat_type="supergroup", extra=channel)
    assert tg.texts_to(GROUP)[-1] == texts.ADMINS_ONLY
    tg.fail["getChatMember"] = [Failure(400, "Bad Request: user not found")]
    await say(s, tg, GROUP, "/persona@test_bot coder", user_id=20, chat_type="supergroup")
    assert tg.texts_to(GROUP)[-1] == texts.ADMINS_ONLY
    assert await s.storage.prefs.get(GROUP) == ChatPrefs()
    assert not await s.queue.latest_dead(10)


async def test_menu_presses_that_change_nothing_do_not_wait_behind_answers(
    s: Services, tg: FakeTelegram
) -> None:
    tg.add_press(10, 5, "ml:0")
    tg.add_press(10, 5, "p:coder")
    decisions = [s.router.route(incoming_of(raw)) for raw in tg.pending[-2:]]
    assert [d.jobs[0].kind for d in decisions] == [COMMAND_KIND, UPDATE_KIND]
    assert decisions[1].jobs[0].group_key == "chat:10"


async def test_memory_turned_off_by_the_owner_has_no_button(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    async with services(tmp_path, tg, llm, clock, HISTORY_MESSAGES="0") as s:
        await say(s, tg, 10, "/settings")
        menu = menu_message(tg, 10)
        assert texts.MEMORY_DISABLED in latest_text(tg, 10, menu)
        assert not [label for label, _ in tg.buttons_of(10, menu) if label.startswith("💾")]


async def test_many_long_personas_still_fit_one_message(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    file = tmp_path / "personas.toml"
    file.write_text(
        "".join(f'[p{n:02d}-{"x" * 27}]\ndescription = "{"d" * 100}"\nprompt = "be {n}"\n' for n in range(36))
    )
    async with services(tmp_path, tg, llm, clock, PERSONAS_FILE=str(file)) as s:
        await say(s, tg, 10, "/persona")
        menu = menu_message(tg, 10)
        assert len(latest_text(tg, 10, menu)) <= 4096
        assert len(tg.buttons_of(10, menu)) == 41  # 40 personas and the way back


async def test_a_model_list_that_cannot_be_had_now_is_said_so(tmp_path: Path, clock: ManualClock) -> None:
    down = ChatModel(
        api_key="", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2, max_reply_tokens=16
    )
    try:
        names, caveat = await ModelCatalog(down, clock, allowed=()).offered()
    finally:
        await down.aclose()
    assert names == ["m"] and caveat == texts.MODELS_UNAVAILABLE


async def test_a_model_the_server_does_not_know_alerts_the_admins(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, clock: ManualClock
) -> None:
    llm.missing_models = {"fake-model"}  # OPENAI_MODEL itself is wrong
    async with services(tmp_path, tg, llm, clock, ADMIN_USER_IDS=str(ADMIN)) as s:
        await say(s, tg, 10, "hello")
        assert "/model" in tg.texts_to(10)[-1]
        assert "'fake-model'" in tg.texts_to(ADMIN)[-1] and "OPENAI_MODEL" in tg.texts_to(ADMIN)[-1]


async def test_a_press_we_cannot_act_on_is_still_answered(s: Services, tg: FakeTelegram) -> None:
    tg.add_press(10, 5, "s:")
    raw = last_update(tg)
    del raw["callback_query"]["message"]  # as on a message sent in inline mode: no chat
    await receive(s, raw)
    assert await run_due(s) == []
    await eventually(lambda: tg.answered, what="the press answered")


async def test_a_change_interrupted_by_a_crash_is_said_as_done_on_the_rerun(
    s: Services, tg: FakeTelegram, llm: FakeOpenAI
) -> None:
    """The first attempt stored the new persona (and reset the conversation), then died before
    it could keep what it said: the rerun says the persona is set, not "already so"."""
    tg.add_press(10, 5, "p:coder")
    await receive(s, last_update(tg))
    first = await claim(s, UPDATE_KIND)
    await s.queue.save_checkpoint(first, {"applying": 1})  # what the attempt had kept…
    await s.storage.prefs.put(10, ChatPrefs(persona="coder"), now=0)  # …and done
    again = await after_a_crash(s, first)
    await s.updates.handle(again)
    assert texts.PERSONA_SET.format(persona="coder") in latest_text(tg, 10, 5)
