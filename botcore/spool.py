"""Files a job keeps on disk between paying for something and handing it to Telegram (a drawn
picture, a spoken answer), so a retry or a restart sends it again instead of paying twice.
Written whole or not at all (fsync, then rename); read and deleted in a thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path


def name(key: str) -> str:
    """A file name for what a billing key paid for (keys hold characters paths should not)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


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


async def sweep(folder: Path, *, older_than_s: float) -> int:
    """Delete what stayed behind (a job that died after paying, an interrupted write): files not
    touched for ``older_than_s``. Returns how many."""
    return await asyncio.to_thread(_sweep, folder, older_than_s)


def _sweep(folder: Path, older_than_s: float) -> int:
    if not folder.is_dir():
        return 0
    before, removed = time.time() - older_than_s, 0
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
