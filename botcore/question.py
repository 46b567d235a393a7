"""One question to the model, as the chat service asks it: which model, the persona's prompt,
the history, the user's turn (its text and images), streamed or not; and what a call that
stopped had cost. Holds no state between questions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botcore.completion import Completion
from botcore.llm import ChatModel
from botcore.models import Turn, Usage
from botcore.streaming import StreamingReply


@dataclass(frozen=True, slots=True)
class Question:
    """The user's turn: its text and its images (file ids, then data: URLs once loaded)."""

    text: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ask:
    """One question to the model: which model, the persona's prompt, the history, the text."""

    model: ChatModel
    name: str
    prompt: str
    history: list[Turn]
    question: Question

    @property
    def turns(self) -> list[Turn]:
        return [*self.history, Turn("user", self.question.text, self.question.images)]

    async def complete(self, live: StreamingReply | None, first_token: Callable[[], None]) -> Completion:
        if live is None:
            return await self.model.complete(self.prompt, self.turns, model=self.name)
        return await self.model.stream(
            self.prompt, self.turns, live.update, on_first_token=first_token, model=self.name
        )

    def partial_usage(self, live: StreamingReply | None) -> Usage | None:
        """An estimate of what a streamed call that stopped had cost, from the text it showed."""
        if live is None or not live.text:
            return None
        return self.model.estimate(self.prompt, self.turns, live.text, model=self.name)
