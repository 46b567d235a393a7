"""A self-hosted Telegram AI assistant: one asyncio process, SQLite as the durable job queue."""

__version__ = "0.1.0"
