"""Telegram's side of a webhook, for the fake Bot API server: posts ``FakeTelegram.pending``
updates to the address ``setWebhook`` registered, with its secret header, the way Telegram does:
one chat's updates one after the other (the next only once the last was answered 200), other
chats' at the same time, at most ``max_connections`` at once, an update retried until it is
answered 200. ``targets`` stand in for a reverse proxy: the registered URL's path on each of
these base URLs in turn, the next one tried when one cannot be reached or answers 5xx."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .fakes import FakeTelegram


def chat_of(update: dict[str, Any]) -> int | None:
    message = update.get("message") or (update.get("callback_query") or {}).get("message") or {}
    return (message.get("chat") or {}).get("id")


class Delivery:
    def __init__(self, telegram: FakeTelegram, targets: list[str], *, retry_s: float = 0.3) -> None:
        self.telegram = telegram
        self.targets = targets
        self.retry_s = retry_s
        self.answers: list[tuple[int, int]] = []  # (update_id, status) of every post answered
        self._next_target = 0
        self._busy: set[Any] = set()  # chats with a post in flight
        self._posting: set[int] = set()  # update ids in flight
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Delivery:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None and self._session is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._session.close()

    async def _run(self) -> None:
        posts: set[asyncio.Task[None]] = set()
        while True:
            hook = self.telegram.webhook
            if hook is not None:
                room = int(hook.get("max_connections") or 40) - len(posts)
                for update in list(self.telegram.pending):
                    chat = chat_of(update)
                    if room <= 0:
                        break
                    if update["update_id"] in self._posting or chat in self._busy:
                        continue
                    self._busy.add(chat)
                    self._posting.add(update["update_id"])
                    post = asyncio.create_task(self._deliver(hook, update, chat))
                    posts.add(post)
                    post.add_done_callback(posts.discard)
                    room -= 1
            waiting = asyncio.create_task(self.telegram.next_update())
            await asyncio.wait([waiting, *posts], timeout=self.retry_s, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()

    async def _deliver(self, hook: dict[str, Any], update: dict[str, Any], chat: Any) -> None:
        try:
            if await self._post(hook, update):
                self.telegram.pending = [u for u in self.telegram.pending if u is not update]
            else:
                await asyncio.sleep(self.retry_s)  # Telegram backs off before trying again
        finally:
            self._busy.discard(chat)
            self._posting.discard(update["update_id"])

    async def _post(self, hook: dict[str, Any], update: dict[str, Any]) -> bool:
        assert self._session is not None
        path = urlsplit(hook["url"]).path
        headers = {"X-Telegram-Bot-Api-Secret-Token": str(hook.get("secret_token", ""))}
        for _ in range(len(self.targets)):
            target = self.targets[self._next_target % len(self.targets)]
            self._next_target += 1
            try:
                async with self._session.post(target + path, json=update, headers=headers) as response:
                    self.answers.append((update["update_id"], response.status))
                    if response.status == 200:
                        return True
                    if response.status < 500:
                        return False
            except (TimeoutError, aiohttp.ClientError):
                continue  # a process that is down: the proxy tries the next one
        return False
