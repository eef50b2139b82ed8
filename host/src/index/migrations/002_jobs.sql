-- Migration 2: the jobs queue the scheduler and worker pool run on.
-- A job kind is any registered handler (checked by the host, not here); a
-- running job is held under a lease its owner renews; a trigger while a job
-- runs sets `rerun` so exactly one more run follows; `cancelled` is a state.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt,
-- and the view that reads it is dropped and made again around that.
DROP VIEW failures;
DROP INDEX jobs_single_flight;
DROP INDEX jobs_ready;
ALTER TABLE jobs RENAME TO jobs_v1;

-- The one queue for everything the workers do. States:
--   queued     waiting for a worker, due at next_attempt_ms (a retry waits out its backoff);
--   running    claimed by `owner` (host~scope:pid:start:instance), whose
--              lease (lease_expires_ms) its heartbeat renews;
--   done       finished; failed: failed for good (last_error), listed in `failures`;
--   cancelled  cancelled by a user, or absorbed by another job (last_error says which).
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    kind              TEXT    NOT NULL,                 -- ingest | export | sync | retention | gc | ...
    unique_key        TEXT,                             -- single-flight: one live job per key
    payload           TEXT    NOT NULL DEFAULT '{}',    -- JSON
    state             TEXT    NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    next_attempt_ms   INTEGER NOT NULL,
    owner             TEXT,                             -- the claiming process while running
    lease_expires_ms  INTEGER,                          -- while running; renewed by the owner's heartbeat
    rerun             INTEGER NOT NULL DEFAULT 0 CHECK (rerun IN (0, 1)),      -- one more run follows this one
    cancel_requested  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    progress          INTEGER,                          -- work done, in the handler's unit
    progress_total    INTEGER,
    last_error        TEXT,
    created_ms        INTEGER NOT NULL,
    started_ms        INTEGER,                          -- when the last attempt started
    finished_ms       INTEGER
);
INSERT INTO jobs (id, kind, unique_key, payload, state, attempts, next_attempt_ms, owner, last_error,
                  created_ms, finished_ms)
SELECT id, kind, unique_key, payload, state, attempts, next_attempt_ms, owner, last_error, created_ms, finished_ms
FROM jobs_v1;
DROP TABLE jobs_v1;
-- Single-flight: at most one queued or running job per key, race-free
-- across processes (the insert of a second one fails).
CREATE UNIQUE INDEX jobs_single_flight ON jobs (unique_key) WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
-- The claim: the due queued jobs in (next attempt, id) order.
CREATE INDEX jobs_ready ON jobs (next_attempt_ms, id) WHERE state = 'queued';
-- Heartbeats and crash recovery: the running jobs, by owner.
CREATE INDEX jobs_running ON jobs (owner) WHERE state = 'running';
-- Status and the failures view.
CREATE INDEX jobs_failed ON jobs (finished_ms) WHERE state = 'failed';

CREATE VIEW failures AS
SELECT 'job' AS what, CAST(id AS TEXT) AS id, kind, last_error AS error, finished_ms AS at_ms
FROM jobs WHERE state = 'failed'
UNION ALL
SELECT 'sync', f.path, d.name, s.last_error, s.last_attempt_ms
FROM sync_status s JOIN files f ON f.id = s.file_id JOIN destinations d ON d.id = s.destination_id
-- The first term selects the sync_status_backlog index, which holds failed rows.
WHERE s.state IN ('pending', 'failed') AND s.state = 'failed' AND s.next_attempt_ms IS NULL
ORDER BY at_ms DESC;
