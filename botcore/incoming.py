"""What comes in from Telegram, parsed once where it enters: a raw update becomes one frozen
``Incoming`` (ids, chat kind, the sender by one rule, text made valid Unicode, the command, the
attachment). Nothing downstream reads the raw dict. A leaf: imports nothing of ours, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from botcore.attachments import ATTACHMENT_FIELDS, Attachment, parse_attachment, valid_id

# Message fields that carry something a person sent that we cannot read yet (service messages,
# such as joins, pins and title changes, carry none of these and get no answer at all).
_OTHER_CONTENT = (
    "animation",
    "contact",
    "dice",
    "game",
    "location",
    "poll",
    "sticker",
    "story",
    "venue",
    "video",
)


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: a surrogate pair that arrived as two code points (split across
    two JSON escapes or two stream chunks) becomes its character, and every lone surrogate
    becomes U+FFFD (SQLite refuses to encode one). The common case costs one encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def clean(value: Any) -> Any:
    """A JSON-shaped value (a Telegram update, say) with all its strings cleaned, keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"  # groups and supergroups alike
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class Sender:
    """Who counts as the author of a message, for access, rate limits, budgets and usage."""

    id: int
    name: str
    language: str | None = None  # the IETF tag of their Telegram app's language ("es", "pt-br")


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply goes: the chat, the message it answers, and the forum topic if any."""

    chat_id: int
    message_id: int
    thread_id: int | None


@dataclass(frozen=True, slots=True)
class Command:
    """``/name@bot argument``: the name in lower case, the bot it names (None: any), the rest."""

    name: str
    argument: str
    bot: str | None


@dataclass(frozen=True, slots=True)
class Button:
    """A press on one of our inline-keyboard buttons: the query to answer, the button's data."""

    query_id: str
    data: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """One Telegram message, or a press on a button of one of ours (then ``message_id`` is that
    message's, ``button`` is set and there is no text), as everything past the intake sees it."""

    update_id: int
    chat_id: int
    chat_kind: ChatKind
    message_id: int
    thread_id: int | None
    sender: Sender | None
    text: str = ""  # the text or caption, valid Unicode; "" when there is none
    captioned: bool = False  # ``text`` is the caption of something attached
    command: Command | None = None  # when the text is a command (a forwarded "/…" is just text)
    forwarded: bool = False
    reply_to_author: int | None = None  # who wrote the message this one replies to
    mentions: frozenset[str] = frozenset()  # @usernames mentioned, lower case, without the "@"
    mentioned_ids: frozenset[int] = frozenset()  # users mentioned by a text link (no username)
    attachment: Attachment | None = None
    other_content: bool = False  # something sent that we cannot read (a sticker, a broken voice note…)
    button: Button | None = None
    album: str | None = None  # the album (media group) this message is a part of

    @property
    def in_group(self) -> bool:
        return self.chat_kind is ChatKind.GROUP

    @property
    def target(self) -> ReplyTarget:
        return ReplyTarget(self.chat_id, self.message_id, self.thread_id)

    @property
    def sender_id(self) -> int | None:
        return self.sender.id if self.sender else None

    def with_text(self, text: str) -> Incoming:
        """The same message carrying ``text`` (a voice note's transcript), as a typed turn."""
        return replace(self, text=text, captioned=False, command=None, attachment=None)


def parse_update(update: Mapping[str, Any]) -> Incoming | None:
    """The update's message or button press as an ``Incoming``; None when it holds nothing we
    could answer (an edit, a channel post, an id that is no id). Never raises, whatever it holds."""
    if "callback_query" in update:
        return _press(update)
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    chat = message.get("chat")
    update_id, message_id = update.get("update_id"), message.get("message_id")
    if not (
        isinstance(chat, dict) and valid_id(chat.get("id")) and valid_id(update_id) and valid_id(message_id)
    ):
        return None
    typed = _string(message.get("text"))
    text = typed or _string(message.get("caption"))
    attachment = parse_attachment(message)
    forwarded = "forward_origin" in message
    entities = message.get("entities") or message.get("caption_entities")
    mentions, mentioned_ids = _mentions(text, entities if isinstance(entities, list) else [])
    replied = message.get("reply_to_message")
    author = replied.get("from") if isinstance(replied, dict) else None
    thread_id = message.get("message_thread_id")
    return Incoming(
        update_id=update_id,
        chat_id=chat["id"],
        chat_kind=_chat_kind(chat.get("type")),
        message_id=message_id,
        thread_id=thread_id if valid_id(thread_id) else None,
        sender=sender_of(message),
        text=text,
        captioned=bool(text) and not typed,
        command=None if forwarded or not isinstance(message.get("text"), str) else _command(text),
        forwarded=forwarded,
        reply_to_author=author["id"] if isinstance(author, dict) and valid_id(author.get("id")) else None,
        mentions=mentions,
        mentioned_ids=mentioned_ids,
        attachment=attachment,
        # A voice note without a usable file is something sent that we cannot read, too.
        other_content=any(key in message for key in _OTHER_CONTENT)
        or (attachment is None and any(k in message for k in ATTACHMENT_FIELDS)),
        album=_string(message.get("media_group_id")) or None,
    )


def _press(update: Mapping[str, Any]) -> Incoming | None:
    """A button press on a message of ours in a chat (not an inline-mode message: no chat)."""
    query = update.get("callback_query")
    if not isinstance(query, dict):
        return None
    message, user, query_id = query.get("message"), query.get("from"), query.get("id")
    data, update_id = query.get("data"), update.get("update_id")
    if not (isinstance(message, dict) and isinstance(user, dict) and valid_id(update_id)):
        return None
    chat, message_id = message.get("chat"), message.get("message_id")
    if not (
        isinstance(chat, dict)
        and valid_id(chat.get("id"))
        and valid_id(message_id)
        and valid_id(user.get("id"))
    ):
        return None
    if not (isinstance(query_id, str) and query_id and isinstance(data, str)):
        return None  # a game's button, or no query to answer
    thread_id = message.get("message_thread_id")
    return Incoming(
        update_id=update_id,
        chat_id=chat["id"],
        chat_kind=_chat_kind(chat.get("type")),
        message_id=message_id,
        thread_id=thread_id if valid_id(thread_id) else None,
        sender=Sender(user["id"], _name(user), _language(user)),  # a press is a person's, never anonymous
        button=Button(query_id, clean_text(data)),
    )


def sender_of(message: Mapping[str, Any]) -> Sender | None:
    """The one rule: the chat a message speaks as (``sender_chat``: an anonymous group admin, a
    channel) if there is one, else the user in ``from``. An anonymous admin's ``from`` is
    GroupAnonymousBot, the same in every group, so it must never be the identity."""
    for field in ("sender_chat", "from"):
        source = message.get(field)
        if isinstance(source, dict) and valid_id(source.get("id")):
            return Sender(int(source["id"]), _name(source), _language(source))
    return None


def language_of(update: Mapping[str, Any]) -> str | None:
    """The language of whoever an update is from (a message's sender, or who pressed a button),
    by the same rules as ``parse_update``, without parsing the rest."""
    query = update.get("callback_query")
    if isinstance(query, dict):
        user = query.get("from")
        return _language(user) if isinstance(user, dict) else None
    message = update.get("message")
    sender = sender_of(message) if isinstance(message, dict) else None
    return sender.language if sender is not None else None


def _language(user: Mapping[str, Any]) -> str | None:
    code = user.get("language_code")
    return code if isinstance(code, str) and 0 < len(code) <= 35 else None  # BCP 47 tags are short


def _string(value: object) -> str:
    return clean_text(value) if isinstance(value, str) else ""


def _chat_kind(value: object) -> ChatKind:
    if value in ("group", "supergroup"):
        return ChatKind.GROUP
    return ChatKind.CHANNEL if value == "channel" else ChatKind.PRIVATE


def _command(text: str) -> Command | None:
    if not text.startswith("/") or not text.strip():
        return None
    word, *rest = text.split(maxsplit=1)
    name, _, bot = word[1:].partition("@")
    return Command(name.lower(), rest[0] if rest else "", bot.lower() or None)


def _mentions(text: str, entities: list[Any]) -> tuple[frozenset[str], frozenset[int]]:
    names: set[str] = set()
    ids: set[int] = set()
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        user = entity.get("user")
        if entity.get("type") == "text_mention" and isinstance(user, dict) and valid_id(user.get("id")):
            ids.add(user["id"])
        elif entity.get("type") == "mention":
            names.add(_utf16_slice(text, entity).lstrip("@").lower())
    return frozenset(names), frozenset(ids)


def _utf16_slice(text: str, entity: Mapping[str, Any]) -> str:
    """Telegram's entity offsets count UTF-16 code units."""
    offset, length = entity.get("offset", 0), entity.get("length", 0)
    if not (valid_id(offset) and valid_id(length)) or offset < 0 or length < 0:
        return ""
    encoded = text.encode("utf-16-le", errors="surrogatepass")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def _name(source: Mapping[str, Any]) -> str:
    parts = [source.get(k) for k in ("title", "first_name", "last_name")]
    name = " ".join(p for p in parts if isinstance(p, str) and p)
    username = source.get("username")
    return name or (username if isinstance(username, str) and username else "someone")
