"""What comes in from outside, made safe once, where it enters: text becomes valid Unicode (an
unpaired UTF-16 surrogate, which SQLite refuses to encode, becomes U+FFFD), and the one rule for
who sent a Telegram message. A leaf: it imports nothing of ours and does no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Telegram ids fit in 52 bits; anything outside a signed 64-bit integer cannot be stored anyway.
_MAX_ID = 2**63 - 1


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: a surrogate pair that arrived as two code points (split across
    two JSON escapes or two stream chunks) becomes its character, and every lone surrogate
    becomes U+FFFD. The common case costs one encode."""
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


def valid_id(value: object) -> bool:
    """A Telegram id we can store and address: an int (not a bool) within 64 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and -_MAX_ID <= value <= _MAX_ID


@dataclass(frozen=True, slots=True)
class Sender:
    """Who counts as the author of a message, for access, rate limits, budgets and usage."""

    id: int
    name: str


def sender_of(message: Mapping[str, Any]) -> Sender | None:
    """The one rule: the chat a message speaks as (``sender_chat``: an anonymous group admin, a
    channel) if there is one, else the user in ``from``. An anonymous admin's ``from`` is
    GroupAnonymousBot, the same in every group, so it must never be the identity."""
    for field in ("sender_chat", "from"):
        source = message.get(field)
        if isinstance(source, dict) and valid_id(source.get("id")):
            return Sender(int(source["id"]), _name(source))
    return None


def _name(source: Mapping[str, Any]) -> str:
    parts = [source.get(k) for k in ("title", "first_name", "last_name")]
    name = " ".join(p for p in parts if isinstance(p, str) and p)
    username = source.get("username")
    return name or (username if isinstance(username, str) and username else "someone")
