-- 0002_supervisor: activity probes, the gate, the escalation ladder (SPEC §7), and counters.
--
-- `agents` gains the settings of SPEC §7.5 (`activity_cmd`, `only_if`, `echo_ms`, `grace_ms`,
-- `escalate_limit`, `escalate_window_ms`), the hold `held_until_at`, and the last value seen from
-- each activity source (`heartbeat_seen_at`, `probe_seen_at`), so a restart never counts one
-- again. `next_due_at` becomes the later of P, A and H. A generated column cannot be altered, so
-- `agents` is rebuilt; `poke_log` is rebuilt too, for its new kinds (`skip`, `escalation`) and
-- outcome (`held`), for an AUTOINCREMENT id, which is never given out again after a purge (so
-- `history --follow` cannot miss a row), and without `pgid`, which nothing read (recovery finds
-- a command by its environment) and which cost every poke a third flushed transaction. Both rebuilds follow SQLite's documented procedure
-- (create the new table, copy, drop the old, rename), inside the one transaction the migration
-- runs in, keeping every row and every id. The views are dropped first and made again, with the
-- new columns added after the old ones.
--
-- `rungs` holds each agent's escalation ladder, removed with the agent. `counters` holds, per
-- agent, how many log rows of each kind and final outcome there have been, kept by triggers in
-- the same transaction as the row, so `poked metrics` reads counters that survive restarts and
-- prunes without scanning the log. It starts from the log as it stands.

DROP VIEW agent_status;
DROP VIEW poke_history;

CREATE TABLE agents_v2 (
    id                  TEXT PRIMARY KEY NOT NULL
                        CHECK (length(id) BETWEEN 1 AND 128
                               AND id GLOB '[A-Za-z0-9]*'
                               AND id NOT GLOB '*[^A-Za-z0-9._:/@-]*'),
    -- (OR chains rather than IN lists: SQLite builds a temporary B-tree for an IN list each
    -- time a CHECK runs.)
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
    -- Commands are JSON arrays of argv strings (checked in full by poked; SQLite 3.40 does not
    -- allow the JSON functions in a schema read with trusted_schema=OFF, so only the shape is
    -- checked here).
    command             TEXT CHECK (command IS NULL OR (command LIKE '[%]' AND length(command) > 2)),
    heartbeat_file      TEXT CHECK (heartbeat_file IS NULL OR substr(heartbeat_file, 1, 1) = '/'),
    -- SPEC §7.1: the activity probe, and how long after a poke its value is the poke's own echo.
    activity_cmd        TEXT CHECK (activity_cmd IS NULL
                                    OR (activity_cmd LIKE '[%]' AND length(activity_cmd) > 2)),
    echo_ms             INTEGER NOT NULL DEFAULT 2000 CHECK (echo_ms >= 0),
    -- SPEC §7.2: the gate.
    only_if             TEXT CHECK (only_if IS NULL OR (only_if LIKE '[%]' AND length(only_if) > 2)),
    -- SPEC §7.3: the hold after an escalation, and the cap (at most escalate_limit escalation
    -- commands in any escalate_window_ms).
    grace_ms            INTEGER NOT NULL DEFAULT 300000 CHECK (grace_ms >= 0),
    escalate_limit      INTEGER NOT NULL DEFAULT 3 CHECK (escalate_limit >= 1),
    escalate_window_ms  INTEGER NOT NULL DEFAULT 21600000 CHECK (escalate_window_ms > 0),
    -- H of SPEC §3: set by a skip (one wait) or an escalation (the grace); NULL when none.
    held_until_at       INTEGER,
    -- The last value seen from each activity source, counted or not (SPEC §3).
    heartbeat_seen_at   INTEGER,
    probe_seen_at       INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    -- SPEC §3: NULL when paused, else the later of P (created, or last poke + wait),
    -- A (last activity + fresh, ignored when never active) and H (the hold, ignored when NULL).
    next_due_at         INTEGER GENERATED ALWAYS AS (
                            CASE WHEN paused THEN NULL
                                 ELSE max(coalesce(last_poke_at + wait_ms, created_at),
                                          coalesce(last_activity_at + fresh_ms, created_at),
                                          coalesce(held_until_at, created_at))
                            END) STORED
) STRICT;

INSERT INTO agents_v2 (id, strategy, base_interval_ms, max_interval_ms, factor, jitter, fresh_ms,
                       very_stale_ms, current_interval_ms, wait_ms, consecutive_misses, last_poke_at,
                       last_activity_at, paused, command, heartbeat_file, created_at, updated_at)
SELECT id, strategy, base_interval_ms, max_interval_ms, factor, jitter, fresh_ms, very_stale_ms,
       current_interval_ms, wait_ms, consecutive_misses, last_poke_at, last_activity_at, paused,
       command, heartbeat_file, created_at, updated_at
FROM agents;

DROP TABLE agents;
ALTER TABLE agents_v2 RENAME TO agents;

-- The due query (`WHERE next_due_at <= ? ORDER BY next_due_at, id`, with no sort step) and the
-- next-due query (`min(next_due_at)`).
CREATE INDEX agents_next_due ON agents (next_due_at, id);

CREATE TABLE rungs (
    agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE ON UPDATE CASCADE,
    -- the misses in a row at which this rung fires, instead of the poke
    misses   INTEGER NOT NULL CHECK (misses >= 1),
    command  TEXT NOT NULL CHECK (command LIKE '[%]' AND length(command) > 2),
    PRIMARY KEY (agent_id, misses)
) STRICT, WITHOUT ROWID;

CREATE TABLE poke_log_v2 (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id           TEXT NOT NULL,
    at                 INTEGER NOT NULL,
    kind               TEXT NOT NULL CHECK (kind = 'added' OR kind = 'updated' OR kind = 'removed'
                                            OR kind = 'paused' OR kind = 'resumed' OR kind = 'poke'
                                            OR kind = 'miss' OR kind = 'activity' OR kind = 'reset'
                                            OR kind = 'skip' OR kind = 'escalation'),
    interval_ms        INTEGER NOT NULL CHECK (interval_ms > 0),
    consecutive_misses INTEGER NOT NULL CHECK (consecutive_misses >= 0),
    outcome            TEXT CHECK (outcome = 'pending' OR outcome = 'sent' OR outcome = 'ok'
                                   OR outcome = 'failed' OR outcome = 'timeout' OR outcome = 'error'
                                   OR outcome = 'interrupted' OR outcome = 'held'),
    exit_code          INTEGER,
    duration_ms        INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    detail             TEXT,
    -- pokes, escalations and skips have an outcome; nothing else does
    CHECK ((kind = 'poke' OR kind = 'escalation' OR kind = 'skip') = (outcome IS NOT NULL))
) STRICT;

-- Rows keep their ids (AUTOINCREMENT continues after the highest); the process group column
-- of version 1 is not carried over: nothing read it.
INSERT INTO poke_log_v2 (id, agent_id, at, kind, interval_ms, consecutive_misses, outcome,
                         exit_code, duration_ms, detail)
SELECT id, agent_id, at, kind, interval_ms, consecutive_misses, outcome, exit_code, duration_ms,
       detail
FROM poke_log ORDER BY id;

DROP TABLE poke_log;
ALTER TABLE poke_log_v2 RENAME TO poke_log;

CREATE INDEX poke_log_agent_at ON poke_log (agent_id, at);
CREATE INDEX poke_log_at ON poke_log (at);
-- Finding unfinished pokes and escalations without scanning the log.
CREATE INDEX poke_log_pending ON poke_log (outcome) WHERE outcome = 'pending';

-- The log is append-only: only a pending row's outcome (and its exit code, duration and
-- detail) may be filled in, once.
CREATE TRIGGER poke_log_append_only
BEFORE UPDATE OF id, agent_id, at, kind, interval_ms, consecutive_misses ON poke_log
BEGIN
    SELECT RAISE(ABORT, 'poke_log is append-only');
END;

CREATE TRIGGER poke_log_outcome_once
BEFORE UPDATE OF outcome ON poke_log
WHEN OLD.outcome IS NOT 'pending'
BEGIN
    SELECT RAISE(ABORT, 'only a pending outcome can be recorded');
END;

-- Per agent, how many log rows of each kind and final outcome ('' for kinds without one).
-- A pending row counts once its outcome is recorded.
CREATE TABLE counters (
    agent_id TEXT NOT NULL,
    kind     TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    n        INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (agent_id, kind, outcome)
) STRICT, WITHOUT ROWID;

INSERT INTO counters (agent_id, kind, outcome, n)
SELECT agent_id, kind, coalesce(outcome, ''), count(*)
FROM poke_log
WHERE outcome IS NOT 'pending'
GROUP BY agent_id, kind, coalesce(outcome, '');

CREATE TRIGGER poke_log_count_row
AFTER INSERT ON poke_log
WHEN NEW.outcome IS NOT 'pending'
BEGIN
    INSERT INTO counters (agent_id, kind, outcome, n)
    VALUES (NEW.agent_id, NEW.kind, coalesce(NEW.outcome, ''), 1)
    ON CONFLICT (agent_id, kind, outcome) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER poke_log_count_outcome
AFTER UPDATE OF outcome ON poke_log
WHEN NEW.outcome IS NOT 'pending'
BEGIN
    INSERT INTO counters (agent_id, kind, outcome, n)
    VALUES (NEW.agent_id, NEW.kind, NEW.outcome, 1)
    ON CONFLICT (agent_id, kind, outcome) DO UPDATE SET n = n + 1;
END;

-- For people in the sqlite3 shell: times as ISO-8601 UTC, durations as 7m30s. The columns of
-- version 1 come first, in their order; the new ones follow.
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
    heartbeat_file,
    strftime('%Y-%m-%dT%H:%M:%fZ', held_until_at / 1000.0, 'unixepoch') AS held_until,
    CASE WHEN fresh_ms IS NULL THEN NULL
         WHEN fresh_ms < 1000 THEN fresh_ms || 'ms'
         ELSE (CASE WHEN fresh_ms >= 86400000 THEN (fresh_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN fresh_ms % 86400000 >= 3600000 THEN (fresh_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN fresh_ms % 3600000 >= 60000 THEN (fresh_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN fresh_ms % 60000 = 0 THEN ''
                    WHEN fresh_ms % 1000 = 0 THEN (fresh_ms % 60000 / 1000) || 's'
                    ELSE (fresh_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', fresh_ms % 1000), '0') || 's'
               END)
    END AS fresh,
    CASE WHEN very_stale_ms IS NULL THEN NULL
         WHEN very_stale_ms < 1000 THEN very_stale_ms || 'ms'
         ELSE (CASE WHEN very_stale_ms >= 86400000 THEN (very_stale_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN very_stale_ms % 86400000 >= 3600000 THEN (very_stale_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN very_stale_ms % 3600000 >= 60000 THEN (very_stale_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN very_stale_ms % 60000 = 0 THEN ''
                    WHEN very_stale_ms % 1000 = 0 THEN (very_stale_ms % 60000 / 1000) || 's'
                    ELSE (very_stale_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', very_stale_ms % 1000), '0') || 's'
               END)
    END AS very_stale,
    activity_cmd,
    CASE WHEN echo_ms IS NULL THEN NULL
         WHEN echo_ms < 1000 THEN echo_ms || 'ms'
         ELSE (CASE WHEN echo_ms >= 86400000 THEN (echo_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN echo_ms % 86400000 >= 3600000 THEN (echo_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN echo_ms % 3600000 >= 60000 THEN (echo_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN echo_ms % 60000 = 0 THEN ''
                    WHEN echo_ms % 1000 = 0 THEN (echo_ms % 60000 / 1000) || 's'
                    ELSE (echo_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', echo_ms % 1000), '0') || 's'
               END)
    END AS echo,
    only_if,
    (SELECT group_concat(r.misses || ':' || r.command, ' ') FROM (SELECT misses, command FROM rungs WHERE agent_id = agents.id ORDER BY misses) r) AS rungs,
    CASE WHEN grace_ms IS NULL THEN NULL
         WHEN grace_ms < 1000 THEN grace_ms || 'ms'
         ELSE (CASE WHEN grace_ms >= 86400000 THEN (grace_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN grace_ms % 86400000 >= 3600000 THEN (grace_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN grace_ms % 3600000 >= 60000 THEN (grace_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN grace_ms % 60000 = 0 THEN ''
                    WHEN grace_ms % 1000 = 0 THEN (grace_ms % 60000 / 1000) || 's'
                    ELSE (grace_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', grace_ms % 1000), '0') || 's'
               END)
    END AS grace,
    escalate_limit || '/' || (CASE WHEN escalate_window_ms IS NULL THEN NULL
         WHEN escalate_window_ms < 1000 THEN escalate_window_ms || 'ms'
         ELSE (CASE WHEN escalate_window_ms >= 86400000 THEN (escalate_window_ms / 86400000) || 'd' ELSE '' END)
           || (CASE WHEN escalate_window_ms % 86400000 >= 3600000 THEN (escalate_window_ms % 86400000 / 3600000) || 'h' ELSE '' END)
           || (CASE WHEN escalate_window_ms % 3600000 >= 60000 THEN (escalate_window_ms % 3600000 / 60000) || 'm' ELSE '' END)
           || (CASE WHEN escalate_window_ms % 60000 = 0 THEN ''
                    WHEN escalate_window_ms % 1000 = 0 THEN (escalate_window_ms % 60000 / 1000) || 's'
                    ELSE (escalate_window_ms % 60000 / 1000) || '.' || rtrim(printf('%03d', escalate_window_ms % 1000), '0') || 's'
               END)
    END) AS escalate_limit,
    strftime('%Y-%m-%dT%H:%M:%fZ', heartbeat_seen_at / 1000.0, 'unixepoch') AS heartbeat_seen,
    strftime('%Y-%m-%dT%H:%M:%fZ', probe_seen_at / 1000.0, 'unixepoch') AS probe_seen
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
