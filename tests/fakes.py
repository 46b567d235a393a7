"""Fake upstream servers for tests, on 127.0.0.1, reached by the real SDKs through their base
URLs. Each records the requests it gets and can be told to fail or to wait."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web


@dataclass
class Scripted:
    """One scripted answer: an HTTP status with a JSON body, or a chat completion text."""

    status: int = 200
    text: str | None = None
    body: dict[str, Any] | None = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: str | None = None  # a body that is not JSON at all (e.g. a web page)
    # Streaming (a request with "stream": true): the text goes out in pieces of this many
    # characters, this far apart; cut_after breaks the connection after that many pieces.
    piece_chars: int = 20
    piece_delay_s: float = 0.0
    cut_after: int | None = None
    clean_cut: bool = False  # end the response properly after cut_after pieces, with no finish
    no_stream: bool = False  # answer a streaming request with plain JSON, as some servers do
    finish_reason: str = "stop"  # e.g. "content_filter", or "length" (a reasoning model out of tokens)
    # A reasoning model's thinking before the text, in one of the shapes servers use: a
    # "reasoning_content" field (DeepSeek, llama.cpp), a "reasoning" field (Ollama, OpenRouter),
    # "<think>…</think>" in the content, or "think-no-open": only "</think>" (the template opened it).
    reasoning: str | None = None
    reasoning_shape: str = "reasoning_content"
    # A 200 stream that turns into an error (OpenRouter's way): after this many pieces, an event
    # {"error": stream_error} in place of the rest. keep_alive sends ": comment" lines between pieces.
    stream_error: dict[str, Any] | None = None
    error_after: int = 0
    keep_alive: bool = False
    send_usage: bool = True  # False: a server that never sends the usage chunk

    def content(self, text: str) -> str:
        """The content as the server sends it: with the thinking inside, for the tag shapes."""
        if self.reasoning is None or self.reasoning_shape not in ("think", "think-no-open"):
            return text
        opening = "<think>" if self.reasoning_shape == "think" else ""
        return f"{opening}{self.reasoning}</think>\n\n{text}"

    def field(self) -> dict[str, str]:
        """The thinking as a field beside the content, for the field shapes."""
        if self.reasoning is None or self.reasoning_shape not in ("reasoning_content", "reasoning"):
            return {}
        return {self.reasoning_shape: self.reasoning}


class FakeOpenAI:
    """POST /v1/chat/completions. Answers from ``script`` first (in order), then with ``reply``
    (default: "echo: <last user message>"). GET /v1/models lists ``models`` (None: a server
    without that endpoint, 404); a completion asking for a model in ``missing_models`` gets
    OpenAI's 404 model_not_found."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[Scripted] = []
        self.by_prompt: dict[str, Scripted] = {}  # answers chosen by the last user message instead
        self.by_marker: dict[str, Scripted] = {}  # … or by a word it contains
        # Request parameters this server refuses, with the 400 error it answers them with.
        self.refuses: dict[str, dict[str, Any]] = {}
        self.in_flight = 0  # chat completions being answered now, and the most there ever were
        self.max_in_flight = 0
        self.transcriptions: list[dict[str, Any]] = []  # form fields; "file" is (name, bytes)
        # POST /v1/images/generations: each request's body; answers with ``picture`` (a real PNG),
        # as b64_json, or as a URL served here when ``picture_as_url``; a prompt containing
        # ``refused_marker`` gets OpenAI's 400 content_policy_violation.
        self.image_requests: list[dict[str, Any]] = []
        # POST /v1/audio/speech: each request's body; answers with ``speech`` (real OGG/Opus).
        self.speech_requests: list[dict[str, Any]] = []
        self.speech = (Path(__file__).parent / "fixtures" / "capital.ogg").read_bytes()
        self.speech_down = False  # True: 503
        self.picture = (Path(__file__).parent / "fixtures" / "tiny.png").read_bytes()
        self.picture_as_url = False
        self.refused_marker = "forbidden"
        self.stt_script: list[Scripted] = []
        self.transcript: Callable[[bytes], str] = lambda audio: f"heard {len(audio)} bytes"
        self.reply: Callable[[dict[str, Any]], str] = lambda req: "echo: " + last_text(req)
        self.models: list[str] | None = ["fake-model"]  # GET /v1/models; None: no such endpoint (404)
        self.model_list_calls = 0
        self.missing_models: set[str] = set()  # completions asking for these: 404 model_not_found
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.base_url = ""

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/files/picture.png", self._picture)
        app.router.add_post("/v1/audio/speech", self._speech)
        app.router.add_get("/v1/models", self._models)
        self._runner, root = await _serve(app)
        self.base_url = f"{root}/v1"
        return self

    async def stop(self) -> None:
        self._closing.set()  # ends scripted delays at once
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stream(
        self, request: web.Request, body: dict[str, Any], step: Scripted, text: str, usage: dict[str, int]
    ) -> web.StreamResponse:
        """Server-sent events as OpenAI sends them: content deltas, a finish, usage, [DONE]."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk"}
        base.update(created=int(time.time()), model=body["model"])

        async def event(data: Any) -> None:
            await response.write(f"data: {json.dumps(data)}\n\n".encode())

        content = step.content(text)
        pieces = [content[i : i + step.piece_chars] for i in range(0, len(content), step.piece_chars)]
        for name, thought in step.field().items():  # thinking first, in pieces of its own
            for start in range(0, len(thought), step.piece_chars):
                delta = {name: thought[start : start + step.piece_chars]}
                await event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        for index, piece in enumerate(pieces):
            if step.keep_alive:
                await response.write(b": OPENROUTER PROCESSING\n\n")
            if step.stream_error is not None and index >= step.error_after:
                error = {
                    **base,
                    "error": step.stream_error,
                    "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
                }
                await event(error)
                await response.write(b"data: [DONE]\n\n")
                return response
            if step.cut_after is not None and index >= step.cut_after:
                if step.clean_cut:
                    return response  # a complete HTTP response that ends mid-answer
                assert request.transport is not None
                request.transport.close()  # the connection breaks mid-answer
                return response
            delta = {"content": piece, **({"role": "assistant"} if index == 0 else {})}
            await event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            if step.piece_delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), step.piece_delay_s)
        await event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": step.finish_reason}]})
        if (body.get("stream_options") or {}).get("include_usage") and step.send_usage:
            await event({**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _models(self, request: web.Request) -> web.Response:
        self.model_list_calls += 1
        if self.models is None:  # as servers without the endpoint answer
            error = {"message": "Not Found", "type": "invalid_request_error", "code": None}
            return web.json_response({"error": error}, status=404)
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "fake"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _images(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.image_requests.append(body)
        if self.refused_marker in str(body.get("prompt", "")):
            error = {
                "message": "Your request was rejected as a result of our safety system.",
                "type": "invalid_request_error",
                "param": None,
                "code": "content_policy_violation",
            }
            return web.json_response({"error": error}, status=400)
        if self.picture_as_url:
            item = {"url": f"{self.base_url.removesuffix('/v1')}/files/picture.png"}
        else:
            item = {"b64_json": base64.b64encode(self.picture).decode()}
        return web.json_response({"created": 0, "data": [item]})

    async def _speech(self, request: web.Request) -> web.Response:
        self.speech_requests.append(await request.json())
        if self.speech_down:
            return web.json_response({"error": {"message": "down", "type": "server_error"}}, status=503)
        return web.Response(body=self.speech, content_type="audio/ogg")

    async def _picture(self, request: web.Request) -> web.Response:
        return web.Response(body=self.picture, content_type="image/png")

    async def _transcriptions(self, request: web.Request) -> web.Response:
        fields = await _read_multipart(request)
        self.transcriptions.append(fields)
        step = self.stt_script.pop(0) if self.stt_script else Scripted()
        if step.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), step.delay_s)
        if step.status != 200 or step.body is not None:
            return web.json_response(
                step.body or {"error": {"message": "scripted"}}, status=step.status, headers=step.headers
            )
        audio = fields["file"][1]
        return web.json_response({"text": step.text if step.text is not None else self.transcript(audio)})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if body.get("model") in self.missing_models:  # OpenAI's answer, stream or not
            error = {
                "message": f"The model `{body['model']}` does not exist",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            }
            return web.json_response({"error": error}, status=404)
        refused = [error for name, error in self.refuses.items() if name in body]
        if refused:
            return web.json_response({"error": refused[0]}, status=400)
        prompt = last_text(body)
        marked = [step for marker, step in self.by_marker.items() if marker in prompt]
        if prompt in self.by_prompt:
            step = self.by_prompt[prompt]
        elif marked:
            step = marked[0]
        else:
            step = self.script.pop(0) if self.script else Scripted()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, body, step)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, body: dict[str, Any], step: Scripted) -> web.StreamResponse:
        if step.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), step.delay_s)
        if step.raw is not None:
            return web.Response(text=step.raw, status=step.status, content_type="text/html")
        if step.status != 200 or step.body is not None:
            return web.json_response(
                step.body or {"error": {"message": "scripted"}}, status=step.status, headers=step.headers
            )
        text = step.text if step.text is not None else self.reply(body)
        prompt_tokens = sum(len(_text_of(m["content"]).split()) for m in body["messages"])
        written = len(text.split()) + len((step.reasoning or "").split())  # thinking is billed too
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": written,
            "total_tokens": prompt_tokens + written,
        }
        if body.get("stream") and not step.no_stream:
            return await self._stream(request, body, step, text, usage)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": step.finish_reason,
                        "message": {"role": "assistant", "content": step.content(text), **step.field()},
                    }
                ],
                **({"usage": usage} if step.send_usage else {}),
            }
        )


@dataclass
class Failure:
    """Answer the next call of a method with a Bot API error instead of doing it."""

    code: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None


class _Refused(Exception):
    """Raised by a method of FakeTelegram: the call is answered with this Bot API error."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class FakeTelegram:
    """A Bot API server: ``/bot<token>/<method>``. Tests push updates with ``add_message`` (and
    button presses with ``add_press``); ``getUpdates`` long-polls and treats ``offset`` as
    Telegram does (it confirms every update below it). Sent and edited messages are recorded in
    ``sent`` (with their inline keyboards); every call in ``calls``."""

    BOT_USER: ClassVar[dict[str, Any]] = {
        "id": 4242,
        "is_bot": True,
        "first_name": "TestBot",
        "username": "test_bot",
    }

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.call_times: list[float] = []  # time.monotonic() of each entry of ``calls``
        self.down = False  # while True, every call gets 502 Bad Gateway (Telegram is down)
        self.sent: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # updates not yet confirmed
        self.confirmed_below = 0  # the highest offset a getUpdates call has sent
        self.fail: dict[str, list[Failure]] = {}
        # Seconds to hold the next calls of a method before doing them. A call whose client has
        # gone away meanwhile (killed) is dropped, as a request that never reached Telegram.
        self.delay: dict[str, list[float]] = {}
        # Called with the offset of a getUpdates call, before the updates below it are dropped.
        self.on_confirm: Callable[[int], None] | None = None
        # Called with each sent or edited message as it is recorded.
        self.on_send: Callable[[dict[str, Any]], None] | None = None
        self.files: dict[str, bytes] = {}  # file_id -> content, served by getFile and /file/
        self.downloads: list[str] = []  # file paths fetched
        self.local_dir: Path | None = None  # set: behave like a Bot API server run with --local
        self.deleted: set[tuple[int, int]] = set()  # (chat_id, message_id) of deleted messages
        self.photos: list[dict[str, Any]] = []  # sendPhoto calls: chat_id, message_id, caption, data
        self.reactions: list[tuple[int, int, str | None]] = []  # setMessageReaction calls
        self.no_reactions: set[int] = set()  # chats that refuse reactions
        # sendMessageDraft calls: chat_id, draft_id, text; refused outside private chats, and
        # unknown (404, as an older self-hosted Bot API server answers) while ``no_drafts``.
        self.drafts: list[dict[str, Any]] = []
        self.no_drafts = False
        self.on_draft: Callable[[dict[str, Any]], None] | None = None
        self.documents: list[dict[str, Any]] = []  # sendDocument calls: chat_id, filename, caption, data
        self.voices: list[dict[str, Any]] = []  # sendVoice / sendAudio calls: chat_id, as, data
        self.answered: list[dict[str, Any]] = []  # params of each accepted answerCallbackQuery
        self.admins: dict[int, set[int]] = {}  # chat id -> user ids of its administrators
        self.creators: dict[int, int] = {}  # chat id -> user id of its creator
        self.member_checks = 0  # getChatMember calls
        # setWebhook's parameters while a webhook is set (getUpdates then answers 409, as Telegram
        # does); deliveries are made by ``tests.webhook_delivery.Delivery``.
        self.webhook: dict[str, Any] | None = None
        self._queries: set[str] = set()  # callback query ids sent and not yet answered
        self._next_update_id = 1000
        self._next_message_id = 1
        self._new_update = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner, self.base_url = await _serve(app)
        return self

    async def stop(self) -> None:
        self._closing = True
        self._new_update.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def add_message(
        self,
        chat_id: int,
        text: str | None,
        *,
        user_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
        extra: dict[str, Any] | None = None,
        language_code: str | None = None,
    ) -> int:
        """Queue an incoming message (``text`` None: a non-text one, e.g. with ``extra={"sticker":
        …}``); returns its update_id. ``language_code``: the sender's app language ("es")."""
        update_id = self._next_update_id
        self._next_update_id += 1
        user: dict[str, Any] = {"id": user_id or chat_id, "is_bot": False, "first_name": first_name}
        if language_code is not None:
            user["language_code"] = language_code
        message: dict[str, Any] = {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type, "first_name": first_name},
            "from": user,
            **(extra or {}),
        }
        if text is not None:
            message["text"] = text
            if entities := _entities(text):
                message["entities"] = entities
        caption = message.get("caption")
        if isinstance(caption, str) and (entities := _entities(caption)):
            message["caption_entities"] = entities
        self.pending.append({"update_id": update_id, "message": message})
        self._new_update.set()
        return update_id

    def add_photo(
        self,
        chat_id: int,
        image: bytes,
        *,
        caption: str | None = None,
        sizes: tuple[tuple[int, int], ...] = ((90, 68), (320, 240), (1280, 960)),
        album: str | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue a photo, in the sizes Telegram keeps of it (each its own file, all ``image``
        here), with a caption and as part of an album if given; returns its update_id."""
        photo = []
        for width, height in sizes:
            file_id = f"photo-{self._next_update_id}-{width}"
            self.files[file_id] = image
            photo.append(
                {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "width": width,
                    "height": height,
                    "file_size": len(image),
                }
            )
        extra: dict[str, Any] = {"photo": photo}
        if caption is not None:
            extra["caption"] = caption
        if album is not None:
            extra["media_group_id"] = album
        return self.add_message(chat_id, None, extra={**extra, **kwargs.pop("extra", {})}, **kwargs)

    def add_document(
        self,
        chat_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        file_size: int | None = None,
        **kwargs: Any,
    ) -> int:
        """Queue a document (its declared ``file_size`` may differ from its bytes)."""
        file_id = f"doc-{self._next_update_id}"
        self.files[file_id] = data
        document = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data) if file_size is None else file_size,
        }
        extra: dict[str, Any] = {"document": document}
        if caption is not None:
            extra["caption"] = caption
        return self.add_message(chat_id, None, extra=extra, **kwargs)

    def add_press(
        self,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        user_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ada",
    ) -> int:
        """Queue a press of an inline-keyboard button (callback ``data``) under one of the bot's
        messages, as the callback_query update Telegram sends; returns its update_id."""
        update_id = self._next_update_id
        self._next_update_id += 1
        query_id = f"{4_200_000_000_000 + update_id}"  # Telegram's ids are long numeric strings
        self._queries.add(query_id)
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
        else:
            chat["title"] = "Test group"
        latest = self._latest(chat_id, message_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": self.BOT_USER,
            "text": latest["text"] if latest is not None else "menu",
        }
        if latest is not None and latest["reply_markup"] is not None:
            message["reply_markup"] = latest["reply_markup"]
        query = {
            "id": query_id,
            "from": {"id": user_id or chat_id, "is_bot": False, "first_name": first_name},
            "chat_instance": f"{-7_000_000_000 - chat_id}",
            "data": data,
            "message": message,
        }
        self.pending.append({"update_id": update_id, "callback_query": query})
        self._new_update.set()
        return update_id

    def add_voice(
        self,
        chat_id: int,
        audio: bytes,
        *,
        duration: int = 3,
        kind: str = "voice",
        file_size: int | None = None,
    ) -> int:
        """Queue an incoming voice note (or ``kind="audio"`` / ``"video_note"``) whose file is ``audio``."""
        file_id = f"file-{self._next_update_id}"
        self.files[file_id] = audio
        media: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "duration": duration,
            "file_size": len(audio) if file_size is None else file_size,
        }
        if kind == "voice":
            media["mime_type"] = "audio/ogg"
        elif kind == "audio":
            media.update(mime_type="audio/mpeg", file_name="song.mp3")
        else:
            media["length"] = 240
        return self.add_message(chat_id, None, extra={kind: media})

    async def next_update(self) -> None:
        """Wait until an update is added (or the server closes)."""
        self._new_update.clear()
        await self._new_update.wait()

    def texts_to(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == chat_id]

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params = _decode_form(await request.post()) if request.can_read_body else {}
        self.calls.append((method, params))
        self.call_times.append(time.monotonic())
        if self.down:
            return web.json_response(
                {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
            )
        failures = self.fail.get(method)
        if failures:
            failure = failures.pop(0)
            body: dict[str, Any] = {
                "ok": False,
                "error_code": failure.code,
                "description": failure.description,
            }
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            return web.json_response(body, status=failure.code)
        delays = self.delay.get(method)
        if delays:
            pause = delays.pop(0)
            deadline = asyncio.get_running_loop().time() + pause
            while asyncio.get_running_loop().time() < deadline and not self._closing:
                if request.transport is None or request.transport.is_closing():
                    return web.Response(status=499)
                await asyncio.sleep(0.02)
        handler = getattr(self, f"_m_{method}", None)
        try:
            result = await handler(params) if handler else True
        except _Refused as refused:
            body = {"ok": False, "error_code": refused.code, "description": refused.description}
            return web.json_response(body, status=refused.code)
        return web.json_response({"ok": True, "result": result})

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = str(params["file_id"])
        if file_id not in self.files:
            return None
        path = f"voice/{file_id}.oga"
        if self.local_dir is not None:  # a server started with --local: an absolute path on disk
            local = self.local_dir / f"{file_id}.oga"
            local.write_bytes(self.files[file_id])
            path = str(local)
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": path,
        }

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        self.downloads.append(path)
        file_id = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self.BOT_USER

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        self._new_update.set()
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        if self.webhook is not None:
            raise _Refused(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        if offset:
            if self.on_confirm is not None:
                self.on_confirm(offset)
            self.confirmed_below = max(self.confirmed_below, offset)
            self.pending = [u for u in self.pending if u["update_id"] >= offset]
        timeout = float(params.get("timeout") or 0)
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.pending and not self._closing and asyncio.get_running_loop().time() < deadline:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), deadline - asyncio.get_running_loop().time())
        limit = int(params.get("limit") or 100)
        return self.pending[:limit]

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        return self._record(params, edited=False)

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        latest = self._latest(int(params["chat_id"]), int(params["message_id"]))
        if (
            latest is not None
            and latest["text"] == params.get("text", "")
            and latest["entities"] == params.get("entities")
            and latest["parse_mode"] == params.get("parse_mode")
            and latest["reply_markup"] == _markup(params)
        ):
            raise _Refused(400, NOT_MODIFIED)
        return self._record(params, edited=True)

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        latest = self._latest(chat_id, message_id)
        if latest is not None and latest["reply_markup"] == _markup(params):
            raise _Refused(400, NOT_MODIFIED)
        keep = ("text", "entities", "parse_mode")
        kept = {name: latest[name] for name in keep} if latest is not None else {}
        return self._record({**params, **kept}, edited=True)

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id"))
        if query_id not in self._queries:  # unknown, or answered already
            raise _Refused(400, QUERY_TOO_OLD)
        self._queries.discard(query_id)
        self.answered.append({**params, "callback_query_id": query_id})  # the form made it a number
        return True

    async def _m_getChatMember(self, params: dict[str, Any]) -> Any:
        self.member_checks += 1
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        user = (
            self.BOT_USER
            if user_id == self.BOT_USER["id"]
            else {"id": user_id, "is_bot": False, "first_name": f"User {user_id}"}
        )
        if self.creators.get(chat_id) == user_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in self.admins.get(chat_id, set()):
            rights = (
                "can_manage_chat can_delete_messages can_manage_video_chats can_restrict_members "
                "can_change_info can_invite_users can_post_stories can_edit_stories "
                "can_delete_stories can_pin_messages can_manage_topics"
            )
            return {
                "status": "administrator",
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_promote_members": False,
                **{name: True for name in rights.split()},
            }
        return {"status": "member", "user": user}

    def markup_of(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The reply markup the message has now (None: none)."""
        latest = self._latest(chat_id, message_id)
        return latest["reply_markup"] if latest is not None else None

    def buttons_of(self, chat_id: int, message_id: int) -> list[tuple[str, str]]:
        """(text, callback_data) of each inline button the message has now, row by row
        (callback_data "" for a button of another kind, e.g. a link)."""
        markup = self.markup_of(chat_id, message_id) or {}
        return [
            (button["text"], button.get("callback_data", ""))
            for row in markup.get("inline_keyboard", [])
            for button in row
        ]

    def _latest(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The last recorded version of a message, if the bot sent it."""
        for m in reversed(self.sent):
            if m["chat_id"] == chat_id and m["message_id"] == message_id:
                return m
        return None

    async def _m_deleteMessage(self, params: dict[str, Any]) -> Any:
        self.deleted.add((int(params["chat_id"]), int(params["message_id"])))
        return True

    def current_texts(self, chat_id: int) -> list[str]:
        """What the chat shows now: each message's latest text, in the order they were sent."""
        latest: dict[int, str] = {}
        for m in self.sent:
            if m["chat_id"] == chat_id and (chat_id, m["message_id"]) not in self.deleted:
                latest[m["message_id"]] = m["text"]
        return list(latest.values())

    async def _m_setMessageReaction(self, params: dict[str, Any]) -> Any:
        """Kept in ``reactions``: (chat_id, message_id, the emoji set, or None when cleared);
        a chat in ``no_reactions`` refuses them, as a chat with reactions turned off does."""
        chat_id = int(params["chat_id"])
        if chat_id in self.no_reactions:
            raise _Refused(400, "Bad Request: REACTION_INVALID")
        reaction = params.get("reaction") or []
        emoji = reaction[0]["emoji"] if reaction else None
        self.reactions.append((chat_id, int(params["message_id"]), emoji))
        return True

    async def _m_sendMessageDraft(self, params: dict[str, Any]) -> Any:
        if self.no_drafts:
            raise _Refused(404, "Not Found")
        chat_id = int(params["chat_id"])
        if chat_id < 0:
            raise _Refused(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        if not int(params.get("draft_id") or 0):
            raise _Refused(400, "Bad Request: DRAFT_ID_INVALID")
        text = params.get("text", "")
        if len(text) > 4096:
            raise _Refused(400, "Bad Request: MESSAGE_TOO_LONG")
        entry = {"chat_id": chat_id, "draft_id": int(params["draft_id"]), "text": text}
        self.drafts.append(entry)
        if self.on_draft is not None:
            self.on_draft(entry)
        return True

    async def _m_sendDocument(self, params: dict[str, Any]) -> Any:
        """A file sent: kept in ``documents`` (chat_id, filename, caption, data)."""
        document = params["document"]
        self.documents.append(
            {
                "chat_id": int(params["chat_id"]),
                "filename": document.filename,
                "caption": params.get("caption"),
                "data": document.file.read(),
            }
        )
        message_id = self._next_message_id
        self._next_message_id += 1
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(params["chat_id"]), "type": "private"},
            "from": self.BOT_USER,
            "document": {"file_id": f"sent-doc-{message_id}", "file_unique_id": f"u{message_id}"},
        }

    async def _m_sendVoice(self, params: dict[str, Any]) -> Any:
        return self._audio(params, "voice")

    async def _m_sendAudio(self, params: dict[str, Any]) -> Any:
        return self._audio(params, "audio")

    def _audio(self, params: dict[str, Any], field: str) -> Any:
        """A voice note or audio file sent: kept in ``voices`` (with which of the two it was)."""
        data = params[field].file.read()
        message_id = self._next_message_id
        self._next_message_id += 1
        self.voices.append({"chat_id": int(params["chat_id"]), "as": field, "data": data})
        media = {"file_id": f"sent-{field}-{message_id}", "file_unique_id": f"u{message_id}", "duration": 1}
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(params["chat_id"]), "type": "private"},
            "from": self.BOT_USER,
            field: media,
        }

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        """A photo sent (uploaded, or by file id): kept in ``photos``, with its bytes."""
        photo = params["photo"]
        data = photo.file.read() if hasattr(photo, "file") else self.files.get(str(photo), b"")
        message_id = self._next_message_id
        self._next_message_id += 1
        file_id = f"sent-photo-{message_id}"
        self.files[file_id] = data
        self.photos.append(
            {
                "chat_id": int(params["chat_id"]),
                "message_id": message_id,
                "caption": params.get("caption"),
                "data": data,
                "reply_parameters": params.get("reply_parameters"),
            }
        )
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": int(params["chat_id"]), "type": "private"},
            "from": self.BOT_USER,
            "photo": [{"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 64, "height": 48}],
        }

    def _record(self, params: dict[str, Any], *, edited: bool) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        if edited:
            message_id = int(params["message_id"])
        else:
            message_id = self._next_message_id
            self._next_message_id += 1
        entry = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": params.get("text", ""),
            "entities": params.get("entities"),
            "parse_mode": params.get("parse_mode"),
            "edited": edited,
            "reply_markup": _markup(params),
        }
        self.sent.append(entry)
        if self.on_send is not None:
            self.on_send(entry)
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self.BOT_USER,
            "text": entry["text"],
        }
        if entry["reply_markup"] is not None:
            message["reply_markup"] = entry["reply_markup"]
        return message


def _markup(params: dict[str, Any]) -> dict[str, Any] | None:
    """A call's reply_markup as a dict (the form carries it as a JSON string), or None."""
    markup = params.get("reply_markup")
    if isinstance(markup, str | bytes):
        markup = json.loads(markup)
    return markup or None


def last_text(body: dict[str, Any]) -> str:
    """The text of a chat request's last message (the text part, when it carries images)."""
    return _text_of(body["messages"][-1]["content"])


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if p.get("type") == "text")
    return str(content)


def images_in(body: dict[str, Any]) -> list[str]:
    """The data: URLs of every image a chat request carries, in order."""
    return [
        part["image_url"]["url"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def _entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram marks in ``text``: a leading command, @mentions (in UTF-16 units)."""
    entities = []
    if text.startswith("/"):
        entities.append({"type": "bot_command", "offset": 0, "length": len(text.split()[0])})
    for found in re.finditer(r"@\w+", text):
        offset = len(text[: found.start()].encode("utf-16-le")) // 2
        entities.append({"type": "mention", "offset": offset, "length": len(found.group())})
    return entities


def _decode_form(form: Any) -> dict[str, Any]:
    """python-telegram-bot posts form fields; non-string values arrive JSON-encoded inside them."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, str):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out


class FakeSpeechServices:
    """whisperapi.com (POST /, bearer auth) and speech-rest-api (POST /transcribe) in one server."""

    def __init__(self, api_key: str = "wa-key") -> None:
        self.api_key = api_key
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []  # (path, headers, fields)
        self.script: list[Scripted] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> FakeSpeechServices:
        app = web.Application()
        app.router.add_post("/", self._whisper_api)
        app.router.add_post("/transcribe", self._speech_api)
        self._runner, self.base_url = await _serve(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request, field: str, extra: dict[str, Any]) -> web.Response:
        fields = await _read_multipart(request)
        self.requests.append((request.path, dict(request.headers), fields))
        step = self.script.pop(0) if self.script else Scripted()
        if step.raw is not None:
            return web.Response(text=step.raw, status=step.status)
        if step.status != 200:
            return web.json_response(
                step.body or {"error": "scripted"}, status=step.status, headers=step.headers
            )
        text = step.text if step.text is not None else f"heard {len(fields[field][1])} bytes"
        return web.json_response({"text": text, **extra, **(step.body or {})})  # body: more fields

    async def _whisper_api(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return await self._answer(request, "file", {})

    async def _speech_api(self, request: web.Request) -> web.Response:
        return await self._answer(request, "audio", {"language": "en"})


async def _read_multipart(request: web.Request) -> dict[str, Any]:
    """Form fields by name; a file field becomes (filename, bytes)."""
    fields: dict[str, Any] = {}
    reader = await request.multipart()
    async for part in reader:
        data = await part.read()  # type: ignore[union-attr]
        name = part.name or ""  # type: ignore[union-attr]
        filename = part.filename  # type: ignore[union-attr]
        fields[name] = (filename, bytes(data)) if filename else bytes(data).decode()
    return fields


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free port of 127.0.0.1; returns the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"
