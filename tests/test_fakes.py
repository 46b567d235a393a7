"""The fake servers, driven through the real SDKs: what they serve must parse as the real thing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
import telegram
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from .conftest import TOKEN
from .fakes import FakeOpenAI, FakeTelegram


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    client = telegram.Bot(TOKEN, base_url=f"{tg.base_url}/bot")
    async with client:
        yield client


@pytest.fixture
async def ai(llm: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="k", max_retries=0)
    yield client
    await client.close()


def keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in row] for row in rows])


async def test_models_listed(llm: FakeOpenAI, ai: openai.AsyncOpenAI) -> None:
    llm.models = ["fake-model", "other-model"]
    assert [m.id async for m in ai.models.list()] == ["fake-model", "other-model"]
    assert llm.model_list_calls == 1


async def test_no_models_endpoint(llm: FakeOpenAI, ai: openai.AsyncOpenAI) -> None:
    llm.models = None
    with pytest.raises(openai.NotFoundError):
        await ai.models.list()
    assert llm.model_list_calls == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_missing_model(llm: FakeOpenAI, ai: openai.AsyncOpenAI, stream: bool) -> None:
    llm.missing_models = {"gone-model"}
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as caught:
        await ai.chat.completions.create(model="gone-model", messages=messages, stream=stream)  # type: ignore[call-overload]
    assert caught.value.code == "model_not_found"
    assert "`gone-model` does not exist" in caught.value.message
    reply = await ai.chat.completions.create(model="fake-model", messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "echo: hi"
    assert [r["model"] for r in llm.requests] == ["gone-model", "fake-model"]


async def test_press_parsed_and_answered(tg: FakeTelegram, bot: telegram.Bot) -> None:
    sent = await bot.send_message(
        5, "Pick a model", reply_markup=keyboard([("A", "model:a"), ("B", "model:b")])
    )
    first = tg.add_press(5, sent.message_id, "model:b", user_id=77)
    second = tg.add_press(5, 999, "stale")  # a message the fake never saw
    assert second == first + 1
    [update, other] = await bot.get_updates()
    query = update.callback_query
    assert update.update_id == first and query is not None
    assert query.data == "model:b" and query.from_user.id == 77
    assert isinstance(query.message, telegram.Message)
    assert query.message.message_id == sent.message_id and query.message.chat.id == 5
    assert query.message.text == "Pick a model"
    assert query.message.reply_markup == keyboard([("A", "model:a"), ("B", "model:b")])
    assert other.callback_query is not None and other.callback_query.message.text == "menu"  # type: ignore[union-attr]
    assert query.id != other.callback_query.id

    assert await query.answer("Switched") is True
    assert tg.answered == [{"callback_query_id": query.id, "text": "Switched"}]
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query is too old"):
        await query.answer()
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query id is invalid"):
        await bot.answer_callback_query("no-such-query")
    assert len(tg.answered) == 1


async def test_press_in_group(tg: FakeTelegram, bot: telegram.Bot) -> None:
    tg.add_press(-100, 3, "settings", user_id=8, chat_type="supergroup", first_name="Grace")
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.message is not None
    assert query.message.chat.type == "supergroup" and query.from_user.first_name == "Grace"


async def test_chat_member_statuses(tg: FakeTelegram, bot: telegram.Bot) -> None:
    tg.creators[-100] = 1
    tg.admins[-100] = {2}
    owner = await bot.get_chat_member(-100, 1)
    admin = await bot.get_chat_member(-100, 2)
    member = await bot.get_chat_member(-100, 3)
    assert isinstance(owner, telegram.ChatMemberOwner) and owner.status == "creator"
    assert isinstance(admin, telegram.ChatMemberAdministrator) and admin.status == "administrator"
    assert isinstance(member, telegram.ChatMemberMember) and member.user.id == 3
    assert (await bot.get_chat_member(-200, 1)).status == "member"  # creator of another chat only
    assert tg.member_checks == 4


async def test_markup_recorded(tg: FakeTelegram, bot: telegram.Bot) -> None:
    menu = keyboard([("Model", "m"), ("Persona", "p")], [("Close", "x")])
    sent = await bot.send_message(5, "Settings", reply_markup=menu)
    plain = await bot.send_message(5, "hello")
    assert tg.sent[0]["reply_markup"] == menu.to_dict() and tg.sent[1]["reply_markup"] is None
    assert tg.buttons_of(5, sent.message_id) == [("Model", "m"), ("Persona", "p"), ("Close", "x")]
    assert tg.markup_of(5, plain.message_id) is None and tg.buttons_of(5, plain.message_id) == []
    assert tg.markup_of(5, 12345) is None

    smaller = keyboard([("Back", "b")])
    await bot.edit_message_reply_markup(5, sent.message_id, reply_markup=smaller)
    assert tg.sent[-1]["edited"] and tg.sent[-1]["text"] == "Settings"
    assert tg.buttons_of(5, sent.message_id) == [("Back", "b")]

    # The same text and the same keyboard again: Telegram refuses, as "not modified".
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Settings", 5, sent.message_id, reply_markup=smaller)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_reply_markup(5, sent.message_id, reply_markup=smaller)
    await bot.edit_message_text("Settings", 5, sent.message_id, reply_markup=menu)  # keyboard differs
    await bot.edit_message_text("Settings", 5, sent.message_id)  # no markup: the keyboard goes
    assert tg.markup_of(5, sent.message_id) is None
    assert tg.current_texts(5) == ["Settings", "hello"]
