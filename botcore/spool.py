"""Files a job keeps on disk between paying for something and handing it to Telegram (a drawn
picture, a spoken answer), so a retry or a restart sends it again instead of paying twice.
Written whole or not at all (fsync, then rename); read and deleted in a thread."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


async def keep(path: Path, data: bytes) -> None:
    await asyncio.to_thread(_write, path, data)


async def read(path: Path) -> bytes | None:
    """The kept bytes; None if they are gone."""
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None


async def drop(path: Path) -> None:
    await asyncio.to_thread(path.unlink, missing_ok=True)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
