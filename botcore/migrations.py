"""The numbered schema migrations. Migration N moves ``PRAGMA user_version`` from N-1 to N.
Append only: a released migration is never edited."""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the job queue.
    (
        """
        CREATE TABLE jobs (
            -- AUTOINCREMENT: an id is never reused after the purge empties the table, so rows
            -- keyed on a job id (memory, usage) and log lines always mean one job.
            id             INTEGER PRIMARY KEY AUTOINCREMENT,
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
    # 2: conversation memory and usage records.
    (
        """
        CREATE TABLE messages (
            id         INTEGER PRIMARY KEY,
            chat_id    INTEGER NOT NULL,
            role       TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
            content    TEXT    NOT NULL,
            created_at REAL    NOT NULL,
            job_id     INTEGER  -- the job that stored it: a retried job never stores a turn twice
        )
        """,
        "CREATE INDEX messages_chat ON messages (chat_id, id)",
        "CREATE INDEX messages_created ON messages (created_at)",
        "CREATE UNIQUE INDEX messages_job_role ON messages (job_id, role) WHERE job_id IS NOT NULL",
        """
        CREATE TABLE usage (
            id                INTEGER PRIMARY KEY,
            created_at        REAL    NOT NULL,
            job_id            INTEGER,
            chat_id           INTEGER,
            user_id           INTEGER,
            kind              TEXT    NOT NULL,  -- 'chat', 'transcription'
            model             TEXT    NOT NULL,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            audio_seconds     REAL    NOT NULL DEFAULT 0,
            cost_usd          REAL    NOT NULL DEFAULT 0
        )
        """,
        "CREATE UNIQUE INDEX usage_job_kind ON usage (job_id, kind) WHERE job_id IS NOT NULL",
        "CREATE INDEX usage_created ON usage (created_at)",
        # Small named values that must survive restarts (e.g. the last persisted update_id).
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    ),
    # 3: budgets add up one user's spending per day and month on every message.
    ("CREATE INDEX usage_user ON usage (user_id, created_at)",),
    # 4: usage is keyed by the billed call, not by the job row: a job revived by /retry <id> is a
    # new row with the same dedup key, and a failed call that was billed is recorded too.
    (
        "ALTER TABLE usage ADD COLUMN billing_key TEXT",
        "UPDATE usage SET billing_key = 'job:' || job_id || ':' || kind WHERE job_id IS NOT NULL",
        "DROP INDEX usage_job_kind",
        "CREATE UNIQUE INDEX usage_billing_key ON usage (billing_key) WHERE billing_key IS NOT NULL",
    ),
    # 5: the per-group order check reads two indexes instead of one. The worker's statement sets
    # `state` on every row it claims or finishes, and SQLite then rewrites each row's entry in
    # every index whose WHERE reads `state`, changed or not: jobs_group's entries, scattered over
    # the whole index by group, were written twice per job. A queued-only index is written only
    # by the claim (which must remove the entry), and the running-only one stays a page or two.
    (
        "DROP INDEX jobs_group",
        "CREATE INDEX jobs_queued_group ON jobs (group_key, id) WHERE state = 'queued'",
        "CREATE INDEX jobs_running_group ON jobs (group_key, id) WHERE state = 'running'",
    ),
    # 6: a call whose tokens the server did not report (a stream without a usage chunk) is
    # recorded with an estimate, and marked so.
    ("ALTER TABLE usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0",),
    # 7: each chat's own model, persona, streaming and memory (/model, /persona, /settings).
    (
        """
        CREATE TABLE chat_prefs (
            chat_id    INTEGER PRIMARY KEY,
            model      TEXT,     -- NULL: the bot's default (OPENAI_MODEL)
            persona    TEXT,     -- NULL: the assistant persona
            stream     INTEGER,  -- NULL: STREAM
            memory     INTEGER,  -- NULL: on
            updated_at REAL NOT NULL
        )
        """,
    ),
    # 8: a photo question is remembered with its images' Telegram file ids (JSON), not their bytes.
    ("ALTER TABLE messages ADD COLUMN images TEXT",),
    # 9: pictures generated (/image), counted and priced per picture.
    ("ALTER TABLE usage ADD COLUMN images INTEGER NOT NULL DEFAULT 0",),
    # 10: voice replies: each chat's mode (/voice), and the characters read aloud, priced.
    (
        "ALTER TABLE chat_prefs ADD COLUMN voice TEXT",
        "ALTER TABLE usage ADD COLUMN spoken_chars INTEGER NOT NULL DEFAULT 0",
    ),
)
