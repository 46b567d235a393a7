"""Turns the model's Markdown into Telegram messages: plain text plus message entities (no
parse_mode, so nothing to escape and nothing Telegram can fail to parse), split to fit."""

from __future__ import annotations

import re
from dataclasses import dataclass

import telegramify_markdown

MAX_MESSAGE_UTF16 = 4096  # Telegram's limit, in UTF-16 code units


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    entities: tuple[dict[str, object], ...]  # Bot API MessageEntity objects


# Code spans and fenced blocks, where a "<" is literal and must not be escaped.
_CODE = re.compile(r"(```.*?(?:```|$)|`[^`\n]*`)", re.DOTALL)


def _keep_angle_brackets(markdown: str) -> str:
    """The Markdown parser treats "<div>" or "<T>" outside code as HTML and drops it, and with it
    words of the answer; escaped, it stays text."""
    parts = _CODE.split(markdown)
    return "".join(part if i % 2 else part.replace("<", "\\<") for i, part in enumerate(parts))


def render(markdown: str, limit: int = MAX_MESSAGE_UTF16) -> list[Chunk]:
    """Never truncates: every character of the answer is in exactly one chunk, in order.
    Splits on paragraph and line boundaries where it can (telegramify-markdown's splitter)."""
    text, entities = telegramify_markdown.convert(_keep_angle_brackets(markdown))
    if not text.strip():
        return plain_chunks(markdown.strip() or "…", limit)
    return [
        Chunk(part, tuple(e.to_dict() for e in part_entities))
        for part, part_entities in telegramify_markdown.split_entities(text, entities, limit)
    ]


def with_reasoning(
    chunks: list[Chunk], reasoning: str, *, most: int = 1000, limit: int = MAX_MESSAGE_UTF16
) -> list[Chunk]:
    """``chunks`` with ``reasoning`` above the first, in an expandable (collapsed) blockquote,
    cut to at most ``most`` UTF-16 units and to what fits beside the first chunk."""
    first = chunks[0]
    room = min(most, limit - _utf16(first.text) - len(_GAP))
    quote = _cut(reasoning.strip(), room)
    if not quote:
        return chunks
    shift = _utf16(quote + _GAP)
    moved = tuple({**entity, "offset": _offset(entity) + shift} for entity in first.entities)
    quoted = {"type": "expandable_blockquote", "offset": 0, "length": _utf16(quote)}
    return [Chunk(quote + _GAP + first.text, (quoted, *moved)), *chunks[1:]]


_GAP = "\n\n"


def _offset(entity: dict[str, object]) -> int:
    offset = entity["offset"]
    return offset if isinstance(offset, int) else 0


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, room: int) -> str:
    """``text`` if it fits in ``room`` UTF-16 units, else its start and "…" (none below 20)."""
    if _utf16(text) <= room:
        return text
    if room < 20:
        return ""
    cut = text
    while _utf16(cut) > room - 1:
        cut = cut[: max(0, len(cut) - max(1, _utf16(cut) - room + 1))]
    return cut.rstrip() + "…"


def plain_chunks(text: str, limit: int = MAX_MESSAGE_UTF16) -> list[Chunk]:
    """The same text as plain chunks, for when Telegram refuses a chunk's formatting."""
    return [Chunk(part, ()) for part, _ in telegramify_markdown.split_entities(text, [], limit)]
