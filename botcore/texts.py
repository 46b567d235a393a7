"""Every sentence the bot says to chat users, in one place, in English as written. Each is read as
``texts.NAME``, which gives it in the language in force (``i18n``); the translations are the
catalogs under ``botcore/locale``. Never an error's own text. The markers that go to the model
and into memory stay in English whatever the user's language."""

from __future__ import annotations

import math

from botcore.errors import Cause
from botcore.i18n import N_, gettext

# To the model and into memory, the same in every language.
IMAGE_MARKER = "[{count} image(s) sent earlier, no longer shown] "  # to the model, in older turns
DOCUMENT_TURN = "{question}\n\n[Document: {name}{cut}]\n{text}"  # what the model (and memory) gets
DOCUMENT_CUT = ", only its first {chars} characters"
IMAGE_REMEMBERED = "[image generated: {prompt}]"  # the answer kept in memory, so the model knows


class _English:
    """The texts to users, as written: read through ``__getattr__`` below, never directly."""

    START = N_(
        "👋 Hi! I'm an AI assistant. Send me a message and I'll answer; I remember our recent "
        "conversation (/reset makes me forget it).\n\n/help lists what I can do."
    )
    HELP_INTRO = N_(
        "I answer your messages with an AI model and remember the last few messages of this chat.\n\n"
    )
    ADMIN_HELP_INTRO = N_("\n\nFor admins:\n")  # the commands' lines come from routing.COMMANDS
    RESET = N_("🧹 Done: I forgot our conversation ({count} messages).")
    RESET_EMPTY = N_("🧹 Done: there was nothing to forget.")
    STREAM_INTERRUPTED = N_("⚠️ (interrupted; trying again…)")
    STREAM_STOPPED = N_("⏹ (stopped)")
    STREAM_FAILED = N_("⚠️ (could not finish)")
    STOPPED = N_("⏹ Stopped.")
    VOICE_STOPPED = N_("🎤 ⏹ Stopped.")
    THINKING = N_("💭 Thinking…")  # a streamed answer while a reasoning model thinks
    NOTHING_TO_STOP = N_("There is nothing running to stop.")
    NOTHING_TO_RETRY = N_("There is no answer to redo yet.")
    UNKNOWN_COMMAND = N_("I don't know that command. /help lists what I can do.")
    NOT_TEXT = N_(
        "I understand text, voice messages, photos and files such as PDFs. Please write, speak or "
        "send me one of those."
    )
    UNREADABLE = N_("😔 Sorry, I couldn't read that message. Please send it again, perhaps in other words.")
    VOICE_ACK = N_("🎤 Processing your voice message…")
    VOICE_TRANSCRIPT = N_("🎤 {text}")
    VOICE_NO_SPEECH = N_("🎤 I couldn't hear any speech in that voice message.")
    VOICE_OFF = N_("Voice messages are turned off here. Please type your message.")
    VOICE_TOO_BIG = N_("🎤 That recording is too large for me ({size:.0f} MB; the limit is {limit:.0f} MB).")
    VOICE_TOO_LONG = N_("🎤 That recording is too long for me ({length}; the limit is {limit}).")
    CONTEXT_TOO_LONG = N_(
        "Our conversation has grown too long for me to follow. Send /reset and ask me again, please."
    )
    OUTAGE = N_(
        "⏳ The AI service is having trouble right now. Your message is saved and I'll answer it "
        "as soon as it recovers."
    )
    RATE_LIMITED = N_("⏳ Too many requests right now, please wait a moment. I'll answer as soon as I can.")
    VOICE_OUTAGE = N_(
        "🎤 The transcription service is having trouble right now. Your voice message is saved and "
        "I'll transcribe it as soon as it recovers."
    )
    # A message that could not be answered for good, by cause (FAILED for everything else).
    FAILED = N_("😔 Sorry, I couldn't answer that message. Please try again in a little while.")
    VOICE_FAILED = N_("🎤 I couldn't transcribe your voice message. Please try again, or type it.")
    ADMIN_ALERT = N_("⚠️ Bot alert: {detail}")
    ALERT_UPSTREAM = N_("{detail}. Users are told the service is unavailable until this is fixed.")
    ALERT_MODEL = N_(
        "{detail}. The chat that uses it was told to choose another with /model; if it is "
        "OPENAI_MODEL, every chat that has not chosen one is affected: fix OPENAI_MODEL."
    )
    ALERT_DAILY_COST = N_("today's cost has reached ${spent:.2f}, over DAILY_COST_ALERT_USD (${limit:.2f}).")
    NOT_ALLOWED = N_(
        "🔒 Sorry, this is a private bot. Your Telegram user id is {user_id}.\n\n"
        "If this is your bot, put that id in ADMIN_USER_IDS and restart it. Otherwise its owner can "
        "let you in by adding your id to ALLOWED_USER_IDS."
    )
    GROUP_NOT_ALLOWED = N_(
        "🔒 This bot isn't enabled in this group. The bot's owner can enable it by adding this chat's "
        "id, {chat_id}, to ALLOWED_CHAT_IDS."
    )
    RATE_LIMITED_USER = N_(
        "⏳ You're sending messages faster than I can take them. That message was not processed; "
        "please wait {seconds} s and send it again."
    )
    RATE_LIMITED_GLOBAL = N_(
        "⏳ I'm very busy right now. That message was not processed; please try again in {seconds} s."
    )
    BUDGET_USER_DAY = N_("💸 You've used today's budget (${limit:.2f}). It resets at midnight UTC.")
    BUDGET_USER_MONTH = N_("💸 You've used this month's budget (${limit:.2f}). It resets on the 1st (UTC).")
    BUDGET_GLOBAL = N_("💸 This bot has used its budget for today. Please try again after midnight UTC.")
    USAGE = N_(
        "📊 Your usage\n"
        "Today: {day.requests} calls, {day.prompt_tokens} + {day.completion_tokens} tokens, "
        "{day_minutes:.1f} min of voice, {day.images} pictures, {day.spoken_chars} characters read aloud, "
        "${day.cost_usd:.4f}\n"
        "This month: {month.requests} calls, {month.prompt_tokens} + {month.completion_tokens} tokens, "
        "{month_minutes:.1f} min of voice, {month.images} pictures, {month.spoken_chars} characters read "
        "aloud, ${month.cost_usd:.4f}"
    )
    ADMIN_ONLY = N_("🔒 Sorry, that command is for the bot's admins.")
    ADMIN_PRIVATE = N_(
        "🔒 Please use admin commands in a private chat with me: their reports name other users."
    )
    IMAGE_QUESTION = N_("What is in this image? Describe it briefly.")  # to the model, for a photo alone
    DOCUMENT_QUESTION = N_("Summarise this document briefly, then offer to answer questions about it.")
    IMAGE_ACK = N_("🖼 Looking at your photo…")
    ALBUM_ACK = N_("🖼 Looking at your photos…")
    ALBUM_CUT = N_("🖼 I looked at the first {count} photos of that album.")
    DOCUMENT_ACK = N_("📄 Reading {name}…")
    UNNAMED_FILE = N_("the file")  # {name} above, for a file sent without a name
    VISION_OFF = N_("I can't look at pictures here. Please describe it in words.")
    DOCUMENT_UNSUPPORTED = N_("📎 I can't read that kind of file. I can read {supported}.")
    DOCUMENT_TOO_BIG = N_("📄 That file is too large for me ({size:.1f} MB; the limit is {limit:g} MB).")
    DOCUMENT_WAS_CUT = N_("✂️ That document was long: I read only its first {chars} characters.")
    SPOKEN_CODE = N_("(the code is in the text)")
    SPOKEN_LINK = N_("(a link)")
    SPOKEN_REST = N_("The rest is in the text.")
    VOICE_MODE = N_(
        "🔊 Voice replies here: {mode}.\n\n/voice on: every answer also comes as a voice note\n"
        "/voice auto: when you send a voice note\n/voice off: text only"
    )
    VOICE_MODE_SET = N_("🔊 Voice replies: {mode}.")
    VOICE_MODE_BAD = N_("Send /voice on, /voice auto or /voice off.")
    TTS_OFF = N_("🔇 Voice replies are turned off on this bot.")
    VOICE_REPLY_FAILED = N_("🔇 I couldn't make a voice note of that answer this time.")
    EXPORT_USAGE = N_("Send /export for a Markdown file of our conversation, or /export json for JSON.")
    EXPORT_ADMINS_ONLY = N_("🔒 Only this group's admins can export its conversation.")
    EXPORT_NOTHING = N_("There is nothing to export: I don't remember any conversation here.")
    EXPORT_CAPTION = N_("📄 Our conversation as I remember it: {count} messages.")
    EXPORT_CUT = N_(" The oldest {count} were left out to keep the file small.")
    # Inside the exported Markdown file.
    EXPORT_HEADING = N_("Conversation")
    EXPORT_ABOUT = N_("Model: {model} · Persona: {persona} · Exported {time}")
    EXPORT_YOU = N_("You")
    EXPORT_ASSISTANT = N_("Assistant")
    EXPORT_IMAGES = N_("images: {count}")
    IMAGE_USAGE = N_(
        "🎨 Tell me what to draw: /image followed by a description, like /image a lighthouse at dawn."
    )
    IMAGE_OFF = N_("🎨 Drawing pictures is turned off here.")
    RETRY_IMAGE = N_("🎨 My last answer was a picture: send /image again to get another one.")
    ON = N_("on")
    OFF = N_("off")
    DEFAULT_MARK = N_(" (default)")
    MEMORY_ON = N_("on (the last {count} messages, for {days} days)")
    SETTINGS = N_(
        "⚙️ Settings for this chat\n\n"
        "🧠 Model: {model}\n🎭 Persona: {persona} — {description}\n"
        "⚡ Streaming: {stream}\n💾 Memory: {memory}\n🔊 Voice replies: {voice} (/voice)"
    )
    MODELS = N_("🧠 This chat uses {model}. Choose a model:")
    MEMORY_DISABLED = N_("off (for every chat: the bot's owner set HISTORY_MESSAGES=0)")
    MODELS_UNAVAILABLE = N_(
        "\n\nI couldn't get the AI server's list of models just now, so only these are shown. Try "
        "again in a minute, or send /model followed by a model's name."
    )
    MODELS_UNLISTED = N_(
        "\n\nThe AI server doesn't list its models, so only these are shown. To use another, send "
        "/model followed by its name."
    )
    PERSONAS = N_("🎭 This chat's persona is {persona}. Choose one:\n\n{lines}")
    BUTTON_MODEL = N_("🧠 Model")
    BUTTON_PERSONA = N_("🎭 Persona")
    BUTTON_STREAM_ON = N_("⚡ Streaming: turn on")
    BUTTON_STREAM_OFF = N_("⚡ Streaming: turn off")
    BUTTON_MEMORY_ON = N_("💾 Memory: turn on")
    BUTTON_MEMORY_OFF = N_("💾 Memory: turn off")
    BUTTON_PREVIOUS = N_("◀ Back a page")
    BUTTON_NEXT = N_("Page {page} of {pages} ▶")
    BUTTON_BACK = N_("⚙️ All settings")
    MODEL_SET = N_("✅ This chat now uses {model}.")
    MODEL_SAME = N_("This chat already uses {model}.")
    MODEL_NOT_ALLOWED = N_("🚫 {model} isn't one of the models allowed here. /model lists them.")
    MODEL_UNKNOWN = N_(
        "🤷 The AI server doesn't offer a model called {model}. /model lists the ones it does."
    )
    MODEL_BAD_NAME = N_("That doesn't look like a model name. Send /model to choose from a list.")
    PERSONA_SET = N_("🎭 Persona set to {persona}. I started a fresh conversation.")
    PERSONA_SAME = N_("This chat already uses the {persona} persona.")
    PERSONA_UNKNOWN = N_("🤷 I don't know a persona called {persona}. /persona lists them.")
    STREAM_ON = N_("⚡ Streaming is on.")
    STREAM_OFF = N_("⚡ Streaming is off.")
    MEMORY_SET_ON = N_("💾 Memory is on.")
    MEMORY_OFF_NOTE = N_("💾 Memory is off: I forgot our conversation, and each message now stands alone.")
    ADMINS_ONLY = N_("🔒 Only this group's admins can change its settings.")
    MENU_STALE = N_("This menu is out of date. Send /settings for a fresh one.")
    SECONDS = N_("{seconds} s")
    MINUTES = N_("{minutes} min")
    MINUTES_SECONDS = N_("{minutes} min {seconds} s")


_FAILED_BY_CAUSE = {
    Cause.TIMEOUT: N_("⌛ The AI service took too long to answer. Please try again."),
    Cause.UNAVAILABLE: N_("😔 The AI service is temporarily unavailable. Please try again in a few minutes."),
    Cause.RATE_LIMITED: N_("⏳ Too many requests right now. Please wait a moment and send that again."),
    Cause.CIRCUIT_OPEN: N_(
        "😔 The AI service is still having trouble, so I couldn't answer that message. "
        "Please try again later."
    ),
    Cause.QUOTA: N_("😔 The AI service is unavailable right now. Please try again later."),
    Cause.AUTH: N_("😔 The AI service is unavailable right now. Please try again later."),
    Cause.CONTEXT_TOO_LONG: _English.CONTEXT_TOO_LONG,
    Cause.TELEGRAM: N_(
        "😔 Telegram was having trouble, so my answer could not be delivered. Please send it again."
    ),
    Cause.NO_SUCH_MODEL: N_(
        "🤷 The AI server doesn't know the model this chat uses. Choose another one with /model."
    ),
    Cause.REFUSED: N_("🎨 The image service won't draw that. Please try describing something else."),
    Cause.BAD_FILE: N_("😔 I couldn't read that file. It may be damaged, or in a form I don't know."),
    Cause.NO_TEXT: N_(
        "📄 That PDF has no text I can read: it looks like a scan. I can't read scanned pages yet; "
        "please send a PDF with text, or paste the text."
    ),
    Cause.NO_VISION: N_(
        "🖼 The model this chat uses can't see images. Choose one that can with /model, or "
        "describe the picture in words."
    ),
    Cause.THOUGHT_ONLY: N_(
        "🤔 I spent all my words thinking and had none left for the answer. Try a shorter question; "
        "the bot's owner can raise MAX_REPLY_TOKENS."
    ),
}

_VOICE_FAILED_BY_CAUSE = {
    Cause.TIMEOUT: N_("🎤 Transcribing your voice message took too long. Please try again, or type it."),
    Cause.UNAVAILABLE: N_(
        "🎤 The transcription service is temporarily unavailable. Please type your message, "
        "or try again in a few minutes."
    ),
    Cause.CIRCUIT_OPEN: N_(
        "🎤 The transcription service is still having trouble. Please type your message, or try again later."
    ),
    Cause.QUOTA: N_("🎤 Voice messages can't be transcribed right now. Please type your message."),
    Cause.AUTH: N_("🎤 Voice messages can't be transcribed right now. Please type your message."),
    Cause.TELEGRAM: N_(
        "🎤 Telegram was having trouble, so I couldn't finish with your voice message. Please send it again."
    ),
}


def __getattr__(name: str) -> str:
    """``texts.NAME``: that text in the language in force."""
    english = None if name.startswith("_") else vars(_English).get(name)
    if not isinstance(english, str):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return gettext(english)


def duration(seconds: float) -> str:
    """A length for people: seconds under two minutes, minutes and seconds above (rounded down,
    so a note just over a limit never reads as equal to it)."""
    if seconds < 120:  # tenths rounded up, so 10.04 s never reads as a limit of 10 s
        shown = f"{math.ceil(seconds * 10) / 10:.1f}".rstrip("0").rstrip(".")
        return gettext(_English.SECONDS).format(seconds=shown)
    minutes, rest = divmod(int(seconds), 60)
    if rest:
        return gettext(_English.MINUTES_SECONDS).format(minutes=minutes, seconds=rest)
    return gettext(_English.MINUTES).format(minutes=minutes)


def failed(cause: Cause | None) -> str:
    """What the user hears when their message could not be answered, never the error's text."""
    return gettext(_FAILED_BY_CAUSE.get(cause, _English.FAILED) if cause else _English.FAILED)


def voice_failed(cause: Cause | None) -> str:
    return gettext(
        _VOICE_FAILED_BY_CAUSE.get(cause, _English.VOICE_FAILED) if cause else _English.VOICE_FAILED
    )
