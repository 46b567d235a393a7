"""Fake upstream servers for tests, on 127.0.0.1, reached by the real SDKs through their base
URLs. Each records the requests it gets and can be told to fail or to wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Scripted:
    """One scripted answer: an HTTP status with a JSON body, or a chat completion text."""

    status: int = 200
    text: str | None = None
    body: dict[str, Any] | None = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class FakeOpenAI:
    """POST /v1/chat/completions. Answers from ``script`` first (in order), then with ``reply``
    (default: "echo: <last user message>")."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[Scripted] = []
        self.reply: Callable[[dict[str, Any]], str] = lambda req: "echo: " + req["messages"][-1]["content"]
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        step = self.script.pop(0) if self.script else Scripted()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.status != 200 or step.body is not None:
            return web.json_response(
                step.body or {"error": {"message": "scripted"}}, status=step.status, headers=step.headers
            )
        text = step.text if step.text is not None else self.reply(body)
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(text.split()),
                    "total_tokens": prompt_tokens + len(text.split()),
                },
            }
        )
