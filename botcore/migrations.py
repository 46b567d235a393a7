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
            state          TEXT    NOT NULL
                           CHECK (state IN ('blocked', 'queued', 'running', 'done', 'dead')),
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
        "CREATE INDEX jobs_group ON jobs (group_key, id) WHERE state IN ('blocked', 'queued', 'running')",
        "CREATE INDEX jobs_lease ON jobs (lease_until) WHERE state = 'running'",
        "CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE state IN ('done', 'dead')",
        # Per-group order: only the oldest unfinished job of a group is ever 'queued'; the rest wait
        # as 'blocked'. When a job of a group finishes, the next one is promoted in the same statement.
        """
        CREATE TRIGGER jobs_promote_next AFTER UPDATE OF state ON jobs
        WHEN NEW.group_key IS NOT NULL
         AND NEW.state IN ('done', 'dead')
         AND OLD.state NOT IN ('done', 'dead')
        BEGIN
            UPDATE jobs SET state = 'queued', updated_at = NEW.updated_at
            WHERE id = (SELECT id FROM jobs
                        WHERE group_key = NEW.group_key AND state = 'blocked'
                        ORDER BY id LIMIT 1)
              AND NOT EXISTS (SELECT 1 FROM jobs
                              WHERE group_key = NEW.group_key AND state IN ('queued', 'running'));
        END
        """,
    ),
)
