"""The numbered schema migrations. Migration N moves ``PRAGMA user_version`` from N-1 to N.
Append only: a released migration is never edited."""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the job queue.
    (
        """
        CREATE TABLE jobs (
            id             INTEGER PRIMARY KEY,
            kind           TEXT    NOT NULL,
            payload        TEXT    NOT NULL,
            dedup_key      TEXT    UNIQUE,
            group_key      TEXT,
            state          TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
            attempts       INTEGER NOT NULL DEFAULT 0,
            max_attempts   INTEGER NOT NULL,
            run_at         REAL    NOT NULL,
            created_at     REAL    NOT NULL,
            updated_at     REAL    NOT NULL,
            lease_token    TEXT,
            lease_until    REAL,
            deferred_since REAL,
            finished_at    REAL,
            last_error     TEXT,
            checkpoint     TEXT
        )
        """,
        # The claim reads only ready rows, per kind, oldest first: its cost does not grow with the backlog.
        "CREATE INDEX jobs_ready ON jobs (kind, run_at, id) WHERE state = 'queued'",
        # Per-group order: a job may start only when no older job of its group is queued or running.
        "CREATE INDEX jobs_group ON jobs (group_key, id) WHERE state IN ('queued', 'running')",
        # Deliberately no index on lease_until or finished_at: every index is written on each
        # claim and finish, while the lease reaper (every 20 s) and the purge (every minute) can
        # afford to scan a table that retention keeps small.
    ),
)
