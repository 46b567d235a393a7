"""The throwaway PostgreSQL the later backend's tests run on: it starts, serves SQL on loopback
with the features the job queue will need (SKIP LOCKED, LISTEN/NOTIFY, advisory locks), and is
gone afterwards. It skips, saying why, where PostgreSQL cannot run; .ci/run fails on that skip
where the server's programs exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import postgres as pg


def test_the_cluster_serves_what_the_queue_will_need(postgres: pg.Cluster) -> None:
    assert int(postgres.psql("SHOW server_version_num")) >= 150000
    assert postgres.psql("SHOW listen_addresses") in ("127.0.0.1", "localhost", "*", "")
    postgres.psql(
        "DROP TABLE IF EXISTS probe; CREATE TABLE probe (id int PRIMARY KEY, state text);"
        "INSERT INTO probe VALUES (1, 'queued'), (2, 'queued'), (3, 'queued')"
    )
    claimed = postgres.psql(
        "WITH next AS (SELECT id FROM probe WHERE state = 'queued' ORDER BY id LIMIT 2"
        " FOR UPDATE SKIP LOCKED) UPDATE probe SET state = 'running' FROM next"
        " WHERE probe.id = next.id RETURNING probe.id"
    )
    assert sorted(claimed.split()) == ["1", "2"]
    assert postgres.psql("SELECT pg_try_advisory_lock(42)") == "t"
    postgres.psql("LISTEN jobs; NOTIFY jobs, 'queued'")
    postgres.psql("DROP TABLE probe")


def test_a_cluster_is_removed_when_stopped() -> None:
    reason = pg.unavailable()
    if reason is not None:
        pytest.skip(reason)
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("an existing server (TEST_DATABASE_URL) is used: no cluster of ours to remove")
    cluster = pg.start()
    assert cluster.directory is not None and Path(cluster.directory, "data", "PG_VERSION").is_file()
    assert cluster.psql("SELECT 1") == "1"
    pg.stop(cluster)
    assert not cluster.directory.exists()
