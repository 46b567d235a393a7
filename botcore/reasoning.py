"""A reasoning model's thinking, told apart from its answer. Servers send thinking in a
``reasoning_content`` or ``reasoning`` field (the adapter reads those), or inside the content
between ``<think>`` and ``</think>``, which is what this module splits: in a stream, where a tag
may be cut across pieces, and when a model leaves out the opening tag (its chat template put
``<think>`` in the prompt) and sends only ``</think>``. A leaf: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

OPEN, CLOSE = "<think>", "</think>"


@dataclass(frozen=True, slots=True)
class Split:
    reasoning: str  # the thinking, without its tags
    answer: str  # what the user is to read
    thinking: bool  # still inside the thinking (a stream that has not closed it yet)


def split_thinking(
    content: str, *, final: bool, opens_in_thought: bool = False, cut_short: bool = False
) -> Split:
    """``content`` so far (``final``: all of it) split into thinking and answer. The text a
    stream has sent so far never shows a tag cut in half, nor thinking as answer, once the
    model's habit is known: ``opens_in_thought`` says it leaves out the opening tag, so its
    content starts as thinking until ``</think>``; if such content ends ``cut_short`` (out of
    tokens) before that tag, all of it was thinking."""
    start = len(content) - len(content.lstrip())
    if content.startswith(OPEN, start):
        return _after_open(content[start + len(OPEN) :], final=final)
    close = content.find(CLOSE)
    if close >= 0:  # thinking whose opening tag the model left out
        return Split(content[:close].strip(), content[close + len(CLOSE) :].lstrip(), False)
    if final and opens_in_thought and cut_short:
        return Split(content.strip(), "", False)
    if final:
        return Split("", content.strip(), False)
    if opens_in_thought:
        return Split(content.strip(), "", True)
    if OPEN.startswith(content[start:]) and content[start:]:
        return Split("", "", False)  # maybe the start of "<think>": wait for the next piece
    return Split("", _without_cut_tag(content), False)


def _after_open(rest: str, *, final: bool) -> Split:
    close = rest.find(CLOSE)
    if close >= 0:
        return Split(rest[:close].strip(), rest[close + len(CLOSE) :].lstrip(), False)
    if final:  # never closed (out of tokens while thinking): all of it was thinking
        return Split(rest.strip(), "", False)
    return Split(_without_cut_tag(rest).strip(), "", True)


def _without_cut_tag(text: str) -> str:
    """``text`` without a tail that may be the first part of ``</think>`` or ``<think>``."""
    for tag in (CLOSE, OPEN):
        for length in range(min(len(tag) - 1, len(text)), 0, -1):
            if text.endswith(tag[:length]):
                return text[:-length]
    return text
