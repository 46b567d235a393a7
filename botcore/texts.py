"""Every sentence the bot says to chat users, in one place. Never an error's own text."""

from __future__ import annotations

START = (
    "👋 Hi! I'm an AI assistant. Send me a message and I'll answer; I remember our recent "
    "conversation (/reset makes me forget it).\n\n/help lists what I can do."
)
HELP = (
    "I answer your messages with an AI model and remember the last few messages of this chat.\n\n"
    "/reset — forget our conversation\n/help — this message"
)
RESET = "🧹 Done: I forgot our conversation ({count} messages)."
RESET_EMPTY = "🧹 Done: there was nothing to forget."
UNKNOWN_COMMAND = "I don't know that command. /help lists what I can do."
NOT_TEXT = "I understand text messages. Please write to me in words."
FAILED = "😔 Sorry, I couldn't answer that message. Please try again in a little while."

COMMANDS = (("start", "Start the bot"), ("help", "What I can do"), ("reset", "Forget our conversation"))
