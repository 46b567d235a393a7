"""The contract of ``storage.ChatPrefsStore`` (each chat's /model, /persona and /settings
choices), run against every backend in ``storage_backends.BACKENDS``."""

from __future__ import annotations

from pathlib import Path

from botcore.models import ChatPrefs
from botcore.storage import Storage

from .storage_backends import Opener, open_backend_fixture, storage_fixture  # noqa: F401

T0 = 1_000.0


async def test_a_chat_that_chose_nothing_has_the_defaults(storage: Storage) -> None:
    assert await storage.prefs.get(1) == ChatPrefs()
    assert await storage.prefs.get(-100123) == ChatPrefs()


async def test_choices_are_kept_per_chat_and_replaced_whole(storage: Storage) -> None:
    mine = ChatPrefs(model="qwen3:8b", persona="coder", stream=False, memory=True, voice="auto")
    await storage.prefs.put(1, mine, now=T0)
    await storage.prefs.put(2, ChatPrefs(persona="translator"), now=T0)
    assert await storage.prefs.get(1) == mine
    assert await storage.prefs.get(2) == ChatPrefs(persona="translator")
    changed = ChatPrefs(model="gpt-5", stream=True, memory=False)  # persona back to the default
    await storage.prefs.put(1, changed, now=T0 + 1)
    assert await storage.prefs.get(1) == changed
    assert await storage.prefs.get(2) == ChatPrefs(persona="translator")


async def test_all_defaults_forgets_the_chat(storage: Storage) -> None:
    await storage.prefs.put(1, ChatPrefs(model="m"), now=T0)
    await storage.prefs.put(1, ChatPrefs(), now=T0 + 1)
    assert await storage.prefs.get(1) == ChatPrefs()
    await storage.prefs.put(1, ChatPrefs(), now=T0 + 2)  # forgetting twice is no error
    assert await storage.prefs.get(1) == ChatPrefs()


async def test_any_text_is_kept_as_it_was_chosen(storage: Storage) -> None:
    odd = ChatPrefs(model="accounts/fïreworks/models/🦙 '; DROP TABLE chat_prefs; --", persona="x" * 500)
    await storage.prefs.put(7, odd, now=T0)
    assert await storage.prefs.get(7) == odd


async def test_choices_survive_a_restart(tmp_path: Path, open_backend: Opener) -> None:
    first = await open_backend(tmp_path)
    try:
        await first.prefs.put(5, ChatPrefs(model="deepseek-r1", memory=False), now=T0)
    finally:
        await first.close()
    again = await open_backend(tmp_path)
    try:
        assert await again.prefs.get(5) == ChatPrefs(model="deepseek-r1", memory=False)
    finally:
        await again.close()
