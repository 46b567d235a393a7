"""Each chat's own settings: the model and persona that answer it, whether answers stream and
whether it remembers (/model, /persona, /settings and their buttons). Decides what a chat may
choose and who may choose it (in a group: its admins, or the bot's); keeps the choice through
``ChatPrefsStore``. Sends only its menus and what a choice did."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from loguru import logger

from botcore import menus, texts
from botcore.catalog import ModelCatalog
from botcore.clock import Clock
from botcore.errors import PermanentError
from botcore.incoming import Incoming
from botcore.jobqueue import JobQueue
from botcore.menus import Press, Screen, View
from botcore.messenger import Messenger
from botcore.models import Job
from botcore.personas import DEFAULT_PERSONA, Persona
from botcore.storage import ChatPrefsStore, ConversationStore


class ChatSettings:
    def __init__(
        self,
        *,
        store: ChatPrefsStore,
        conversations: ConversationStore,
        catalog: ModelCatalog,
        messenger: Messenger,
        queue: JobQueue,
        clock: Clock,
        personas: Mapping[str, Persona],
        stream: bool,
        history_messages: int,
        history_ttl_days: float,
        admin_ids: Collection[int],
        voice_default: str = "off",
        voice_available: bool = True,  # False: TTS_MODE=off, /voice says so
    ) -> None:
        self._store = store
        self._conversations = conversations
        self._catalog = catalog
        self._messenger = messenger
        self._queue = queue
        self._clock = clock
        self._personas = dict(personas)
        self._stream = stream
        self._history_messages = history_messages
        self._history_days = history_ttl_days
        self._admin_ids = frozenset(admin_ids)
        self._voice_default = voice_default if voice_available else "off"
        self._voice_available = voice_available
        self._log = logger.bind(component="settings")

    async def view(self, chat_id: int) -> View:
        """This chat's settings as they apply now: a choice that is no longer allowed (the owner
        changed ALLOWED_MODELS or PERSONAS_FILE) gives way to the default."""
        prefs = await self._store.get(chat_id)
        model = prefs.model if prefs.model and self._catalog.allows(prefs.model) else self._catalog.default
        persona = self._personas.get(prefs.persona or DEFAULT_PERSONA) or self._personas[DEFAULT_PERSONA]
        return View(
            model=model,
            default_model=self._catalog.default,
            persona=persona,
            stream=self._stream if prefs.stream is None else prefs.stream,
            memory=prefs.memory is not False and self._history_messages > 0,
            history_messages=self._history_messages,
            history_days=self._history_days,
            voice=(prefs.voice or self._voice_default) if self._voice_available else "off",
        )

    # -- the commands ------------------------------------------------------------------------
    async def settings_command(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any]) -> None:
        await self._send_menu(
            job, incoming, checkpoint, menus.settings_screen(await self.view(incoming.chat_id))
        )

    async def model_command(
        self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], name: str
    ) -> str | None:
        """``/model``: the menu; ``/model <name>``: switch to it (the reply says how it went)."""
        if not name:
            screen = await self._models_screen(incoming.chat_id, page=0)
            await self._send_menu(job, incoming, checkpoint, screen)
            return None
        if not await self.may_change(incoming):
            return texts.ADMINS_ONLY
        return await self._set_model(incoming.chat_id, name, await self._applying(job, checkpoint))

    async def persona_command(
        self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], name: str
    ) -> str | None:
        if not name:
            view = await self.view(incoming.chat_id)
            await self._send_menu(job, incoming, checkpoint, menus.personas_screen(self._list(), view))
            return None
        if not await self.may_change(incoming):
            return texts.ADMINS_ONLY
        return await self._set_persona(incoming.chat_id, name.lower(), await self._applying(job, checkpoint))

    async def voice_command(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], mode: str) -> str:
        """``/voice``: this chat's voice replies; ``/voice on|auto|off`` sets them."""
        if not self._voice_available:
            return texts.TTS_OFF
        if not mode:
            return texts.VOICE_MODE.format(mode=(await self.view(incoming.chat_id)).voice)
        mode = mode.lower()
        if mode not in ("on", "auto", "off"):
            return texts.VOICE_MODE_BAD
        if not await self.may_change(incoming):
            return texts.ADMINS_ONLY
        await self._change(incoming.chat_id, voice=None if mode == self._voice_default else mode)
        return texts.VOICE_MODE_SET.format(mode=mode)

    # -- a press on one of the menus' buttons ------------------------------------------------
    async def press(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any]) -> None:
        """Do what the button says (once: what it did is kept in the checkpoint) and show the
        menu it leads to in place of the one pressed."""
        assert incoming.button is not None
        press = menus.parse_press(incoming.button.data)
        if press is None:
            return  # not a button of ours (an older version's): its press was answered, nothing more
        if not menus.navigates(press) and "note" not in checkpoint:
            if await self.may_change(incoming):
                checkpoint["note"] = await self._apply(
                    incoming.chat_id, press, await self._applying(job, checkpoint)
                )
            else:  # said on the menu itself: no new message in the group
                checkpoint["note"] = texts.ADMINS_ONLY
            await self._queue.save_checkpoint(job, checkpoint)
        text, keyboard = await self._screen(incoming.chat_id, press, checkpoint.get("note", ""))
        if not await self._messenger.edit_text(
            incoming.chat_id, incoming.message_id, text, keyboard=keyboard
        ):
            await self._send_menu(job, incoming, checkpoint, (text, keyboard))  # the menu was deleted

    async def _apply(self, chat_id: int, press: Press, again: bool) -> str:
        if press.verb == menus.MODEL:
            name = press.argument
            if press.hashed:
                found = menus.find_hashed(name, (await self._catalog.offered())[0])
                if found is None:
                    return texts.MENU_STALE
                name = found
            return await self._set_model(chat_id, name, again)
        if press.verb == menus.PERSONA:
            return await self._set_persona(chat_id, press.argument, again)
        what, _, state = press.argument.partition("=")
        return await self._set_toggle(chat_id, what, state == "1")

    async def _applying(self, job: Job, checkpoint: dict[str, Any]) -> bool:
        """Mark the job as changing settings now; True if an earlier attempt did (and died before
        it could keep what it said): then "already so" means it was done, and is said as done."""
        if checkpoint.get("applying"):
            return True
        checkpoint["applying"] = 1
        await self._queue.save_checkpoint(job, checkpoint)
        return False

    async def _screen(self, chat_id: int, press: Press, note: str) -> Screen:
        view = await self.view(chat_id)
        if press.verb in (menus.MODEL, menus.MODELS):
            page = int(press.argument) if press.verb == menus.MODELS else None
            return await self._models_screen(chat_id, page=page, note=note, view=view)
        if press.verb in (menus.PERSONA, menus.PERSONAS):
            return menus.personas_screen(self._list(), view, note)
        return menus.settings_screen(view, note)

    async def _models_screen(
        self, chat_id: int, *, page: int | None, note: str = "", view: View | None = None
    ) -> Screen:
        """A page of the model menu; ``page`` None: the page that holds this chat's model."""
        view = view or await self.view(chat_id)
        names, caveat = await self._catalog.offered()
        if view.model not in names:
            names = [view.model, *names]
        if page is None:
            page = names.index(view.model) // menus.PAGE
        return menus.models_screen(names, view, page, caveat=caveat, note=note)

    # -- the changes -------------------------------------------------------------------------
    async def _set_model(self, chat_id: int, name: str, again: bool) -> str:
        refusal = await self._catalog.judge(name)
        if refusal is not None:
            return refusal
        if (await self.view(chat_id)).model == name and not again:
            return texts.MODEL_SAME.format(model=name)
        stored = None if name == self._catalog.default else name
        await self._change(chat_id, model=stored)
        return texts.MODEL_SET.format(model=name)

    async def _set_persona(self, chat_id: int, name: str, again: bool) -> str:
        if name not in self._personas:
            return texts.PERSONA_UNKNOWN.format(persona=name[:40])
        if (await self.view(chat_id)).persona.name == name and not again:
            return texts.PERSONA_SAME.format(persona=name)
        await self._conversations.reset(chat_id)  # a new persona starts a new conversation
        await self._change(chat_id, persona=None if name == DEFAULT_PERSONA else name)
        return texts.PERSONA_SET.format(persona=name)

    async def _set_toggle(self, chat_id: int, what: str, on: bool) -> str:
        if what == "stream":
            await self._change(chat_id, stream=None if on == self._stream else on)
            return texts.STREAM_ON if on else texts.STREAM_OFF
        if not on:
            await self._conversations.reset(chat_id)
        await self._change(chat_id, memory=None if on else False)
        return texts.MEMORY_SET_ON if on else texts.MEMORY_OFF_NOTE

    async def _change(self, chat_id: int, **changes: Any) -> None:
        prefs = await self._store.get(chat_id)
        await self._store.put(chat_id, replace(prefs, **changes), now=self._clock.now())

    async def may_change(self, incoming: Incoming) -> bool:
        """Anyone in a private chat; in a group its admins (an anonymous admin speaks as the
        group itself) and the bot's admins; never someone speaking as a channel."""
        user = incoming.sender_id
        if not incoming.in_group or user in self._admin_ids or user == incoming.chat_id:
            return True
        if user is None or user < 0:  # a channel (user ids are positive): no member to ask about
            return False
        try:
            return await self._messenger.is_group_admin(incoming.chat_id, user)
        except PermanentError as exc:  # Telegram will not say (the user left, say): not shown as one
            self._log.info("could not tell whether {} is an admin of {}: {}", user, incoming.chat_id, exc)
            return False

    async def _send_menu(
        self, job: Job, incoming: Incoming, checkpoint: dict[str, Any], screen: Screen
    ) -> None:
        """Send a menu in reply, once per job however often it runs."""
        if checkpoint.get("sent"):
            return
        text, keyboard = screen
        where = incoming.target
        await self._messenger.send_text(
            where.chat_id, text, reply_to=where.message_id, thread_id=where.thread_id, keyboard=keyboard
        )
        checkpoint["sent"] = 1
        await self._queue.save_checkpoint(job, checkpoint)

    def _list(self) -> list[Persona]:
        return list(self._personas.values())
