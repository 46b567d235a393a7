"""Baseline 2: a minimal stateless LLM bot: python-telegram-bot + the openai SDK, one completion
per message and a reply. No memory, no durability, no typing indicator.
Usage: python minimal_llm_bot.py TOKEN API_URL OPENAI_BASE_URL"""

import sys

from openai import AsyncOpenAI
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


def main() -> None:
    token, api, llm_url = sys.argv[1], sys.argv[2], sys.argv[3]
    client = AsyncOpenAI(api_key="k", base_url=llm_url, timeout=30, max_retries=0)

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.message.text is not None
        response = await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": update.message.text}]
        )
        await update.message.reply_text(response.choices[0].message.content or "…")

    app = (
        Application.builder()
        .token(token)
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .concurrent_updates(True)
        .build()
    )
    app.add_handler(MessageHandler(filters.TEXT, answer))
    app.run_polling(poll_interval=0.0, timeout=10, drop_pending_updates=False)


if __name__ == "__main__":
    main()
