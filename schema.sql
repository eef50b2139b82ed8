-- wharf index schema: the one source of truth for what the index holds.
-- Operators may read it with `wharf sql "select ..."` or the sqlite3 shell;
-- the views at the end are the documented entry points for inspection.
-- Times are milliseconds since the Unix epoch (UTC), in INTEGER columns named
-- `*_ms`. Paths are relative to the data directory. This file is the snapshot
-- of the latest migration (host/src/index/migrations/, applied in order by
-- `PRAGMA user_version`); a test fails if the two drift.
-- Every query lives in host/src/index/; the indexes below are named after the
-- query they serve, and `cargo bench -p wharf --bench index` prints their
-- query plans on a 1,000,000-file index (see BENCHMARKS.md).

-- Every tracked file.
CREATE TABLE files (
    id              INTEGER PRIMARY KEY,
    path            TEXT    NOT NULL UNIQUE,
    size            INTEGER NOT NULL CHECK (size >= 0),
    mtime_ms        INTEGER NOT NULL,
    sha256          TEXT    NOT NULL CHECK (length(sha256) = 64),
    kind            TEXT    NOT NULL DEFAULT 'capture',       -- capture | export | backup | ...
    entity_id       INTEGER REFERENCES entities(id) ON DELETE SET NULL,
    state           TEXT    NOT NULL DEFAULT 'ready'
                    CHECK (state IN ('writing', 'ready', 'deleting', 'lost', 'corrupt')),
    created_ms      INTEGER NOT NULL,
    last_access_ms  INTEGER
);
-- Retention candidates: ready files by (entity, created desc), paged by
-- (entity_id, created_ms, id) without sorting (index/inspect.rs).
CREATE INDEX files_retention ON files (entity_id, created_ms DESC, id) WHERE state = 'ready';
-- The few files not ready (writing, deleting, lost, corrupt), for status and fsck.
CREATE INDEX files_not_ready ON files (state) WHERE state <> 'ready';
-- An entity's files (exports), and the foreign key when an entity is deleted.
CREATE INDEX files_entity ON files (entity_id);
-- Retention's age preselection (a policy's `older_than_ms`): ready files by
-- the newest of their indexing, modification and last access, so "older
-- than a cutoff" is a range scan (index/retention.rs, migration 6).
CREATE INDEX files_age ON files (max(created_ms, mtime_ms, coalesce(last_access_ms, 0))) WHERE state = 'ready';

-- Datasets and projects that exports are made of.
-- `last_export_ms` is the design's `last_export_date`: touched on every export
-- request (NULL: never exported), so cache cleanup visits only entities
-- exported inside the cache TTL window and its cost follows recent activity.
CREATE TABLE entities (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    version           INTEGER NOT NULL DEFAULT 1,      -- bumped when its files change
    last_export_ms    INTEGER                           -- touched on every export request
);
-- Cache cleanup visits only entities exported within the TTL window.
CREATE INDEX entities_last_export ON entities (last_export_ms) WHERE last_export_ms IS NOT NULL;

-- An entity's attributes (`released = true`, `branch = main`), each key once;
-- retention policies read them (a batch carries its entities' attributes).
CREATE TABLE entity_attributes (
    entity_id  INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    key        TEXT    NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    value      TEXT    NOT NULL CHECK (length(value) <= 4096),
    PRIMARY KEY (entity_id, key)
) WITHOUT ROWID;

-- The export cache: different parameters never overwrite each other's result,
-- and a changed entity makes a new version rather than a stale hit.
-- `last_access_ms` is touched by every hit and download (extending the
-- entry's life); `media_type` is what the exporter said its result is (the
-- download's Content-Type; added by migration 5, where SQLite's ALTER put it).
CREATE TABLE exports (
    id              INTEGER PRIMARY KEY,
    entity_id       INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    entity_version  INTEGER NOT NULL,
    format          TEXT    NOT NULL,                   -- exporter plugin name
    params_sha256   TEXT    NOT NULL,
    file_id         INTEGER REFERENCES files(id) ON DELETE SET NULL,
    created_ms      INTEGER NOT NULL,
    last_access_ms  INTEGER NOT NULL, media_type TEXT,
    UNIQUE (entity_id, entity_version, format, params_sha256)
);
-- Deleting a file (retention deletes many) looks up the exports made of it.
CREATE INDEX exports_file ON exports (file_id) WHERE file_id IS NOT NULL;

-- Leases: a holder renews while it works; an expired lease may be taken over.
-- Retention never deletes a file held by a live lease named `file:<id>`,
-- `download:<id>:...` (a download of it in progress), or, for a file of an
-- entity that is not itself an export, `export:<entity id>:...` (an export of
-- that entity being written).
CREATE TABLE locks (
    name         TEXT    PRIMARY KEY,
    owner        TEXT    NOT NULL,                      -- host:pid:process-start
    acquired_ms  INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL
);

-- Remote storage files are synced to.
CREATE TABLE destinations (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    plugin     TEXT    NOT NULL,                        -- uploader plugin name
    url        TEXT    NOT NULL,
    required   INTEGER NOT NULL DEFAULT 0 CHECK (required IN (0, 1))  -- retention waits for it
);

-- One row per file and destination. States:
--   pending      waiting for its first attempt, due at next_attempt_ms;
--   in_progress  an uploader is sending it;
--   synced       the remote copy exists (remote_ref) and its sha256 was verified;
--   failed       the last attempt failed (last_error): retried at
--                next_attempt_ms, or never again when next_attempt_ms is NULL
--                (failed for good, listed in `failures`).
-- `job_id` (migration 5) is the sync job uploading an in_progress row, so a
-- row whose job died is queued again.
CREATE TABLE sync_status (
    file_id          INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    destination_id   INTEGER NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'in_progress', 'synced', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms  INTEGER CHECK (state <> 'pending' OR next_attempt_ms IS NOT NULL),
    last_attempt_ms  INTEGER,                           -- when the last attempt ended
    last_error       TEXT,
    remote_ref       TEXT,
    verified_sha256  TEXT, job_id INTEGER,
    PRIMARY KEY (file_id, destination_id)
);
-- The sync workers' queue: due rows in next-attempt order, paged by
-- (next_attempt_ms, file_id, destination_id) without sorting; state and
-- attempts ride along so a page reads no sync_status row. Only the backlog
-- is in it, so its size follows the backlog, not the index.
-- (Deleting a destination scans sync_status: rare enough not to index.)
CREATE INDEX sync_status_backlog ON sync_status (next_attempt_ms, file_id, destination_id, state, attempts)
    WHERE state IN ('pending', 'failed');
-- Uploads under way (at most one per worker): status, and crash recovery
-- re-queueing what a dead daemon left in progress.
CREATE INDEX sync_status_in_progress ON sync_status (destination_id) WHERE state = 'in_progress';

-- The one queue for everything the workers do. States:
--   queued     waiting for a worker, due at next_attempt_ms (a retry waits out its backoff);
--   running    claimed by `owner` (host~scope:pid:start:instance), whose
--              lease (lease_expires_ms) its heartbeat renews;
--   done       finished; failed: failed for good (last_error), listed in `failures`;
--   cancelled  cancelled by a user, or absorbed by another job: absorbed_by
--              (migration 7, hence its place) is the job whose run covers it.
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
, absorbed_by INTEGER);
-- Single-flight: at most one queued or running job per key, race-free
-- across processes (the insert of a second one fails).
CREATE UNIQUE INDEX jobs_single_flight ON jobs (unique_key) WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
-- The claim: the due queued jobs in (next attempt, id) order.
CREATE INDEX jobs_ready ON jobs (next_attempt_ms, id) WHERE state = 'queued';
-- Heartbeats and crash recovery: the running jobs, by owner.
CREATE INDEX jobs_running ON jobs (owner) WHERE state = 'running';
-- Status and the failures view.
CREATE INDEX jobs_failed ON jobs (finished_ms) WHERE state = 'failed';

-- The plugins the daemon loaded, as pinned.
CREATE TABLE plugins (
    name         TEXT    PRIMARY KEY,
    version      TEXT    NOT NULL,
    world        TEXT    NOT NULL CHECK (world IN ('exporter', 'retention', 'uploader')),
    sha256       TEXT    NOT NULL CHECK (length(sha256) = 64),
    source       TEXT    NOT NULL,                      -- 'bundled' or the manifest path
    loaded_ms    INTEGER NOT NULL
);

-- Audit log: every deletion with its plugin and reason, every terminal failure.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    kind       TEXT    NOT NULL,                        -- deleted | failed | quarantined | ...
    file_id    INTEGER,
    job_id     INTEGER,
    plugin     TEXT,
    message    TEXT    NOT NULL
);
CREATE INDEX events_at ON events (at_ms);

-- Views for inspection ---------------------------------------------------
-- Read them with `wharf sql "SELECT * FROM sync_backlog LIMIT 20"` or the
-- sqlite3 shell (they use no function newer than SQLite 3.37). Each is cheap
-- to read a page of on a large index; counts over the whole of `disk_usage`
-- scan the files.

-- sync_backlog: every file still to sync, per destination, next due first:
-- in progress, pending, and failed-but-retried (`due` is 1 when its next
-- attempt time has come). Columns: destination, file_id, path, size, state,
-- attempts, next_attempt_ms, due, last_error.
CREATE VIEW sync_backlog AS
SELECT d.name AS destination, s.file_id, f.path, f.size, s.state, s.attempts, s.next_attempt_ms,
       s.next_attempt_ms <= CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AS due,
       s.last_error
FROM sync_status s JOIN files f ON f.id = s.file_id JOIN destinations d ON d.id = s.destination_id
WHERE s.state IN ('pending', 'failed') AND s.next_attempt_ms IS NOT NULL
UNION ALL
SELECT d.name, s.file_id, f.path, f.size, s.state, s.attempts, s.next_attempt_ms, 0, s.last_error
FROM sync_status s JOIN files f ON f.id = s.file_id JOIN destinations d ON d.id = s.destination_id
WHERE s.state = 'in_progress'
ORDER BY next_attempt_ms;

-- disk_usage: bytes and file counts of the files on disk (writing, ready,
-- deleting) by kind and entity (NULL: files of no entity). Columns: kind,
-- entity, files, bytes.
CREATE VIEW disk_usage AS
SELECT f.kind, e.name AS entity, count(*) AS files, sum(f.size) AS bytes
FROM files f LEFT JOIN entities e ON e.id = f.entity_id
WHERE f.state IN ('writing', 'ready', 'deleting')
GROUP BY f.kind, e.name;

-- stale_locks: leases past their expiry: their holder died or stopped
-- renewing, and the next acquirer takes them over. Columns: name, owner,
-- acquired_ms, expires_ms, expired_for_ms.
CREATE VIEW stale_locks AS
SELECT name, owner, acquired_ms, expires_ms,
       CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) - expires_ms AS expired_for_ms
FROM locks WHERE expires_ms < CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);

-- export_cache: each cached export with the file it is, and whether it is
-- current (made from the entity's present version; an old version is never
-- served and is only waiting for cleanup). Columns: entity, entity_version,
-- current, format, params_sha256, path, size, created_ms, last_access_ms.
CREATE VIEW export_cache AS
SELECT e.name AS entity, x.entity_version, x.entity_version = e.version AS current, x.format,
       x.params_sha256, f.path, f.size, x.created_ms, x.last_access_ms
FROM exports x JOIN entities e ON e.id = x.entity_id LEFT JOIN files f ON f.id = x.file_id;

-- failures: everything that failed for good, newest first: jobs in state
-- failed, and syncs that will not be retried (state failed, no next attempt).
-- Columns: what ('job' | 'sync'), id (job id, or the file's path), kind (job
-- kind, or destination name), error, at_ms.
CREATE VIEW failures AS
SELECT 'job' AS what, CAST(id AS TEXT) AS id, kind, last_error AS error, finished_ms AS at_ms
FROM jobs WHERE state = 'failed'
UNION ALL
SELECT 'sync', f.path, d.name, s.last_error, s.last_attempt_ms
FROM sync_status s JOIN files f ON f.id = s.file_id JOIN destinations d ON d.id = s.destination_id
-- The first term selects the sync_status_backlog index, which holds failed rows.
WHERE s.state IN ('pending', 'failed') AND s.state = 'failed' AND s.next_attempt_ms IS NULL
ORDER BY at_ms DESC;
