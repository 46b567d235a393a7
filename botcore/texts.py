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
NOT_TEXT = "I understand text and voice messages. Please write or speak to me."
VOICE_ACK = "🎤 Processing your voice message…"
VOICE_TRANSCRIPT = "🎤 {text}"
VOICE_NO_SPEECH = "🎤 I couldn't hear any speech in that voice message."
VOICE_FAILED = "🎤 I couldn't transcribe your voice message. Please try again, or type it."
VOICE_OFF = "Voice messages are turned off here. Please type your message."
VOICE_TOO_BIG = "🎤 That recording is too large for me ({size:.0f} MB; the limit is {limit:.0f} MB)."
VOICE_TOO_LONG = "🎤 That recording is too long for me ({minutes:.0f} min; the limit is {limit:.0f} min)."
CONTEXT_TOO_LONG = (
    "Our conversation has grown too long for me to follow. Send /reset and ask me again, please."
)
OUTAGE = (
    "⏳ The AI service is having trouble right now. Your message is saved and I'll answer it "
    "as soon as it recovers."
)
FAILED = "😔 Sorry, I couldn't answer that message. Please try again in a little while."

COMMANDS = (("start", "Start the bot"), ("help", "What I can do"), ("reset", "Forget our conversation"))
