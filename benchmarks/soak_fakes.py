"""The soak benchmark's side of the fake servers (``benchmarks.soak``): the fakes of the tests
with random transient faults and bounded records, and the ledger that matches every reply the
bot sends to the message it answers. Nothing here starts or measures the bot."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from benchmarks.e2e import TOKEN
from botcore import texts
from botcore.errors import Cause
from tests.fakes import Failure, FakeOpenAI, FakeTelegram

FINAL_NOTICES = frozenset({texts.FAILED, *(texts.failed(cause) for cause in Cause)})
WAIT_NOTICES = frozenset({texts.OUTAGE, texts.RATE_LIMITED})


# --- What the bot said, matched to what the users sent ----------------------------------------


class Ledger:
    """Every incoming message with its expected answer, and every reply the bot sent or edited,
    attributed to the message it replies to (Telegram's reply_parameters), or by its text."""

    def __init__(self) -> None:
        self.expected: dict[int, tuple[int, str]] = {}  # update_id -> (chat_id, answer)
        self.sent_at: dict[int, float] = {}
        self.by_answer: dict[str, int] = {}
        self.reply_of: dict[int, int] = {}  # bot message_id -> update_id it answers
        self.text_of: dict[int, str] = {}  # bot message_id -> its latest text
        self.settled_at: dict[int, float] = {}  # update_id -> first answer or failure notice
        self.settled_by: collections.Counter[int] = collections.Counter()  # bot generation
        self.wrong_chat = 0
        self.unattributed = 0
        self.generation = 1  # which bot process is running (for "answered by")
        self.all_settled = asyncio.Event()  # set whenever every message so far has its reply

    def add(self, update_id: int, chat_id: int, text: str) -> None:
        answer = "echo: " + text
        self.expected[update_id] = (chat_id, answer)
        self.by_answer[answer] = update_id
        self.sent_at[update_id] = time.monotonic()

    def sent(self, params: dict[str, Any], message_id: int) -> None:
        text = str(params.get("text", ""))
        reply = params.get("reply_parameters")
        update_id = reply.get("message_id") if isinstance(reply, dict) else None
        if update_id not in self.expected:
            update_id = self.by_answer.get(text)
        if update_id is None:
            self.unattributed += 1
            return
        if int(params["chat_id"]) != self.expected[update_id][0]:
            self.wrong_chat += 1
        self.reply_of[message_id] = update_id
        self._text(message_id, update_id, text)

    def edited(self, params: dict[str, Any]) -> None:
        message_id = int(params["message_id"])
        if message_id in self.reply_of:
            self._text(message_id, self.reply_of[message_id], str(params.get("text", "")))

    def _text(self, message_id: int, update_id: int, text: str) -> None:
        self.text_of[message_id] = text
        if update_id not in self.settled_at and (
            text == self.expected[update_id][1] or text in FINAL_NOTICES
        ):
            self.settled_at[update_id] = time.monotonic()
            self.settled_by[self.generation] += 1
            if not self.unsettled():
                self.all_settled.set()

    def unsettled(self) -> int:
        return len(self.expected) - len(self.settled_at)

    def outcome(self, deleted: set[tuple[int, int]]) -> Outcome:
        """Per message: its replies still on screen, each by its latest text."""
        replies: dict[int, list[str]] = collections.defaultdict(list)
        for message_id, update_id in self.reply_of.items():
            if (self.expected[update_id][0], message_id) not in deleted:
                replies[update_id].append(self.text_of[message_id])
        out = Outcome(wrong_chat=self.wrong_chat, unattributed=self.unattributed, settled_by=self.settled_by)
        for update_id, (_, answer) in self.expected.items():
            said = replies.get(update_id, [])
            answers = sum(text == answer for text in said)
            out.wait_notices += sum(text in WAIT_NOTICES for text in said)
            out.other += sum(text != answer and text not in WAIT_NOTICES | FINAL_NOTICES for text in said)
            if answers:
                out.answered += 1
                if answers > 1:
                    out.duplicates.append(update_id)
            elif any(text in FINAL_NOTICES for text in said):
                out.failed.append(update_id)
            else:
                out.lost.append(update_id)
        out.latencies = sorted(self.settled_at[u] - self.sent_at[u] for u in self.settled_at)
        return out


@dataclass
class Outcome:
    answered: int = 0
    failed: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    wait_notices: int = 0
    other: int = 0  # replies that are neither the answer nor a notice we know
    wrong_chat: int = 0
    unattributed: int = 0
    latencies: list[float] = field(default_factory=list)
    settled_by: collections.Counter[int] = field(default_factory=collections.Counter)  # generation


# --- The fakes, with random transient faults and bounded records -----------------------------


class SoakTelegram(FakeTelegram):
    """Fails a fraction of ``sendMessage`` calls (502, or 429 with retry_after 1) through the
    fake's own ``fail`` list; feeds the ledger; keeps its call records bounded."""

    def __init__(self, ledger: Ledger, fault_rate: float, rng: random.Random) -> None:
        super().__init__(TOKEN)
        self.ledger = ledger
        self.fault_rate = fault_rate
        self.rng = rng
        self.faults: collections.Counter[int] = collections.Counter()
        self.polls = 0  # getUpdates calls received

    def faults_served(self) -> collections.Counter[int]:
        """Injected and actually answered (a failure still queued at the end was not)."""
        served = collections.Counter(self.faults)
        for failure in self.fail.get("sendMessage", []):
            served[failure.code] -= 1
        return served

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["method"] == "sendMessage" and self.rng.random() < self.fault_rate:
            failure = self.rng.choice(
                [Failure(502, "Bad Gateway"), Failure(429, "Too Many Requests: retry after 1", 1)]
            )
            self.fail.setdefault("sendMessage", []).append(failure)
            self.faults[failure.code] += 1
        try:
            return await super()._dispatch(request)
        except ConnectionResetError:  # the bot was killed mid-request
            return web.Response(status=499)
        finally:
            if len(self.calls) > 20_000:  # nothing here reads old calls: keep memory flat
                del self.calls[:10_000], self.call_times[:10_000]
            if len(self.sent) > 20_000:
                del self.sent[:10_000]

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        self.polls += 1
        return await super()._m_getUpdates(params)

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        result = await super()._m_sendMessage(params)
        self.ledger.sent(params, result["message_id"])
        return result

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        result = await super()._m_editMessageText(params)
        self.ledger.edited(params)
        return result


class SoakOpenAI(FakeOpenAI):
    """Answers a fraction of calls with 500, 503 or 429 (Retry-After: 1), delays another
    fraction, and checks that the memory sent along is the same chat's."""

    def __init__(self, fault_rate: float, slow_rate: float, slow_s: float, rng: random.Random) -> None:
        super().__init__()
        self.fault_rate, self.slow_rate, self.slow_s, self.rng = fault_rate, slow_rate, slow_s, rng
        self.faults: collections.Counter[str] = collections.Counter()
        self.calls = 0
        self.with_history = 0
        self.foreign_history = 0  # a turn of another user's conversation in this request

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        try:
            body = await request.json()  # aiohttp keeps the body: the fake reads it again
        except ConnectionResetError:  # the bot was killed mid-request
            return web.Response(status=499)
        self._check_history(body["messages"])
        roll = self.rng.random()
        if roll < self.fault_rate:
            status = self.rng.choice((500, 503, 429))
            self.faults[str(status)] += 1
            headers = {"Retry-After": "1"} if status == 429 else {}
            return web.json_response({"error": {"message": "injected"}}, status=status, headers=headers)
        if roll < self.fault_rate + self.slow_rate:
            self.faults["slow"] += 1
            await asyncio.sleep(self.slow_s)
        try:
            return await super()._completions(request)
        except ConnectionResetError:  # the bot was killed mid-answer
            return web.Response(status=499)
        finally:
            if len(self.requests) > 2_000:  # whole request bodies: keep only the latest
                del self.requests[:1_000], self.headers[:1_000]

    def _check_history(self, messages: list[dict[str, Any]]) -> None:
        turns = [m["content"] for m in messages if m["role"] != "system"]
        if len(turns) > 1:
            self.with_history += 1
        user = turns[-1].split()[0]  # "u<id>"
        for turn in turns[:-1]:
            words = turn.split()
            said_by = words[1] if words[:1] == ["echo:"] else words[0]
            if said_by != user:
                self.foreign_history += 1
                break
