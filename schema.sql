-- wharf index schema: the one source of truth for what the index holds.
-- Operators may read it with `wharf sql "select ..."` or the sqlite3 shell;
-- the views at the end are the documented entry points for inspection.
-- Times are milliseconds since the Unix epoch (UTC). Paths are relative to the
-- data directory. This file is the snapshot of the latest migration.

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
-- Retention candidates: ready files by (entity, created desc), paged by id.
CREATE INDEX files_retention ON files (entity_id, created_ms DESC, id) WHERE state = 'ready';
-- The few files not ready (writing, deleting, lost, corrupt), for status and fsck.
CREATE INDEX files_not_ready ON files (state) WHERE state <> 'ready';
CREATE INDEX files_entity ON files (entity_id);

-- Datasets and projects that exports are made of.
CREATE TABLE entities (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    version           INTEGER NOT NULL DEFAULT 1,      -- bumped when its files change
    last_export_ms    INTEGER                           -- touched on every export request
);
-- Cache cleanup visits only entities exported within the TTL window.
CREATE INDEX entities_last_export ON entities (last_export_ms) WHERE last_export_ms IS NOT NULL;

-- The export cache: different parameters never overwrite each other's result,
-- and a changed entity makes a new version rather than a stale hit.
CREATE TABLE exports (
    id              INTEGER PRIMARY KEY,
    entity_id       INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    entity_version  INTEGER NOT NULL,
    format          TEXT    NOT NULL,                   -- exporter plugin name
    params_sha256   TEXT    NOT NULL,
    file_id         INTEGER REFERENCES files(id) ON DELETE SET NULL,
    created_ms      INTEGER NOT NULL,
    last_access_ms  INTEGER NOT NULL,
    UNIQUE (entity_id, entity_version, format, params_sha256)
);

-- Leases: a holder renews while it works; an expired lease may be taken over.
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

-- One row per file and destination.
CREATE TABLE sync_status (
    file_id          INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    destination_id   INTEGER NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'in_progress', 'synced', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER,
    last_error       TEXT,
    remote_ref       TEXT,
    verified_sha256  TEXT,
    PRIMARY KEY (file_id, destination_id)
);
CREATE INDEX sync_status_backlog ON sync_status (state, next_attempt_ms) WHERE state IN ('pending', 'failed');

-- The one queue for everything the workers do.
CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT    NOT NULL CHECK (kind IN ('ingest', 'export', 'sync', 'retention', 'gc')),
    unique_key       TEXT,                              -- single-flight: one live job per key
    payload          TEXT    NOT NULL DEFAULT '{}',     -- JSON
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    owner            TEXT,                              -- lease holder while running
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    finished_ms      INTEGER
);
CREATE UNIQUE INDEX jobs_single_flight ON jobs (unique_key) WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX jobs_ready ON jobs (state, next_attempt_ms);

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

-- Files waiting to be synced, oldest first.
CREATE VIEW sync_backlog AS
SELECT d.name AS destination, f.path, f.size, s.state, s.attempts, s.next_attempt_ms, s.last_error
FROM sync_status s JOIN files f ON f.id = s.file_id JOIN destinations d ON d.id = s.destination_id
WHERE s.state IN ('pending', 'in_progress', 'failed');

-- Bytes and file counts by kind and entity.
CREATE VIEW disk_usage AS
SELECT f.kind, e.name AS entity, count(*) AS files, sum(f.size) AS bytes
FROM files f LEFT JOIN entities e ON e.id = f.entity_id
WHERE f.state IN ('writing', 'ready', 'deleting')
GROUP BY f.kind, e.name;

-- Leases past their expiry: their holder died or stopped renewing.
CREATE VIEW stale_locks AS
SELECT name, owner, acquired_ms, expires_ms
FROM locks WHERE expires_ms < CAST(strftime('%s', 'now') AS INTEGER) * 1000;

-- The export cache with what each entry is made of.
CREATE VIEW export_cache AS
SELECT e.name AS entity, x.entity_version, x.format, x.params_sha256, f.path, f.size, x.created_ms, x.last_access_ms
FROM exports x JOIN entities e ON e.id = x.entity_id LEFT JOIN files f ON f.id = x.file_id;

-- Everything that failed for good, newest first.
CREATE VIEW failures AS
SELECT 'job' AS what, CAST(id AS TEXT) AS id, kind, last_error AS error, finished_ms AS at_ms FROM jobs WHERE state = 'failed'
UNION ALL
SELECT 'sync', f.path, d.name, s.last_error, s.next_attempt_ms
FROM sync_status s JOIN files f ON f.id = s.file_id JOIN destinations d ON d.id = s.destination_id WHERE s.state = 'failed'
ORDER BY at_ms DESC;
