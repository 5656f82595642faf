-- 0001_init: the first schema of poked.
--
-- `agents` holds each agent's settings and backoff state; `next_due_at` is computed by SQLite
-- from the other columns (SPEC §3) so the due query is one index range scan. `poke_log` is the
-- append-only history of every transition; only a poke's outcome may be filled in later.
-- `daemon` is the single row a running `poked run` keeps about itself. The views show the same
-- data with ISO-8601 UTC times and human intervals, for people in the sqlite3 shell.
-- CHECK constraints repeat every rule of SPEC §2, so a hand edit cannot store an impossible state.
-- Nothing here needs a SQLite newer than 3.37 (STRICT tables, generated columns).

-- "pokd": marks the file as poked's, so poked never adopts another program's database.
PRAGMA application_id = 1886350180;

CREATE TABLE agents (
    id                  TEXT PRIMARY KEY NOT NULL
                        CHECK (length(id) BETWEEN 1 AND 128
                               AND id GLOB '[A-Za-z0-9]*'
                               AND id NOT GLOB '*[^A-Za-z0-9._:/@-]*'),
    -- (OR chains rather than IN lists: SQLite builds a temporary B-tree for an IN list each
    -- time a CHECK runs, which more than doubled the cost of appending a log row.)
    strategy            TEXT NOT NULL
                        CHECK (strategy = 'fixed' OR strategy = 'geometric' OR strategy = 'exponential'),
    base_interval_ms    INTEGER NOT NULL CHECK (base_interval_ms > 0),
    max_interval_ms     INTEGER NOT NULL CHECK (max_interval_ms >= base_interval_ms),
    factor              REAL NOT NULL CHECK (factor >= 1.0 AND factor <= 1.7976931348623157e308),
    jitter              REAL NOT NULL CHECK (jitter >= 0.0 AND jitter <= 1.0),
    fresh_ms            INTEGER NOT NULL CHECK (fresh_ms >= 0),
    very_stale_ms       INTEGER NOT NULL CHECK (very_stale_ms >= fresh_ms),
    current_interval_ms INTEGER NOT NULL
                        CHECK (current_interval_ms BETWEEN base_interval_ms AND max_interval_ms),
    wait_ms             INTEGER NOT NULL CHECK (wait_ms BETWEEN 1 AND current_interval_ms),
    consecutive_misses  INTEGER NOT NULL CHECK (consecutive_misses >= 0),
    last_poke_at        INTEGER,
    last_activity_at    INTEGER,
    paused              INTEGER NOT NULL CHECK (paused = 0 OR paused = 1),
    -- a JSON array of argv strings (checked in full by poked; SQLite 3.40 does not allow the
    -- JSON functions in a schema read with trusted_schema=OFF, so only its shape is checked here)
    command             TEXT CHECK (command IS NULL OR (command LIKE '[%]' AND length(command) > 2)),
    heartbeat_file      TEXT CHECK (heartbeat_file IS NULL OR substr(heartbeat_file, 1, 1) = '/'),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- SPEC §3: NULL when paused, else the later of P (created, or last poke + wait) and
    -- A (last activity + fresh, ignored when never active).
    next_due_at         INTEGER GENERATED ALWAYS AS (
                            CASE WHEN paused THEN NULL
                                 ELSE max(coalesce(last_poke_at + wait_ms, created_at),
                                          coalesce(last_activity_at + fresh_ms, created_at))
                            END) STORED
) STRICT;

-- The due query (`WHERE next_due_at <= ? ORDER BY next_due_at, id`, with no sort step) and the
-- next-due query (`min(next_due_at)`).
CREATE INDEX agents_next_due ON agents (next_due_at, id);

CREATE TABLE poke_log (
    id                 INTEGER PRIMARY KEY,
    agent_id           TEXT NOT NULL,
    at                 INTEGER NOT NULL,
    kind               TEXT NOT NULL CHECK (kind = 'added' OR kind = 'updated' OR kind = 'removed'
                                            OR kind = 'paused' OR kind = 'resumed' OR kind = 'poke'
                                            OR kind = 'miss' OR kind = 'activity' OR kind = 'reset'),
    interval_ms        INTEGER NOT NULL CHECK (interval_ms > 0),
    consecutive_misses INTEGER NOT NULL CHECK (consecutive_misses >= 0),
    outcome            TEXT CHECK (outcome = 'pending' OR outcome = 'sent' OR outcome = 'ok'
                                   OR outcome = 'failed' OR outcome = 'timeout' OR outcome = 'error'
                                   OR outcome = 'interrupted'),
    exit_code          INTEGER,
    duration_ms        INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    detail             TEXT,
    -- the process group of a poke's command while it runs, so a restarted daemon can stop it
    pgid               INTEGER,
    CHECK ((kind = 'poke') = (outcome IS NOT NULL))
) STRICT;

CREATE INDEX poke_log_agent_at ON poke_log (agent_id, at);
CREATE INDEX poke_log_at ON poke_log (at);
-- Finding unfinished pokes on start-up without scanning the log.
CREATE INDEX poke_log_pending ON poke_log (outcome) WHERE outcome = 'pending';

-- The log is append-only: only a pending poke's outcome (and its bookkeeping) may change.
CREATE TRIGGER poke_log_append_only
BEFORE UPDATE OF id, agent_id, at, kind, interval_ms, consecutive_misses ON poke_log
BEGIN
    SELECT RAISE(ABORT, 'poke_log is append-only');
END;

CREATE TRIGGER poke_log_outcome_once
BEFORE UPDATE OF outcome ON poke_log
WHEN OLD.outcome IS NOT 'pending'
BEGIN
    SELECT RAISE(ABORT, 'only a pending poke''s outcome can be recorded');
END;

-- The running daemon's record of itself (at most one row).
CREATE TABLE daemon (
    singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_pass_at INTEGER,
    stopped_at   INTEGER
) STRICT;

-- For people in the sqlite3 shell: times as ISO-8601 UTC, intervals as 7m30s. (SQLite 3.37 has no
-- user functions in views, so the interval formatting is spelt out for each column.)
CREATE VIEW agent_status AS
SELECT
    id,
    CASE WHEN paused THEN 'paused'
         WHEN next_due_at <= CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) THEN 'due'
         WHEN consecutive_misses > 0 THEN 'backing off'
         ELSE 'waiting' END AS state,
    strategy,
    CASE WHEN current_interval_ms IS NULL THEN NULL
         WHEN current_interval_ms < 1000 THEN current_interval_ms || 'ms'
         ELSE (CASE WHEN current_interval_ms >= 86400000 THEN (current_interval_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN current_interval_ms % 86400000 >= 3600000 THEN (current_interval_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN current_interval_ms % 3600000 >= 60000 THEN (current_interval_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN current_interval_ms % 60000 = 0 THEN ''
                    WHEN current_interval_ms % 1000 = 0 THEN (current_interval_ms % 60000 / 1000) || 's'
                    ELSE (current_interval_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', current_interval_ms % 1000), '0') || 's'
               END)
    END AS interval,
    CASE WHEN wait_ms IS NULL THEN NULL
         WHEN wait_ms < 1000 THEN wait_ms || 'ms'
         ELSE (CASE WHEN wait_ms >= 86400000 THEN (wait_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN wait_ms % 86400000 >= 3600000 THEN (wait_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN wait_ms % 3600000 >= 60000 THEN (wait_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN wait_ms % 60000 = 0 THEN ''
                    WHEN wait_ms % 1000 = 0 THEN (wait_ms % 60000 / 1000) || 's'
                    ELSE (wait_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', wait_ms % 1000), '0') || 's'
               END)
    END AS wait,
    consecutive_misses AS misses,
    strftime('%Y-%m-%dT%H:%M:%fZ', last_poke_at / 1000.0, 'unixepoch') AS last_poke,
    strftime('%Y-%m-%dT%H:%M:%fZ', last_activity_at / 1000.0, 'unixepoch') AS last_activity,
    strftime('%Y-%m-%dT%H:%M:%fZ', next_due_at / 1000.0, 'unixepoch') AS next_due,
    CASE WHEN base_interval_ms IS NULL THEN NULL
         WHEN base_interval_ms < 1000 THEN base_interval_ms || 'ms'
         ELSE (CASE WHEN base_interval_ms >= 86400000 THEN (base_interval_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN base_interval_ms % 86400000 >= 3600000 THEN (base_interval_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN base_interval_ms % 3600000 >= 60000 THEN (base_interval_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN base_interval_ms % 60000 = 0 THEN ''
                    WHEN base_interval_ms % 1000 = 0 THEN (base_interval_ms % 60000 / 1000) || 's'
                    ELSE (base_interval_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', base_interval_ms % 1000), '0') || 's'
               END)
    END AS base,
    CASE WHEN max_interval_ms IS NULL THEN NULL
         WHEN max_interval_ms < 1000 THEN max_interval_ms || 'ms'
         ELSE (CASE WHEN max_interval_ms >= 86400000 THEN (max_interval_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN max_interval_ms % 86400000 >= 3600000 THEN (max_interval_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN max_interval_ms % 3600000 >= 60000 THEN (max_interval_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN max_interval_ms % 60000 = 0 THEN ''
                    WHEN max_interval_ms % 1000 = 0 THEN (max_interval_ms % 60000 / 1000) || 's'
                    ELSE (max_interval_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', max_interval_ms % 1000), '0') || 's'
               END)
    END AS max,
    factor,
    jitter,
    command,
    heartbeat_file
FROM agents;

CREATE VIEW poke_history AS
SELECT
    id,
    strftime('%Y-%m-%dT%H:%M:%fZ', at / 1000.0, 'unixepoch') AS at,
    agent_id,
    kind,
    CASE WHEN interval_ms IS NULL THEN NULL
         WHEN interval_ms < 1000 THEN interval_ms || 'ms'
         ELSE (CASE WHEN interval_ms >= 86400000 THEN (interval_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN interval_ms % 86400000 >= 3600000 THEN (interval_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN interval_ms % 3600000 >= 60000 THEN (interval_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN interval_ms % 60000 = 0 THEN ''
                    WHEN interval_ms % 1000 = 0 THEN (interval_ms % 60000 / 1000) || 's'
                    ELSE (interval_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', interval_ms % 1000), '0') || 's'
               END)
    END AS interval,
    consecutive_misses AS misses,
    outcome,
    exit_code,
    CASE WHEN duration_ms IS NULL THEN NULL
         WHEN duration_ms < 1000 THEN duration_ms || 'ms'
         ELSE (CASE WHEN duration_ms >= 86400000 THEN (duration_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN duration_ms % 86400000 >= 3600000 THEN (duration_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN duration_ms % 3600000 >= 60000 THEN (duration_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN duration_ms % 60000 = 0 THEN ''
                    WHEN duration_ms % 1000 = 0 THEN (duration_ms % 60000 / 1000) || 's'
                    ELSE (duration_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', duration_ms % 1000), '0') || 's'
               END)
    END AS duration,
    detail
FROM poke_log;
