"""PostgreSQL's numbered schema migrations. Migration N moves ``bot_schema.version`` from N-1 to
N. Append only: a released migration is never edited. Migration 1 is SQLite's schema as of its
version 10, in PostgreSQL's types: times stay seconds since the epoch (``double precision``),
JSON stays text (``jsonb`` refuses the ``\\u0000`` a Telegram message may carry)."""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: everything SQLite's migrations 1 to 10 built.
    (
        """
        CREATE TABLE jobs (
            -- An identity is never reused, so rows keyed on a job id always mean one job.
            id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind           TEXT             NOT NULL,
            payload        TEXT             NOT NULL,
            dedup_key      TEXT             UNIQUE,
            group_key      TEXT,
            state          TEXT             NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
            attempts       INTEGER          NOT NULL DEFAULT 0,
            max_attempts   INTEGER          NOT NULL,
            run_at         DOUBLE PRECISION NOT NULL,
            created_at     DOUBLE PRECISION NOT NULL,
            updated_at     DOUBLE PRECISION NOT NULL,
            lease_token    TEXT,
            lease_until    DOUBLE PRECISION,
            deferred_since DOUBLE PRECISION,
            finished_at    DOUBLE PRECISION,
            last_error     TEXT,
            checkpoint     TEXT
        )
        """,
        # The claim reads only ready rows, per kind, oldest first.
        "CREATE INDEX jobs_ready ON jobs (kind, run_at, id) WHERE state = 'queued'",
        # Per-group order: a job may start only when no older job of its group is unfinished.
        "CREATE INDEX jobs_open_group ON jobs (group_key, id) WHERE state IN ('queued', 'running')",
        # The lease reaper, every 20 s in every process, reads the running rows only.
        "CREATE INDEX jobs_running ON jobs (lease_until) WHERE state = 'running'",
        "CREATE INDEX jobs_finished ON jobs (state, finished_at) WHERE state IN ('done', 'dead')",
        """
        CREATE TABLE messages (
            id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            chat_id    BIGINT           NOT NULL,
            role       TEXT             NOT NULL CHECK (role IN ('user', 'assistant')),
            content    TEXT             NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            job_id     BIGINT,  -- the job that stored it: a retried job never stores a turn twice
            images     TEXT     -- a photo question's Telegram file ids (JSON)
        )
        """,
        "CREATE INDEX messages_chat ON messages (chat_id, id)",
        "CREATE INDEX messages_created ON messages (created_at)",
        "CREATE UNIQUE INDEX messages_job_role ON messages (job_id, role) WHERE job_id IS NOT NULL",
        """
        CREATE TABLE usage (
            id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            created_at        DOUBLE PRECISION NOT NULL,
            billing_key       TEXT UNIQUE,
            job_id            BIGINT,
            chat_id           BIGINT,
            user_id           BIGINT,
            kind              TEXT             NOT NULL,
            model             TEXT             NOT NULL,
            prompt_tokens     BIGINT           NOT NULL DEFAULT 0,
            completion_tokens BIGINT           NOT NULL DEFAULT 0,
            audio_seconds     DOUBLE PRECISION NOT NULL DEFAULT 0,
            cost_usd          DOUBLE PRECISION NOT NULL DEFAULT 0,
            estimated         BOOLEAN          NOT NULL DEFAULT FALSE,
            images            INTEGER          NOT NULL DEFAULT 0,
            spoken_chars      BIGINT           NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX usage_created ON usage (created_at)",
        "CREATE INDEX usage_user ON usage (user_id, created_at)",
        'CREATE TABLE kv (key TEXT PRIMARY KEY COLLATE "C", value TEXT NOT NULL)',
        """
        CREATE TABLE chat_prefs (
            chat_id    BIGINT PRIMARY KEY,
            model      TEXT,
            persona    TEXT,
            stream     BOOLEAN,
            memory     BOOLEAN,
            voice      TEXT,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """,
    ),
    # 2: per-user and overall rate limits, counted across processes (sliding-window counters: the
    # hits of each key in its current and previous window, which starts at ``window_start``).
    (
        """
        CREATE TABLE rate_hits (
            key          TEXT    NOT NULL,
            window_start BIGINT  NOT NULL,  -- seconds since the epoch
            hits         INTEGER NOT NULL,
            PRIMARY KEY (key, window_start)
        )
        """,
    ),
)
