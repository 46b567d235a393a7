"""Every sentence the bot says to chat users, in one place. Never an error's own text."""

from __future__ import annotations

import math

from botcore.errors import Cause

START = (
    "👋 Hi! I'm an AI assistant. Send me a message and I'll answer; I remember our recent "
    "conversation (/reset makes me forget it).\n\n/help lists what I can do."
)
HELP_INTRO = "I answer your messages with an AI model and remember the last few messages of this chat.\n\n"
ADMIN_HELP_INTRO = "\n\nFor admins:\n"  # the commands' lines come from routing.COMMANDS
RESET = "🧹 Done: I forgot our conversation ({count} messages)."
RESET_EMPTY = "🧹 Done: there was nothing to forget."
STREAM_INTERRUPTED = "⚠️ (interrupted; trying again…)"
STREAM_STOPPED = "⏹ (stopped)"
STREAM_FAILED = "⚠️ (could not finish)"
STOPPED = "⏹ Stopped."
VOICE_STOPPED = "🎤 ⏹ Stopped."
THINKING = "💭 Thinking…"  # a streamed answer while a reasoning model thinks
NOTHING_TO_STOP = "There is nothing running to stop."
NOTHING_TO_RETRY = "There is no answer to redo yet."
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."
NOT_TEXT = (
    "I understand text, voice messages, photos and files such as PDFs. Please write, speak or "
    "send me one of those."
)
UNREADABLE = "😔 Sorry, I couldn't read that message. Please send it again, perhaps in other words."
VOICE_ACK = "🎤 Processing your voice message…"
VOICE_TRANSCRIPT = "🎤 {text}"
VOICE_NO_SPEECH = "🎤 I couldn't hear any speech in that voice message."
VOICE_OFF = "Voice messages are turned off here. Please type your message."
VOICE_TOO_BIG = "🎤 That recording is too large for me ({size:.0f} MB; the limit is {limit:.0f} MB)."
VOICE_TOO_LONG = "🎤 That recording is too long for me ({length}; the limit is {limit})."
CONTEXT_TOO_LONG = (
    "Our conversation has grown too long for me to follow. Send /reset and ask me again, please."
)
OUTAGE = (
    "⏳ The AI service is having trouble right now. Your message is saved and I'll answer it "
    "as soon as it recovers."
)
RATE_LIMITED = "⏳ Too many requests right now, please wait a moment. I'll answer as soon as I can."
VOICE_OUTAGE = (
    "🎤 The transcription service is having trouble right now. Your voice message is saved and "
    "I'll transcribe it as soon as it recovers."
)

# A message that could not be answered for good, by cause (FAILED for everything else).
FAILED = "😔 Sorry, I couldn't answer that message. Please try again in a little while."
_FAILED_BY_CAUSE = {
    Cause.TIMEOUT: "⌛ The AI service took too long to answer. Please try again.",
    Cause.UNAVAILABLE: "😔 The AI service is temporarily unavailable. Please try again in a few minutes.",
    Cause.RATE_LIMITED: "⏳ Too many requests right now. Please wait a moment and send that again.",
    Cause.CIRCUIT_OPEN: (
        "😔 The AI service is still having trouble, so I couldn't answer that message. "
        "Please try again later."
    ),
    Cause.QUOTA: "😔 The AI service is unavailable right now. Please try again later.",
    Cause.AUTH: "😔 The AI service is unavailable right now. Please try again later.",
    Cause.CONTEXT_TOO_LONG: CONTEXT_TOO_LONG,
    Cause.TELEGRAM: (
        "😔 Telegram was having trouble, so my answer could not be delivered. Please send it again."
    ),
    Cause.NO_SUCH_MODEL: (
        "🤷 The AI server doesn't know the model this chat uses. Choose another one with /model."
    ),
    Cause.REFUSED: "🎨 The image service won't draw that. Please try describing something else.",
    Cause.BAD_FILE: "😔 I couldn't read that file. It may be damaged, or in a form I don't know.",
    Cause.NO_TEXT: (
        "📄 That PDF has no text I can read: it looks like a scan. I can't read scanned pages yet; "
        "please send a PDF with text, or paste the text."
    ),
    Cause.NO_VISION: (
        "🖼 The model this chat uses can't see images. Choose one that can with /model, or "
        "describe the picture in words."
    ),
    Cause.THOUGHT_ONLY: (
        "🤔 I spent all my words thinking and had none left for the answer. Try a shorter question; "
        "the bot's owner can raise MAX_REPLY_TOKENS."
    ),
}
VOICE_FAILED = "🎤 I couldn't transcribe your voice message. Please try again, or type it."
_VOICE_FAILED_BY_CAUSE = {
    Cause.TIMEOUT: "🎤 Transcribing your voice message took too long. Please try again, or type it.",
    Cause.UNAVAILABLE: (
        "🎤 The transcription service is temporarily unavailable. Please type your message, "
        "or try again in a few minutes."
    ),
    Cause.CIRCUIT_OPEN: (
        "🎤 The transcription service is still having trouble. Please type your message, or try again later."
    ),
    Cause.QUOTA: "🎤 Voice messages can't be transcribed right now. Please type your message.",
    Cause.AUTH: "🎤 Voice messages can't be transcribed right now. Please type your message.",
    Cause.TELEGRAM: (
        "🎤 Telegram was having trouble, so I couldn't finish with your voice message. Please send it again."
    ),
}


def duration(seconds: float) -> str:
    """A length for people: seconds under two minutes, minutes and seconds above (rounded down,
    so a note just over a limit never reads as equal to it)."""
    if seconds < 120:  # tenths rounded up, so 10.04 s never reads as a limit of 10 s
        return f"{math.ceil(seconds * 10) / 10:.1f}".rstrip("0").rstrip(".") + " s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def failed(cause: Cause | None) -> str:
    """What the user hears when their message could not be answered, never the error's text."""
    return _FAILED_BY_CAUSE.get(cause, FAILED) if cause else FAILED


def voice_failed(cause: Cause | None) -> str:
    return _VOICE_FAILED_BY_CAUSE.get(cause, VOICE_FAILED) if cause else VOICE_FAILED


# To admins (ADMIN_USER_IDS): the real cause, which only the bot's owner can fix.
ADMIN_ALERT = "⚠️ Bot alert: {detail}"
ALERT_UPSTREAM = "{detail}. Users are told the service is unavailable until this is fixed."
ALERT_MODEL = (
    "{detail}. The chat that uses it was told to choose another with /model; if it is "
    "OPENAI_MODEL, every chat that has not chosen one is affected: fix OPENAI_MODEL."
)
ALERT_DAILY_COST = "today's cost has reached ${spent:.2f}, over DAILY_COST_ALERT_USD (${limit:.2f})."

# Who may use the bot, how fast and how much.
NOT_ALLOWED = (
    "🔒 Sorry, this is a private bot. Your Telegram user id is {user_id}.\n\n"
    "If this is your bot, put that id in ADMIN_USER_IDS and restart it. Otherwise its owner can "
    "let you in by adding your id to ALLOWED_USER_IDS."
)
GROUP_NOT_ALLOWED = (
    "🔒 This bot isn't enabled in this group. The bot's owner can enable it by adding this chat's "
    "id, {chat_id}, to ALLOWED_CHAT_IDS."
)
RATE_LIMITED_USER = (
    "⏳ You're sending messages faster than I can take them. That message was not processed; "
    "please wait {seconds} s and send it again."
)
RATE_LIMITED_GLOBAL = (
    "⏳ I'm very busy right now. That message was not processed; please try again in {seconds} s."
)
BUDGET_USER_DAY = "💸 You've used today's budget (${limit:.2f}). It resets at midnight UTC."
BUDGET_USER_MONTH = "💸 You've used this month's budget (${limit:.2f}). It resets on the 1st (UTC)."
BUDGET_GLOBAL = "💸 This bot has used its budget for today. Please try again after midnight UTC."
USAGE = (
    "📊 Your usage\n"
    "Today: {day.requests} calls, {day.prompt_tokens} + {day.completion_tokens} tokens, "
    "{day_minutes:.1f} min of voice, {day.images} pictures, {day.spoken_chars} characters read aloud, "
    "${day.cost_usd:.4f}\n"
    "This month: {month.requests} calls, {month.prompt_tokens} + {month.completion_tokens} tokens, "
    "{month_minutes:.1f} min of voice, {month.images} pictures, {month.spoken_chars} characters read "
    "aloud, ${month.cost_usd:.4f}"
)
ADMIN_ONLY = "🔒 Sorry, that command is for the bot's admins."
ADMIN_PRIVATE = "🔒 Please use admin commands in a private chat with me: their reports name other users."

# Photos and documents.
IMAGE_MARKER = "[{count} image(s) sent earlier, no longer shown] "  # to the model, in older turns
IMAGE_QUESTION = "What is in this image? Describe it briefly."  # to the model, for a photo alone
DOCUMENT_QUESTION = (  # to the model, for a document alone
    "Summarise this document briefly, then offer to answer questions about it."
)
DOCUMENT_TURN = "{question}\n\n[Document: {name}{cut}]\n{text}"  # what the model (and memory) gets
DOCUMENT_CUT = ", only its first {chars} characters"
IMAGE_ACK = "🖼 Looking at your photo…"
ALBUM_ACK = "🖼 Looking at your photos…"
ALBUM_CUT = "🖼 I looked at the first {count} photos of that album."
DOCUMENT_ACK = "📄 Reading {name}…"
VISION_OFF = "I can't look at pictures here. Please describe it in words."
DOCUMENT_UNSUPPORTED = "📎 I can't read that kind of file. I can read {supported}."
DOCUMENT_TOO_BIG = "📄 That file is too large for me ({size:.1f} MB; the limit is {limit:g} MB)."
DOCUMENT_WAS_CUT = "✂️ That document was long: I read only its first {chars} characters."

# Voice replies (/voice): what is said aloud in place of what is not worth reading out.
SPOKEN_CODE = "(the code is in the text)"
SPOKEN_LINK = "(a link)"
SPOKEN_REST = "The rest is in the text."
VOICE_MODE = (
    "🔊 Voice replies here: {mode}.\n\n/voice on: every answer also comes as a voice note\n"
    "/voice auto: when you send a voice note\n/voice off: text only"
)
VOICE_MODE_SET = "🔊 Voice replies: {mode}."
VOICE_MODE_BAD = "Send /voice on, /voice auto or /voice off."
TTS_OFF = "🔇 Voice replies are turned off on this bot."
VOICE_REPLY_FAILED = "🔇 I couldn't make a voice note of that answer this time."

# /export
EXPORT_USAGE = "Send /export for a Markdown file of our conversation, or /export json for JSON."
EXPORT_ADMINS_ONLY = "🔒 Only this group's admins can export its conversation."
EXPORT_NOTHING = "There is nothing to export: I don't remember any conversation here."
EXPORT_CAPTION = "📄 Our conversation as I remember it: {count} messages."
EXPORT_CUT = " The oldest {count} were left out to keep the file small."

# Pictures drawn with /image.
IMAGE_USAGE = "🎨 Tell me what to draw: /image followed by a description, like /image a lighthouse at dawn."
IMAGE_OFF = "🎨 Drawing pictures is turned off here."
RETRY_IMAGE = "🎨 My last answer was a picture: send /image again to get another one."
IMAGE_REMEMBERED = "[image generated: {prompt}]"  # the answer kept in memory, so the model knows

# This chat's settings: /settings, /model, /persona and their buttons.
ON, OFF = "on", "off"
DEFAULT_MARK = " (default)"
MEMORY_ON = "on (the last {count} messages, for {days} days)"
SETTINGS = (
    "⚙️ Settings for this chat\n\n"
    "🧠 Model: {model}\n🎭 Persona: {persona} — {description}\n"
    "⚡ Streaming: {stream}\n💾 Memory: {memory}\n🔊 Voice replies: {voice} (/voice)"
)
MODELS = "🧠 This chat uses {model}. Choose a model:"
MEMORY_DISABLED = "off (for every chat: the bot's owner set HISTORY_MESSAGES=0)"
MODELS_UNAVAILABLE = (
    "\n\nI couldn't get the AI server's list of models just now, so only these are shown. Try "
    "again in a minute, or send /model followed by a model's name."
)
MODELS_UNLISTED = (
    "\n\nThe AI server doesn't list its models, so only these are shown. To use another, send "
    "/model followed by its name."
)
PERSONAS = "🎭 This chat's persona is {persona}. Choose one:\n\n{lines}"
BUTTON_MODEL = "🧠 Model"
BUTTON_PERSONA = "🎭 Persona"
BUTTON_STREAM = "⚡ Streaming: turn {state}"
BUTTON_MEMORY = "💾 Memory: turn {state}"
BUTTON_PREVIOUS = "◀ Back a page"
BUTTON_NEXT = "Page {page} of {pages} ▶"
BUTTON_BACK = "⚙️ All settings"
MODEL_SET = "✅ This chat now uses {model}."
MODEL_SAME = "This chat already uses {model}."
MODEL_NOT_ALLOWED = "🚫 {model} isn't one of the models allowed here. /model lists them."
MODEL_UNKNOWN = "🤷 The AI server doesn't offer a model called {model}. /model lists the ones it does."
MODEL_BAD_NAME = "That doesn't look like a model name. Send /model to choose from a list."
PERSONA_SET = "🎭 Persona set to {persona}. I started a fresh conversation."
PERSONA_SAME = "This chat already uses the {persona} persona."
PERSONA_UNKNOWN = "🤷 I don't know a persona called {persona}. /persona lists them."
STREAM_SET = "⚡ Streaming is {state}."
MEMORY_SET = "💾 Memory is {state}."
MEMORY_OFF_NOTE = "💾 Memory is off: I forgot our conversation, and each message now stands alone."
ADMINS_ONLY = "🔒 Only this group's admins can change its settings."
MENU_STALE = "This menu is out of date. Send /settings for a fresh one."
