"""Property-based tests (Hypothesis) of the update path: whatever JSON-shaped update arrives
(missing fields, odd types, huge numbers, lone surrogates, RTL marks, NUL, 10k-character
captions), the intake gives it exactly one outcome (jobs, a refusal, or an isolated dead letter),
stores the rest of its batch, and never lets an exception escape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botcore import texts
from botcore.clock import ManualClock
from botcore.incoming import Incoming, clean, clean_text
from botcore.intake import Outcome, UpdatePoller
from botcore.jobqueue import JobQueue
from botcore.messenger import Messenger
from botcore.notices import unstorable_notice
from botcore.routing import Decision, Planned
from botcore.sqlite_data import SqliteKeyValue
from botcore.sqlite_db import Database
from botcore.sqlite_jobs import SqliteJobStore
from botcore.telegram_api import make_bot

from .conftest import TOKEN, make_router
from .fakes import FakeTelegram

ODD_TEXT = [
    "\ud83d",
    "\udc00x",
    "\x00",
    "\u202eמשהו",
    "😀",
    "/start",
    "/cancel@test_bot",
    "@test_bot",
    " ",
    "",
]
text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(ODD_TEXT), max_size=6).map("".join),
    st.just("x" * 10_000),
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    text,
)
json_value = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)
ident = st.one_of(st.integers(min_value=-(10**12), max_value=10**12), scalar)
person = st.fixed_dictionaries(
    {"id": ident}, optional={"first_name": text, "last_name": text, "username": text, "title": text}
)
chat = st.fixed_dictionaries(
    {"id": ident, "type": st.sampled_from(["private", "group", "supergroup", "channel"]) | scalar},
    optional={"title": text},
)
entity = st.fixed_dictionaries(
    {"type": st.sampled_from(["mention", "bot_command", "text_mention"]) | scalar},
    optional={"offset": ident, "length": ident, "user": person | json_value},
)
media = st.fixed_dictionaries(
    {"file_id": text | scalar},
    optional={"duration": scalar, "file_size": scalar, "mime_type": text, "file_name": text},
)
extras = {
    "text": text | scalar,
    "caption": text,
    "entities": st.lists(entity | json_value, max_size=3) | json_value,
    "voice": media | json_value,
    "audio": media,
    "sender_chat": chat | json_value,
    "forward_origin": json_value,
    "reply_to_message": st.fixed_dictionaries({"from": person}) | json_value,
    "message_thread_id": ident,
}
plausible = st.fixed_dictionaries(  # shaped like Telegram's, with odd contents
    {
        "message_id": st.integers(min_value=1, max_value=10**9),
        "chat": st.fixed_dictionaries(
            {
                "id": st.integers(min_value=-(10**13), max_value=10**10),
                "type": st.sampled_from(["private", "private", "group", "supergroup", "channel"]),
            }
        ),
        "from": st.fixed_dictionaries(
            {"id": st.integers(min_value=1, max_value=10**10)}, optional={"first_name": text}
        ),
    },
    optional=extras,
)
anything = st.fixed_dictionaries(
    {}, optional={"message_id": ident, "chat": chat | json_value, "from": person | json_value, **extras}
)
message = st.one_of(plausible, plausible, anything, json_value)
press = st.fixed_dictionaries(  # a button press: on one of our messages, with odd contents
    {"id": text | scalar, "from": person | json_value, "message": message},
    optional={"data": text | scalar, "chat_instance": text},
)
update = st.one_of(
    st.fixed_dictionaries({"message": message}, optional={"edited_message": json_value}),
    st.fixed_dictionaries({}, optional={"edited_message": json_value}),
    st.fixed_dictionaries({"callback_query": press | json_value}),
)


class Intake:
    """The real intake, gate and router over a real SQLite file; notices go to a fake Telegram."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "bot.db"
        self.next_id = 1
        self.used: set[object] = set()  # every update id a batch carried, odd ones included

    async def start(self, per_user: int) -> None:
        self.tg = await FakeTelegram(TOKEN).start()
        self.bot = make_bot(TOKEN, self.tg.base_url)
        await self.bot.initialize()
        self.db = await Database.open(self.path)
        queue = JobQueue(SqliteJobStore(self.db), clock=ManualClock())
        clock = ManualClock()
        router = make_router(clock=clock, admin_ids=frozenset({1}), per_user=per_user, overall=50)
        self.poller = UpdatePoller(
            self.bot,
            queue,
            SqliteKeyValue(self.db),
            route=router.route,
            clock=clock,
            messenger=Messenger(self.bot),
        )

    async def stop(self) -> None:
        await self.poller.aclose()
        await self.db.close()
        await self.bot.shutdown()
        await self.tg.stop()


def jobs_by_update(path: Path) -> dict[int, list[str]]:
    """The states of the jobs each update id became (notices carry no update id)."""
    out: dict[int, list[str]] = {}
    with contextlib.closing(sqlite3.connect(path)) as raw:
        for payload, state in raw.execute("SELECT payload, state FROM jobs"):
            uid = json.loads(payload).get("update_id")  # Python's JSON: it may hold Infinity
            if isinstance(uid, int):
                out.setdefault(uid, []).append(state)
    return out


# The 10,000-character captions make Hypothesis warn that an example's repr is large; that is
# the point of them, and the repr is only for a report.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(st.tuples(update, st.booleans(), json_value), min_size=1, max_size=5))
def test_any_update_reaches_exactly_one_outcome(tmp_path: Path, batch: list[Any]) -> None:
    run = _runner(tmp_path)
    updates, fresh = [], set()
    for body, fresh_id, odd_id in batch:
        if fresh_id:  # mostly a proper, unique update id; sometimes whatever Hypothesis made
            while run.next_id in run.used:  # an earlier example's own id: its jobs are there
                run.next_id += 1
            body = {**body, "update_id": run.next_id}
            fresh.add(run.next_id)
            run.next_id += 1
        else:
            body = {**body, "update_id": odd_id}
        with contextlib.suppress(TypeError):  # an unhashable id (a list) cannot meet a fresh one
            run.used.add(body["update_id"])
        updates.append(body)
    outcomes = _loop.run_until_complete(run.poller.persist(updates))  # never raises
    assert len(outcomes) == len(updates) and all(isinstance(o, Outcome) for o in outcomes)
    jobs = jobs_by_update(run.path)
    ids = [body["update_id"] for body in updates]
    for body, outcome in zip(updates, outcomes, strict=True):
        uid = body["update_id"]
        if isinstance(uid, bool) or not isinstance(uid, int) or uid not in fresh:
            continue  # an id that could be another example's too: not checked
        if ids.count(uid) > 1:
            continue  # Hypothesis's own id hit a fresh one of this batch: both share its jobs
        states = jobs.get(uid, [])
        if outcome is Outcome.STORED:
            # A voice note's jobs are keyed by chat and message: one sent again (the same ids)
            # finds the jobs of the first and adds none.
            assert (states and "dead" not in states) or _is_voice(body), (
                f"update {uid}: stored, jobs {states}"
            )
        elif outcome is Outcome.DEAD:
            assert states == ["dead"], f"update {uid}: {outcome} but jobs {states}"
        else:
            assert not states, f"update {uid}: refused but jobs {states}"


def test_cleaning_makes_any_text_storable() -> None:
    @given(st.text(st.characters(codec=None, categories=None)))  # surrogates included
    def check(value: str) -> None:
        cleaned = clean_text(value)
        cleaned.encode("utf-8")  # SQLite's encoding never fails now
        assert clean({"k": [value]}) == {"k": [cleaned]}
        if not any("\ud800" <= c <= "\udfff" for c in value):
            assert cleaned is value  # valid text is left alone
        else:
            assert len(cleaned) <= len(value)  # a pair became one character, a lone one U+FFFD

    check()
    assert clean_text("half \ud83d and \ud83d\ude00 whole") == "half \ufffd and 😀 whole"


def _is_voice(body: dict[str, Any]) -> bool:
    message = body.get("message")
    return isinstance(message, dict) and any(k in message for k in ("voice", "audio", "video_note"))


# One event loop, database and fake Telegram for all examples of a test run (the examples share
# them; fresh update ids keep them apart).
_loop = asyncio.new_event_loop()
_intakes: dict[Path, Intake] = {}


def _runner(tmp_path: Path) -> Intake:
    if tmp_path not in _intakes:
        for old in _intakes.values():
            _loop.run_until_complete(old.stop())
        _intakes.clear()
        intake = Intake(tmp_path)
        _loop.run_until_complete(intake.start(per_user=3))
        _intakes[tmp_path] = intake
    return _intakes[tmp_path]


def teardown_module() -> None:
    for intake in _intakes.values():
        _loop.run_until_complete(intake.stop())
    _intakes.clear()
    _loop.close()


def test_an_update_that_cannot_be_routed_or_stored_is_a_dead_letter_and_its_batch_is_stored(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        db = await Database.open(tmp_path / "bot.db")
        tg = await FakeTelegram(TOKEN).start()
        bot = make_bot(TOKEN, tg.base_url)
        try:

            def route(incoming: Incoming) -> Decision:
                if incoming.text == "bug":
                    raise RuntimeError("a bug in routing")
                # A dedup key that is no text: SQLite cannot bind it, so this one cannot be stored.
                key = object() if incoming.text == "unstorable" else f"tg-update:{incoming.update_id}"
                return Decision((Planned("tg-update", key),))  # type: ignore[arg-type]

            queue = JobQueue(SqliteJobStore(db), clock=ManualClock())
            poller = UpdatePoller(
                bot,
                queue,
                SqliteKeyValue(db),
                route=route,
                clock=ManualClock(),
                unstorable_notice=unstorable_notice,
            )
            texts_ = ["fine", "bug", "also fine", "unstorable", "last"]
            batch = [
                {
                    "update_id": 100 + i,
                    "message": {"message_id": i, "chat": {"id": 7, "type": "private"}, "text": t},
                }
                for i, t in enumerate(texts_)
            ]
            outcomes = await poller.persist(batch)
            assert outcomes == [Outcome.STORED, Outcome.DEAD, Outcome.STORED, Outcome.DEAD, Outcome.STORED]
            jobs = {j.dedup_key: j for j in [await queue.get(i) for i in range(1, 10)] if j is not None}
            assert {k: j.state.value for k, j in jobs.items() if k.startswith("tg-update")} == {
                "tg-update:100": "queued",
                "tg-update:101": "dead",
                "tg-update:102": "queued",
                "tg-update:103": "dead",
                "tg-update:104": "queued",
            }
            assert "a bug in routing" in (jobs["tg-update:101"].last_error or "")
            assert "could not be stored" in (jobs["tg-update:103"].last_error or "")
            # The sender whose message was let in but could not be kept is told so (a notice job).
            notices = [j for k, j in jobs.items() if k.startswith("notice:")]
            assert [n.payload["text"] for n in notices] == [texts.UNREADABLE]
            assert notices[0].payload["reply_to"] == 3
        finally:
            await bot.shutdown()
            await tg.stop()
            await db.close()

    asyncio.run(scenario())
