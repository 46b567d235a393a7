"""Where a message goes, decided once: the one ``COMMANDS`` table (from which dispatch, the
command menu and /help are made), ``Router.route`` (refused, or the jobs it becomes), and the
jobs that carry a message out (``tg-update`` in the chat's order, ``tg-command`` at once).
Adding a command or an attachment kind touches the tables here and one service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from loguru import logger

from botcore import texts
from botcore.chat import ChatService
from botcore.commands import Commands, Request
from botcore.drawing import IMAGE_KIND
from botcore.gate import Gate
from botcore.i18n import N_, gettext
from botcore.incoming import Command, Incoming, parse_update
from botcore.jobqueue import JobQueue
from botcore.media import ALBUM_WINDOW_S, MEDIA_ACK_KIND, MEDIA_KIND, in_album, media_ack_key, media_key
from botcore.menus import navigates, parse_press
from botcore.models import Job
from botcore.notices import Notices
from botcore.prefs import ChatSettings
from botcore.voice import ACK_KIND, VOICE_KIND, ack_key, voice_key

UPDATE_KIND = "tg-update"  # a message, answered in its chat's order within LLM_CONCURRENCY
COMMAND_KIND = "tg-command"  # a command that neither reads nor changes the conversation


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    run: Callable[[Commands, Request], Awaitable[str | None]] | None  # None: ``kind`` does the work
    menu: str | None = None  # its line in Telegram's command menu (None: not in the menu)
    help: str | None = None  # its line in /help (None: not listed)
    admin: bool = False  # admins only, and only in a private chat (the reports name people)
    # In the chat's order, behind the answers before it: it reads or changes the conversation.
    # The others run at once: /cancel stops those answers, /status reports on them.
    ordered: bool = False
    argument: str | None = None  # this entry is the command's form with an argument, so named
    # It acts (deletes, stops, revives) or reports on the moment: its reply is kept in the
    # checkpoint, so a rerun of its job repeats that reply. The others are simply asked again.
    once: bool = False
    kind: str | None = None  # a job kind of its own does the work (``run`` is not used)


async def _help(_: Commands, request: Request) -> str:
    return help_text(admin=request.is_admin)


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", Commands.start, menu=N_("Start the bot")),
    CommandSpec(
        "reset",
        Commands.reset,
        N_("Forget our conversation"),
        N_("forget our conversation"),
        ordered=True,
        once=True,
    ),
    CommandSpec(
        "retry",
        Commands.retry,
        N_("Answer the last message again"),
        N_("answer my last message again"),
        ordered=True,
    ),
    CommandSpec(
        "cancel",
        Commands.cancel,
        N_("Stop the current answer"),
        N_("stop the answer I am writing"),
        once=True,
    ),
    CommandSpec(
        "settings",
        Commands.settings,
        N_("This chat's settings"),
        N_("this chat's settings, with buttons"),
        ordered=True,
    ),
    CommandSpec(
        "model",
        Commands.model,
        N_("Choose the AI model"),
        N_("choose the AI model for this chat"),
        ordered=True,
    ),
    CommandSpec(
        "model",
        Commands.model,
        help=N_("switch to that model"),
        argument=N_("<name>"),
        ordered=True,
        once=True,
    ),
    CommandSpec(
        "persona", Commands.persona, N_("Choose a persona"), N_("choose who I am in this chat"), ordered=True
    ),
    CommandSpec(
        "persona",
        Commands.persona,
        help=N_("switch to that persona (a fresh conversation)"),
        argument=N_("<name>"),
        ordered=True,
        once=True,
    ),
    CommandSpec(
        "image",
        None,
        N_("Draw a picture"),
        N_("draw what you describe"),
        argument=N_("<description>"),
        kind=IMAGE_KIND,
    ),
    CommandSpec("img", None, argument=N_("<description>"), kind=IMAGE_KIND),
    CommandSpec(
        "voice", Commands.voice, N_("Voice replies"), N_("voice replies: on, auto or off"), ordered=True
    ),
    CommandSpec(
        "voice", Commands.voice, help=N_("set them"), argument="on|auto|off", ordered=True, once=True
    ),
    CommandSpec(
        "export",
        Commands.export,
        N_("Export our conversation"),
        N_("our conversation as a file"),
        ordered=True,
    ),
    CommandSpec("export", Commands.export, help=N_("the same, as JSON"), argument="json", ordered=True),
    CommandSpec(
        "usage", Commands.usage, N_("What you have used"), N_("what you have used today and this month")
    ),
    CommandSpec("help", _help, N_("What I can do"), N_("this message")),
    CommandSpec("status", Commands.status, help=N_("queue, services, today's use"), admin=True, once=True),
    CommandSpec("dead", Commands.dead, help=N_("the latest failed jobs"), admin=True, once=True),
    CommandSpec(
        "retry",
        Commands.revive,
        help=N_("run a failed job again"),
        admin=True,
        argument=N_("<job id>"),
        once=True,
    ),
    CommandSpec("cleanup", Commands.cleanup, help=N_("clean the database now"), admin=True, once=True),
)


def find_command(command: Command) -> CommandSpec | None:
    """The table's entry for ``command``: its form with an argument if it has one and there is
    such a form, else its plain form."""
    forms = [spec for spec in COMMANDS if spec.name == command.name]
    for spec in forms:
        if (spec.argument is not None) == bool(command.argument.strip()):
            return spec
    return forms[0] if forms else None


def help_text(*, admin: bool) -> str:
    """/help in the language in force."""

    def line(spec: CommandSpec) -> str:
        argument = f" {gettext(spec.argument)}" if spec.argument else ""
        return f"/{spec.name}{argument} — {gettext(spec.help) if spec.help else ''}"

    def lines(specs: Collection[CommandSpec]) -> str:
        return "\n".join(line(spec) for spec in specs)

    text = texts.HELP_INTRO + lines([s for s in COMMANDS if s.help and not s.admin])
    if admin:
        text += texts.ADMIN_HELP_INTRO + lines([s for s in COMMANDS if s.help and s.admin])
    return text


def menu() -> list[tuple[str, str]]:
    """Telegram's command menu (setMyCommands), in the language in force."""
    return [(spec.name, gettext(spec.menu)) for spec in COMMANDS if spec.menu]


@dataclass(frozen=True, slots=True)
class Planned:
    """A job a message becomes; the intake stores it with the update as its payload."""

    kind: str
    dedup_key: str
    group_key: str | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of a message: jobs, or a refusal with a reason (for the log) and perhaps a
    reply to send at once, unstored (a courtesy: why nothing else will happen)."""

    jobs: tuple[Planned, ...] = ()
    refused: str | None = None
    reply: str | None = None


def _voice_jobs(incoming: Incoming) -> tuple[Planned, ...]:
    # The acknowledgement outside the chat's order, so the user hears back at once.
    return (
        Planned(ACK_KIND, ack_key(incoming)),
        Planned(VOICE_KIND, voice_key(incoming), f"chat:{incoming.chat_id}"),
    )


def _media_jobs(incoming: Incoming) -> tuple[Planned, ...]:
    # An album's parts come as separate updates: each part's job waits a moment, so the first
    # finds the others queued and asks about them all (one acknowledgement: same key).
    wait = ALBUM_WINDOW_S if in_album(incoming) else 0.0
    return (
        Planned(MEDIA_ACK_KIND, media_ack_key(incoming)),
        Planned(MEDIA_KIND, media_key(incoming), f"chat:{incoming.chat_id}", wait),
    )


# Attachment kinds we handle, and the jobs a message carrying one becomes.
ATTACHMENTS: dict[str, Callable[[Incoming], tuple[Planned, ...]]] = {
    "voice": _voice_jobs,
    "audio": _voice_jobs,
    "video_note": _voice_jobs,
    "photo": _media_jobs,
    "document": _media_jobs,
}


class Router:
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def route(self, incoming: Incoming) -> Decision:
        refusal = self._gate.admit(incoming)
        if refusal is not None:
            return Decision(refused=refusal.reason, reply=refusal.notice)
        if incoming.attachment is not None and incoming.attachment.kind in ATTACHMENTS:
            return Decision(ATTACHMENTS[incoming.attachment.kind](incoming))
        key = f"tg-update:{incoming.update_id}"
        spec = find_command(incoming.command) if incoming.command else None
        press = parse_press(incoming.button.data) if incoming.button else None
        if spec is not None and spec.kind is not None:
            return Decision((Planned(spec.kind, key),))  # its own kind: not in the chat's order
        if (spec is not None and not spec.ordered) or (press is not None and navigates(press)):
            return Decision((Planned(COMMAND_KIND, key),))  # at once: it changes nothing
        return Decision((Planned(UPDATE_KIND, key, f"chat:{incoming.chat_id}"),))


class UpdateJobs:
    """The ``tg-update`` and ``tg-command`` jobs: a command from the table, a button press for
    the chat's settings, text for the chat service, or a polite word about what the bot cannot
    read."""

    def __init__(
        self,
        *,
        chat: ChatService,
        commands: Commands,
        settings: ChatSettings,
        notices: Notices,
        queue: JobQueue,
        bot_username: str,
        admin_ids: Collection[int],
    ) -> None:
        self._chat = chat
        self._commands = commands
        self._settings = settings
        self._notices = notices
        self._queue = queue
        self._bot_username = bot_username.lower()
        self._admin_ids = frozenset(admin_ids)

    async def handle(self, job: Job) -> None:
        incoming = parse_update(job.payload)
        if incoming is None:
            return  # edits and other update types are not answered
        checkpoint = dict(job.checkpoint or {})
        with logger.contextualize(update_id=incoming.update_id, chat_id=incoming.chat_id):
            if incoming.button is not None:
                await self._settings.press(job, incoming, checkpoint)
            elif incoming.command is not None:
                await self._command(job, incoming, checkpoint)
            elif incoming.other_content or incoming.captioned or incoming.attachment is not None:
                await self._notices.once(job, checkpoint, incoming.target, texts.NOT_TEXT)
            elif self._chat.speaker_text(incoming):
                await self._chat.answer(job, incoming, checkpoint)
            elif incoming.text.strip():  # only "@bot" in a group: say what the bot is for
                await self._notices.once(job, checkpoint, incoming.target, help_text(admin=False))

    async def _command(self, job: Job, incoming: Incoming, checkpoint: dict[str, Any]) -> None:
        command = incoming.command
        assert command is not None
        if command.bot is not None and command.bot != self._bot_username:
            return  # a command for another bot in a group
        spec = find_command(command)
        is_admin = incoming.sender_id in self._admin_ids
        if spec is None:
            if incoming.in_group:
                return  # in a group, stay quiet about commands we do not know (another bot's)
            reply: str | None = texts.UNKNOWN_COMMAND
        elif spec.admin and not is_admin:
            reply = texts.ADMIN_ONLY
        elif spec.admin and incoming.in_group:
            reply = texts.ADMIN_PRIVATE  # their reports name other users and chats
        elif "reply" in checkpoint:  # it acted in an earlier attempt: only the reply is left
            reply = str(checkpoint["reply"])
        elif spec.run is None:
            return  # a kind of its own does this command's work
        else:
            reply = await spec.run(self._commands, Request(job, incoming, checkpoint, is_admin))
            if reply is None:
                return  # it answered by itself
            if spec.once:
                checkpoint["reply"] = reply
                await self._queue.save_checkpoint(job, checkpoint)
        await self._notices.once(job, checkpoint, incoming.target, reply)

    async def on_dead(self, job: Job, exc: BaseException | None) -> None:
        """The message could not be answered for good: say why, once, in our words."""
        incoming = parse_update(job.payload)
        if incoming is not None:
            await self._notices.failed_for_good(job, incoming.target, exc)
