"""The storage backends the contract suite runs against: one entry per backend, its name and how to
open it on a test's own empty data. Adding a backend is one more entry in BACKENDS.
A test module imports the fixtures, ``from .storage_backends import open_backend_fixture,
storage_fixture  # noqa: F401``, and its tests take ``storage`` (a freshly opened backend) or
``open_backend`` (an ``Opener``, to open one place twice, as a restart does)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from botcore.pg_storage import PgStorage
from botcore.sqlite_storage import SqliteStorage
from botcore.storage import Storage

# Opens a backend on ``place``, the test's own empty directory (its ``tmp_path``). Opening the same
# place again must reach the same data, as a restart does; no two places share data.
Opener = Callable[[Path], Awaitable[Storage]]


def sqlite_opener(request: pytest.FixtureRequest) -> Opener:
    async def open_sqlite(place: Path) -> Storage:
        return await SqliteStorage.open(place / "bot.db")

    return open_sqlite


def schema_for(place: Path) -> str:
    """A schema of the shared test cluster that belongs to ``place`` alone."""
    return "t_" + hashlib.sha1(str(place).encode()).hexdigest()[:20]


def postgres_opener(request: pytest.FixtureRequest) -> Opener:
    """The session's throwaway cluster (skips, with the reason, where there is none); each place
    gets a schema of its own."""
    url = request.getfixturevalue("postgres").url

    async def open_postgres(place: Path) -> Storage:
        return await PgStorage.open(url, schema=schema_for(place), max_connections=4)

    return open_postgres


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Opener]] = {
    "sqlite": sqlite_opener,
    "postgres": postgres_opener,
}


@pytest.fixture(name="open_backend", params=list(BACKENDS), ids=list(BACKENDS))
def open_backend_fixture(request: pytest.FixtureRequest) -> Opener:
    return BACKENDS[request.param](request)


@pytest.fixture(name="storage")
async def storage_fixture(open_backend: Opener, tmp_path: Path) -> AsyncIterator[Storage]:
    """A freshly opened, empty backend; closed after the test."""
    backend = await open_backend(tmp_path)
    try:
        yield backend
    finally:
        await backend.close()
