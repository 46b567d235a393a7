"""Telegram delivers updates to us (``WEBHOOK_URL``) instead of being polled: any number of
processes behind a reverse proxy take them. An update is stored before Telegram hears 200, so
one that was answered 200 is on disk; a database that refuses answers 503 and Telegram delivers
again later. A repeat (the same ``update_id``) is answered 200 and stored once, by its dedup key.
Requests without the secret header Telegram was given are refused with 401."""

from __future__ import annotations

import hmac
import json

import telegram
from aiohttp import web
from loguru import logger

from botcore.attachments import valid_id
from botcore.clock import Clock
from botcore.config_scale import Webhook
from botcore.errors import StartupError, StorageUnavailable
from botcore.intake import ALLOWED_UPDATES, UpdatePoller

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_MAX_BODY = 1 << 20  # an update is a few kilobytes; Telegram's own limit on a message is far below


class WebhookServer:
    """The endpoint at the path of ``WEBHOOK_URL``, on ``WEBHOOK_LISTEN:WEBHOOK_PORT``. It shares
    the intake's ``persist`` (parse, route and store once) with polling."""

    def __init__(self, webhook: Webhook, intake: UpdatePoller, clock: Clock) -> None:
        self._webhook = webhook
        self._intake = intake
        self._clock = clock
        self._secret = webhook.secret.encode()
        self._runner: web.AppRunner | None = None
        self._log = logger.bind(component="webhook")

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post(self._webhook.path, self._take)
        # No access log: each line would carry a user's request, and the intake logs what matters.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._webhook.listen, self._webhook.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            where = f"{self._webhook.listen}:{self._webhook.port}"
            raise StartupError(f"WEBHOOK_PORT: cannot listen on {where} ({exc.strerror})") from None
        self._log.info(
            "taking updates at {}:{}{}", self._webhook.listen, self._webhook.port, self._webhook.path
        )

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _take(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=401, text="wrong or missing secret token")
        try:
            update = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.Response(status=400, text="not JSON")
        if not isinstance(update, dict) or not valid_id(update.get("update_id")):
            return web.Response(status=400, text="not an update")
        self._intake.received += 1
        self._intake.last_poll_at = self._clock.now()
        try:
            await self._intake.persist([update])
        except StorageUnavailable as exc:
            # Not stored: Telegram delivers it again later (its retries back off by themselves).
            self._log.warning(
                "update {} not stored ({}); Telegram will deliver it again", update["update_id"], exc
            )
            self._intake.store_failing_since = self._intake.store_failing_since or self._clock.now()
            return web.Response(status=503, text="try again later")
        self._intake.store_failing_since = None
        return web.Response(text="ok")


async def register(bot: telegram.Bot, webhook: Webhook) -> None:
    """Tell Telegram where to deliver (every intake process does, with the same values). Fatal if
    refused: without it no update would ever come."""
    try:
        await bot.set_webhook(
            webhook.url,
            secret_token=webhook.secret,
            allowed_updates=list(ALLOWED_UPDATES),
            max_connections=webhook.max_connections,
        )
    except telegram.error.TelegramError as exc:
        raise StartupError(f"WEBHOOK_URL: Telegram refused it ({exc.message})") from None
