"""The storage backends the contract suite runs against: one entry per backend, its name and how to
open it on a test's own empty data. Adding a backend (PostgreSQL) is one more entry in BACKENDS.
A test module imports the fixture, ``from .storage_backends import storage_fixture  # noqa: F401``,
and its tests take ``storage`` (the fixture's name; so its tests' arguments shadow no import)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from botcore.sqlite_storage import SqliteStorage
from botcore.storage import Storage

# Opens a backend on ``place``, the test's own empty directory (its ``tmp_path``). Opening the same
# place again must reach the same data, as a restart does; no two places share data. A server
# backend derives its own database or schema from ``place`` and calls ``pytest.skip`` when no
# server was configured for the tests.
Opener = Callable[[Path], Awaitable[Storage]]


async def open_sqlite(place: Path) -> Storage:
    return await SqliteStorage.open(place / "bot.db")


BACKENDS: dict[str, Opener] = {
    "sqlite": open_sqlite,
}


@pytest.fixture(name="storage", params=list(BACKENDS), ids=list(BACKENDS))
async def storage_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    """A freshly opened, empty backend; closed after the test."""
    backend = await BACKENDS[request.param](tmp_path)
    try:
        yield backend
    finally:
        await backend.close()
