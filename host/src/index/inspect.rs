//! Read-only inspection of the index: the one statement `wharf sql` runs, the
//! summary `wharf status` prints, and the first pages of the two queues the
//! daemon reads on a large index, the sync backlog and the retention
//! candidates.
//!
//! Invariant: nothing here writes. `wharf sql` runs on a connection opened
//! read-only with `query_only` on, and refuses before running it any
//! statement SQLite reports as writing (and ATTACH, DETACH, VACUUM, which
//! touch other files); a write that slipped past would still fail on the
//! read-only connection, with the same message. The paged queries are
//! keyset-paginated over the partial indexes named in schema.sql, so a page
//! costs the same on a thousand files as on a million: [`query_plans`]
//! shows it and the tests hold it.
//!
//! [`query_plans`]: ReadOnlyIndex::query_plans

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, Row, params};

use super::{FileId, Index};

/// A row of `entities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub i64);

/// A row of `destinations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationId(pub i64);

/// One value of a result row, as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    /// Text that is not valid UTF-8 has its invalid bytes replaced.
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    fn from_ref(value: ValueRef<'_>) -> SqlValue {
        match value {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(n) => SqlValue::Integer(n),
            ValueRef::Real(x) => SqlValue::Real(x),
            ValueRef::Text(bytes) => SqlValue::Text(String::from_utf8_lossy(bytes).into_owned()),
            ValueRef::Blob(bytes) => SqlValue::Blob(bytes.to_vec()),
        }
    }
}

/// Receives the result of a statement while it is read, so a large result
/// streams instead of being held in memory.
pub trait RowSink {
    /// The column names, once, before any row.
    fn columns(&mut self, names: &[String]) -> anyhow::Result<()>;
    /// One row, with a value per column.
    fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()>;
}

/// What `wharf status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// When the summary was taken (ms since the epoch).
    pub now_ms: i64,
    /// Files by state and kind, ordered by state then kind.
    pub files: Vec<FileCount>,
    /// The sync backlog by destination and state: pending, failed but to be
    /// retried, in progress.
    pub sync_backlog: Vec<SyncCount>,
    /// How many rows the `failures` view has.
    pub failures: u64,
    /// The newest failures, newest first.
    pub latest_failures: Vec<Failure>,
    /// Every lease, by name.
    pub leases: Vec<LeaseStatus>,
}

/// Files of one state and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCount {
    pub state: String,
    pub kind: String,
    pub files: u64,
    pub bytes: u64,
}

/// Backlog rows of one destination and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCount {
    pub destination: String,
    pub state: String,
    pub files: u64,
    pub bytes: u64,
    /// Rows whose next attempt time has come.
    pub due: u64,
}

/// A row of the `failures` view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `job` or `sync`.
    pub what: String,
    /// The job id, or the file's path.
    pub id: String,
    /// The job kind, or the destination's name.
    pub kind: String,
    pub error: Option<String>,
    pub at_ms: Option<i64>,
}

/// A row of `locks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    pub name: String,
    pub owner: String,
    pub acquired_ms: i64,
    pub expires_ms: i64,
    /// Past its expiry: its holder died or stopped renewing, and the next
    /// acquirer takes it over.
    pub stale: bool,
}

/// A sync that is due: one file for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDue {
    pub file_id: FileId,
    pub destination_id: DestinationId,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// `pending` or `failed` (a retry).
    pub state: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// Where the next page of the sync backlog starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCursor {
    next_attempt_ms: i64,
    file_id: i64,
    destination_id: i64,
}

impl SyncCursor {
    /// The start of the backlog.
    pub const START: SyncCursor = SyncCursor {
        next_attempt_ms: i64::MIN,
        file_id: i64::MIN,
        destination_id: i64::MIN,
    };
}

impl SyncDue {
    /// The cursor of the page that follows this row.
    pub fn cursor(&self) -> SyncCursor {
        SyncCursor {
            next_attempt_ms: self.next_attempt_ms,
            file_id: self.file_id.0,
            destination_id: self.destination_id.0,
        }
    }
}

/// A ready file, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionCandidate {
    pub id: FileId,
    /// Files of no entity come first, as one group.
    pub entity_id: Option<EntityId>,
    pub path: String,
    pub kind: String,
    pub size: u64,
    pub created_ms: i64,
    pub last_access_ms: Option<i64>,
}

/// Where the next page of retention candidates starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCursor {
    entity_id: Option<i64>,
    created_ms: i64,
    id: i64,
}

impl RetentionCursor {
    /// The start: the files of no entity, then entity by entity.
    pub const START: RetentionCursor = RetentionCursor {
        entity_id: None,
        created_ms: i64::MAX,
        id: i64::MIN,
    };
}

impl RetentionCandidate {
    /// The cursor of the page that follows this row.
    pub fn cursor(&self) -> RetentionCursor {
        RetentionCursor {
            entity_id: self.entity_id.map(|e| e.0),
            created_ms: self.created_ms,
            id: self.id.0,
        }
    }
}

/// The plan SQLite chose for one of the paged queries.
#[derive(Debug, Clone)]
pub struct QueryPlan {
    pub name: &'static str,
    pub sql: &'static str,
    /// `EXPLAIN QUERY PLAN` lines, indented by depth.
    pub lines: Vec<String>,
}

/// Due syncs in next-attempt order, after a cursor: a range scan of the
/// covering index `sync_status_backlog` (its WHERE term is repeated verbatim
/// so SQLite can use the partial index), then the file's row by primary key.
const SYNC_DUE: &str = "\
SELECT s.file_id, s.destination_id, f.path, f.size, f.sha256, s.state, s.attempts, s.next_attempt_ms
FROM sync_status s JOIN files f ON f.id = s.file_id
WHERE s.state IN ('pending', 'failed') AND s.next_attempt_ms <= ?1
  AND (s.next_attempt_ms, s.file_id, s.destination_id) > (?2, ?3, ?4)
ORDER BY s.next_attempt_ms, s.file_id, s.destination_id
LIMIT ?5";

/// The rest of the cursor's entity (or of the files of no entity), newest
/// first: `files_retention` with the entity fixed. Rows created at the
/// cursor's time with an id up to the cursor's were on earlier pages.
const RETENTION_SAME_ENTITY: &str = "\
SELECT id, entity_id, path, kind, size, created_ms, last_access_ms
FROM files
WHERE state = 'ready' AND entity_id IS ?1 AND created_ms <= ?2 AND NOT (created_ms = ?2 AND id <= ?3)
ORDER BY created_ms DESC, id
LIMIT ?4";

/// The entities after the cursor's, in (entity, created desc, id) order: a
/// range scan of `files_retention`.
const RETENTION_LATER_ENTITIES: &str = "\
SELECT id, entity_id, path, kind, size, created_ms, last_access_ms
FROM files
WHERE state = 'ready' AND entity_id > ?1
ORDER BY entity_id, created_ms DESC, id
LIMIT ?2";

const STATUS_FILES: &str = "\
SELECT state, kind, count(*), sum(size) FROM files GROUP BY state, kind ORDER BY state, kind";

/// Failed-for-good rows (no next attempt) are failures, not backlog.
const STATUS_SYNC_BACKLOG: &str = "\
SELECT d.name, s.state, count(*), sum(f.size), sum(s.next_attempt_ms <= ?1)
FROM sync_status s JOIN destinations d ON d.id = s.destination_id JOIN files f ON f.id = s.file_id
WHERE s.state IN ('pending', 'failed') AND s.next_attempt_ms IS NOT NULL
GROUP BY d.name, s.state
UNION ALL
SELECT d.name, s.state, count(*), sum(f.size), 0
FROM sync_status s JOIN destinations d ON d.id = s.destination_id JOIN files f ON f.id = s.file_id
WHERE s.state = 'in_progress'
GROUP BY d.name
ORDER BY 1, 2";

const STATUS_FAILURE_COUNT: &str = "SELECT count(*) FROM failures";

const STATUS_LATEST_FAILURES: &str = "SELECT what, id, kind, error, at_ms FROM failures LIMIT ?1";

const STATUS_LEASES: &str = "SELECT name, owner, acquired_ms, expires_ms FROM locks ORDER BY name";

/// How many failures `wharf status` lists.
const LATEST_FAILURES: i64 = 5;

/// Statements that SQLite counts as read-only but that open, detach or
/// write other database files.
const REFUSED_KEYWORDS: &[&str] = &["ATTACH", "DETACH", "VACUUM"];

/// Pragmas that take an argument only to say what to read. Any other pragma
/// given a value (`= v` or `(v)`) sets something, and so do
/// [`ACTING_PRAGMAS`] without one.
const READING_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// Pragmas that do something (checkpoint, vacuum, analyze) when merely named.
const ACTING_PRAGMAS: &[&str] = &[
    "wal_checkpoint",
    "incremental_vacuum",
    "optimize",
    "shrink_memory",
];

/// The index opened read-only, for inspection while a daemon writes.
pub struct ReadOnlyIndex {
    path: PathBuf,
    connection: Connection,
}

impl std::fmt::Debug for ReadOnlyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyIndex")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyIndex {
    /// Opens the index at `path` read-only; it must exist and have a schema.
    pub fn open(path: &Path) -> anyhow::Result<ReadOnlyIndex> {
        let connection = super::open_read_only(path)?;
        connection.pragma_update(None, "query_only", true)?;
        let version: i64 = connection
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .with_context(|| format!("cannot read {}; is it a wharf index?", path.display()))?;
        if version == 0 {
            anyhow::bail!("{} has no wharf schema; run `wharf init`", path.display());
        }
        Ok(ReadOnlyIndex {
            path: path.to_path_buf(),
            connection,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version applied.
    pub fn schema_version(&self) -> anyhow::Result<u32> {
        Ok(self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Runs one read-only statement and hands its result to `sink`; returns
    /// the number of rows. A statement that would write anything fails with
    /// a message saying so, before it runs. An error of `sink` is returned
    /// as it is, so a closed pipe stays recognizable.
    pub fn run_sql(&self, sql: &str, sink: &mut dyn RowSink) -> anyhow::Result<u64> {
        if sql.trim().is_empty() {
            anyhow::bail!(
                "no SQL statement given; for example: wharf sql \"SELECT * FROM disk_usage\""
            );
        }
        let mut statement = self
            .connection
            .prepare(sql)
            .map_err(|error| statement_error(error, sql))?;
        let refused = match first_word(sql) {
            Some((word, _)) if REFUSED_KEYWORDS.contains(&word.as_str()) => true,
            // SQLite calls some reading pragmas (`PRAGMA journal_mode`)
            // writes; pragmas are judged by name and form instead, and the
            // read-only connection still stops any write.
            Some((word, rest)) if word == "PRAGMA" => pragma_acts(rest),
            _ => !statement.readonly() && statement.is_explain() == 0,
        };
        if refused {
            return Err(read_only_error(sql));
        }
        if statement.parameter_count() > 0 {
            anyhow::bail!(
                "the statement has parameters (`?`, `:name`); wharf sql takes none: write the values into it"
            );
        }
        let names: Vec<String> = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        sink.columns(&names)?;
        let mut rows = statement
            .query([])
            .map_err(|error| statement_error(error, sql))?;
        let mut values = Vec::with_capacity(names.len());
        let mut count = 0;
        while let Some(row) = rows.next().map_err(|error| statement_error(error, sql))? {
            values.clear();
            for column in 0..names.len() {
                values.push(SqlValue::from_ref(row.get_ref(column)?));
            }
            sink.row(&values)?;
            count += 1;
        }
        Ok(count)
    }

    /// The summary `wharf status` prints.
    pub fn status(&self, now_ms: i64) -> anyhow::Result<Status> {
        status(&self.connection, now_ms).context("cannot read the status from the index")
    }

    /// See [`Index::sync_due`].
    pub fn sync_due(
        &self,
        now_ms: i64,
        after: SyncCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<SyncDue>> {
        Ok(sync_due(&self.connection, now_ms, after, limit)?)
    }

    /// See [`Index::retention_candidates`].
    pub fn retention_candidates(
        &self,
        after: RetentionCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<RetentionCandidate>> {
        Ok(retention_candidates(&self.connection, after, limit)?)
    }

    /// `EXPLAIN QUERY PLAN` of the paged queries, on this index's data.
    pub fn query_plans(&self) -> anyhow::Result<Vec<QueryPlan>> {
        let named = [
            ("sync backlog (due, first page)", SYNC_DUE),
            (
                "retention candidates (rest of an entity)",
                RETENTION_SAME_ENTITY,
            ),
            (
                "retention candidates (later entities)",
                RETENTION_LATER_ENTITIES,
            ),
        ];
        let mut plans = Vec::new();
        for (name, sql) in named {
            plans.push(QueryPlan {
                name,
                sql,
                lines: explain(&self.connection, sql)?,
            });
        }
        Ok(plans)
    }
}

impl Index {
    /// The summary `wharf status` prints.
    pub fn status(&self, now_ms: i64) -> anyhow::Result<Status> {
        self.read(|db| status(db, now_ms))
    }

    /// Up to `limit` syncs due at `now_ms` (pending, or failed and due for a
    /// retry) after `after`, in next-attempt order. Pass the last row's
    /// [`SyncDue::cursor`] for the next page.
    pub fn sync_due(
        &self,
        now_ms: i64,
        after: SyncCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<SyncDue>> {
        self.read(|db| sync_due(db, now_ms, after, limit))
    }

    /// Up to `limit` ready files after `after`, ordered by (entity, created
    /// newest first, id), the files of no entity first. Pass the last row's
    /// [`RetentionCandidate::cursor`] for the next page.
    pub fn retention_candidates(
        &self,
        after: RetentionCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<RetentionCandidate>> {
        self.read(|db| retention_candidates(db, after, limit))
    }
}

fn status(db: &Connection, now_ms: i64) -> rusqlite::Result<Status> {
    let mut query = db.prepare(STATUS_FILES)?;
    let files = query
        .query_map([], |row| {
            Ok(FileCount {
                state: row.get(0)?,
                kind: row.get(1)?,
                files: count(row, 2)?,
                bytes: count(row, 3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut query = db.prepare(STATUS_SYNC_BACKLOG)?;
    let sync_backlog = query
        .query_map([now_ms], |row| {
            Ok(SyncCount {
                destination: row.get(0)?,
                state: row.get(1)?,
                files: count(row, 2)?,
                bytes: count(row, 3)?,
                due: count(row, 4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let failures = db.query_row(STATUS_FAILURE_COUNT, [], |row| count(row, 0))?;
    let mut query = db.prepare(STATUS_LATEST_FAILURES)?;
    let latest_failures = query
        .query_map([LATEST_FAILURES], |row| {
            Ok(Failure {
                what: row.get(0)?,
                id: row.get(1)?,
                kind: row.get(2)?,
                error: row.get(3)?,
                at_ms: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut query = db.prepare(STATUS_LEASES)?;
    let leases = query
        .query_map([], |row| {
            let expires_ms: i64 = row.get(3)?;
            Ok(LeaseStatus {
                name: row.get(0)?,
                owner: row.get(1)?,
                acquired_ms: row.get(2)?,
                expires_ms,
                stale: expires_ms < now_ms,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Status {
        now_ms,
        files,
        sync_backlog,
        failures,
        latest_failures,
        leases,
    })
}

fn sync_due(
    db: &Connection,
    now_ms: i64,
    after: SyncCursor,
    limit: usize,
) -> rusqlite::Result<Vec<SyncDue>> {
    let mut query = db.prepare_cached(SYNC_DUE)?;
    let rows = query.query_map(
        params![
            now_ms,
            after.next_attempt_ms,
            after.file_id,
            after.destination_id,
            sql_limit(limit)
        ],
        |row| {
            Ok(SyncDue {
                file_id: FileId(row.get(0)?),
                destination_id: DestinationId(row.get(1)?),
                path: row.get(2)?,
                size: count(row, 3)?,
                sha256: row.get(4)?,
                state: row.get(5)?,
                attempts: row.get(6)?,
                next_attempt_ms: row.get(7)?,
            })
        },
    )?;
    rows.collect()
}

fn retention_candidates(
    db: &Connection,
    after: RetentionCursor,
    limit: usize,
) -> rusqlite::Result<Vec<RetentionCandidate>> {
    let mut page = Vec::with_capacity(limit.min(10_000));
    let mut same = db.prepare_cached(RETENTION_SAME_ENTITY)?;
    let rows = same.query_map(
        params![
            after.entity_id,
            after.created_ms,
            after.id,
            sql_limit(limit)
        ],
        retention_candidate,
    )?;
    for row in rows {
        page.push(row?);
    }
    let rest = limit.saturating_sub(page.len());
    if rest == 0 {
        return Ok(page);
    }
    // Files of no entity sort first, so after them every entity is later.
    let later_than = after.entity_id.unwrap_or(i64::MIN);
    let mut later = db.prepare_cached(RETENTION_LATER_ENTITIES)?;
    for row in later.query_map(params![later_than, sql_limit(rest)], retention_candidate)? {
        page.push(row?);
    }
    Ok(page)
}

fn retention_candidate(row: &Row<'_>) -> rusqlite::Result<RetentionCandidate> {
    Ok(RetentionCandidate {
        id: FileId(row.get(0)?),
        entity_id: row.get::<_, Option<i64>>(1)?.map(EntityId),
        path: row.get(2)?,
        kind: row.get(3)?,
        size: count(row, 4)?,
        created_ms: row.get(5)?,
        last_access_ms: row.get(6)?,
    })
}

/// A count, sum or size: NULL (the sum of nothing) is 0, and the schema
/// keeps them from being negative.
fn count(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    Ok(row
        .get::<_, Option<i64>>(column)?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn explain(db: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    let mut query = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    // The plan is made at prepare time, whatever the parameters are.
    let nulls = std::iter::repeat_n(rusqlite::types::Null, query.parameter_count());
    let mut rows = query.query(rusqlite::params_from_iter(nulls))?;
    let mut depths: Vec<(i64, usize)> = Vec::new();
    let mut lines = Vec::new();
    while let Some(row) = rows.next()? {
        let (id, parent, detail): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(3)?);
        let depth = depths
            .iter()
            .find(|(known, _)| *known == parent)
            .map_or(0, |(_, depth)| depth + 1);
        depths.push((id, depth));
        lines.push(format!("{}{detail}", "  ".repeat(depth)));
    }
    Ok(lines)
}

/// The first word of `sql` after blanks and comments, upper-cased, and
/// what follows it.
fn first_word(sql: &str) -> Option<(String, &str)> {
    let rest = skip_blanks(sql);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| (rest[..end].to_ascii_uppercase(), &rest[end..]))
}

fn skip_blanks(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return rest;
        }
    }
}

/// Whether a pragma (the text after `PRAGMA`) sets or does something rather
/// than reads. SQLite reports some of those as read-only statements: they
/// would fail or change only this connection, but a refusal is clearer.
fn pragma_acts(after_pragma: &str) -> bool {
    let Some((mut name, mut rest)) = first_word(after_pragma) else {
        return false;
    };
    // `PRAGMA schema.name`
    if let Some(after_dot) = skip_blanks(rest).strip_prefix('.') {
        match first_word(after_dot) {
            Some((word, after)) => (name, rest) = (word, after),
            None => return true,
        }
    }
    let name = name.to_ascii_lowercase();
    let has_value = skip_blanks(rest).starts_with(['=', '(']);
    ACTING_PRAGMAS.contains(&name.as_str())
        || (has_value && !READING_PRAGMAS.contains(&name.as_str()))
}

fn read_only_error(sql: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "wharf sql is read-only: `{}` would change the index or open another database; nothing was changed. \
         Use the wharf commands to change state (see `wharf --help`)",
        abbreviate(sql)
    )
}

/// A failed statement: a write the read-only connection stopped (the same
/// message as a refused one), or an SQL error with SQLite's own words.
fn statement_error(error: rusqlite::Error, sql: &str) -> anyhow::Error {
    match error.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) => read_only_error(sql),
        _ if matches!(error, rusqlite::Error::MultipleStatement) => anyhow::anyhow!(
            "wharf sql runs one statement at a time; run the others with separate `wharf sql` commands"
        ),
        _ => anyhow::anyhow!(
            "the statement failed: {error} (the views and tables are documented in schema.sql)"
        ),
    }
}

/// The statement on one line, cut to a length fit for a message.
fn abbreviate(sql: &str) -> String {
    let line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{FileState, InsertOutcome, NewFile};

    struct Collect(Vec<String>, Vec<Vec<SqlValue>>);

    impl RowSink for Collect {
        fn columns(&mut self, names: &[String]) -> anyhow::Result<()> {
            self.0 = names.to_vec();
            Ok(())
        }
        fn row(&mut self, values: &[SqlValue]) -> anyhow::Result<()> {
            self.1.push(values.to_vec());
            Ok(())
        }
    }

    fn collect(index: &ReadOnlyIndex, sql: &str) -> anyhow::Result<Collect> {
        let mut sink = Collect(Vec::new(), Vec::new());
        index.run_sql(sql, &mut sink)?;
        Ok(sink)
    }

    fn file(path: &str, entity: Option<&str>, created_ms: i64) -> NewFile {
        NewFile {
            path: path.into(),
            size: 10,
            mtime_ms: 1,
            sha256: "a".repeat(64),
            kind: "capture".into(),
            entity: entity.map(str::to_owned),
            created_ms,
        }
    }

    fn ids(outcomes: &[InsertOutcome]) -> Vec<i64> {
        outcomes
            .iter()
            .map(|o| match o {
                InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id.0,
            })
            .collect()
    }

    fn setup() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        (dir, index)
    }

    fn read_only(index: &Index) -> ReadOnlyIndex {
        ReadOnlyIndex::open(index.path()).unwrap()
    }

    /// Everything a write could change: the schema, the row counts, the
    /// header fields.
    fn fingerprint(index: &Index) -> String {
        index
            .read(|db| {
                db.query_row(
                    "SELECT (SELECT group_concat(sql, ';') FROM sqlite_master)
                        || (SELECT count(*) || '/' || sum(size) FROM files) || (SELECT count(*) FROM entities)",
                    [],
                    |row| row.get::<_, String>(0),
                )
                .map(|text| {
                    let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
                    let mode: String = db.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
                    format!("{text} v{version} {mode}")
                })
            })
            .unwrap()
    }

    #[test]
    fn sql_returns_columns_and_typed_values() {
        let (_dir, index) = setup();
        index
            .insert_files(&[file("files/a", Some("set"), 5)])
            .unwrap();
        let result = collect(
            &read_only(&index),
            "SELECT path, size, NULL AS empty, 2.5 AS real, x'00ff' AS blob, entity FROM files \
             JOIN disk_usage USING (kind)",
        )
        .unwrap();
        assert_eq!(
            result.0,
            ["path", "size", "empty", "real", "blob", "entity"]
        );
        assert_eq!(
            result.1,
            [vec![
                SqlValue::Text("files/a".into()),
                SqlValue::Integer(10),
                SqlValue::Null,
                SqlValue::Real(2.5),
                SqlValue::Blob(vec![0, 255]),
                SqlValue::Text("set".into()),
            ]]
        );
    }

    #[test]
    fn sql_refuses_every_kind_of_write_and_changes_nothing() {
        let (dir, index) = setup();
        index
            .insert_files(&[file("files/a", Some("set"), 5)])
            .unwrap();
        let before = fingerprint(&index);
        let other = dir.path().join("other.sqlite");
        let statements = [
            "INSERT INTO entities (name) VALUES ('x')".to_owned(),
            "UPDATE files SET size = 0".into(),
            "DELETE FROM files".into(),
            "  -- a comment first\n/* and another */ DELETE FROM files".into(),
            "WITH doomed AS (SELECT id FROM files) DELETE FROM files WHERE id IN doomed".into(),
            "INSERT INTO entities (name) VALUES ('y') RETURNING id".into(),
            "REPLACE INTO entities (id, name) VALUES (1, 'z')".into(),
            "DROP TABLE events".into(),
            "DROP VIEW failures".into(),
            "DROP INDEX files_retention".into(),
            "CREATE TABLE t (a)".into(),
            "CREATE TEMP TABLE t (a)".into(),
            "CREATE INDEX x ON files (size)".into(),
            "ALTER TABLE files ADD COLUMN x".into(),
            format!("ATTACH '{}' AS other", other.display()),
            "ATTACH ':memory:' AS scratch".into(),
            "DETACH main".into(),
            "VACUUM".into(),
            format!("VACUUM INTO '{}'", other.display()),
            "REINDEX".into(),
            "ANALYZE".into(),
            "PRAGMA user_version = 7".into(),
            "PRAGMA schema_version = 99".into(),
            "PRAGMA journal_mode = DELETE".into(),
            "PRAGMA application_id = 5".into(),
            "PRAGMA auto_vacuum = FULL".into(),
            "PRAGMA main.user_version = 7".into(),
            "PRAGMA user_version(7)".into(),
            "pragma /* sneaky */ Main . USER_VERSION=7".into(),
            "PRAGMA query_only = 0".into(),
            "PRAGMA foreign_keys = OFF".into(),
            "PRAGMA wal_checkpoint(TRUNCATE)".into(),
            "PRAGMA wal_checkpoint".into(),
            "PRAGMA incremental_vacuum(10)".into(),
            "PRAGMA optimize".into(),
        ];
        let reader = read_only(&index);
        for statement in &statements {
            let message = match collect(&reader, statement) {
                Ok(_) => panic!("{statement} ran"),
                Err(error) => format!("{error:#}"),
            };
            assert!(
                message.contains("wharf sql is read-only"),
                "{statement}: {message}"
            );
            assert_eq!(fingerprint(&index), before, "{statement} changed the index");
        }
        assert!(
            !other.exists(),
            "a refused statement created {}",
            other.display()
        );
    }

    #[test]
    fn sql_errors_say_what_is_wrong() {
        let (_dir, index) = setup();
        let reader = read_only(&index);
        let message = |sql: &str| format!("{:#}", collect(&reader, sql).err().unwrap());
        assert!(
            message("SELEC 1").contains("syntax error"),
            "{}",
            message("SELEC 1")
        );
        assert!(message("SELECT * FROM nope").contains("no such table: nope"));
        assert!(message("SELECT 1; SELECT 2").contains("one statement at a time"));
        assert!(message("SELECT ?").contains("parameters"));
        assert!(message("  ").contains("no SQL statement"));
        // Reading, explaining and trailing semicolons are fine.
        assert_eq!(
            collect(&reader, "SELECT 1;").unwrap().1,
            [vec![SqlValue::Integer(1)]]
        );
        assert!(
            !collect(&reader, "EXPLAIN QUERY PLAN DELETE FROM files")
                .unwrap()
                .1
                .is_empty()
        );
        for reading in [
            "PRAGMA table_info(files)",
            "PRAGMA main.index_list = files",
            "PRAGMA journal_mode",
            "PRAGMA user_version",
        ] {
            assert!(
                !collect(&reader, reading).unwrap().1.is_empty(),
                "{reading}"
            );
        }
    }

    #[test]
    fn a_missing_or_empty_index_says_to_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("index.sqlite");
        let error = ReadOnlyIndex::open(&missing).unwrap_err().to_string();
        assert!(error.contains("wharf init"), "{error}");
        Connection::open(&missing)
            .unwrap()
            .execute_batch("CREATE TABLE x (a)")
            .unwrap();
        let error = ReadOnlyIndex::open(&missing).unwrap_err().to_string();
        assert!(error.contains("wharf init"), "{error}");
    }

    #[test]
    fn the_index_reads_after_its_writer_has_closed() {
        // A closed WAL index has no -wal or -shm file; reading must not need one.
        let (dir, index) = setup();
        index.insert_files(&[file("files/a", None, 1)]).unwrap();
        drop(index);
        let reader = ReadOnlyIndex::open(&dir.path().join("index.sqlite")).unwrap();
        assert_eq!(
            collect(&reader, "SELECT count(*) FROM files").unwrap().1,
            [vec![SqlValue::Integer(1)]]
        );
    }

    /// Two destinations, files 1..=6 with sync rows in every state.
    fn sync_fixture(index: &Index) -> Vec<i64> {
        let paths: Vec<NewFile> = (1..=6)
            .map(|n| file(&format!("files/{n}"), Some("set"), n))
            .collect();
        let ids = ids(&index.insert_files(&paths).unwrap());
        index
            .write(|tx| {
                tx.execute_batch(
                    "INSERT INTO destinations (id, name, plugin, url) VALUES (1, 'local', 'dir', 'file:///b'),
                                                                           (2, 's3', 'http-put', 'https://s3');",
                )?;
                let mut insert = tx.prepare(
                    "INSERT INTO sync_status (file_id, destination_id, state, attempts, next_attempt_ms,
                                              last_attempt_ms, last_error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                // (file, destination, state, attempts, next attempt, error)
                type SyncRow<'a> = (usize, i64, &'a str, i64, Option<i64>, Option<&'a str>);
                let rows: [SyncRow<'_>; 8] = [
                    (0, 1, "pending", 0, Some(100), None),
                    (1, 1, "pending", 0, Some(100), None),
                    (2, 1, "failed", 2, Some(50), Some("timeout")),
                    (3, 1, "pending", 0, Some(5000), None), // not due yet
                    (4, 1, "synced", 1, None, None),
                    (5, 1, "failed", 5, None, Some("403 forbidden")), // failed for good
                    (0, 2, "in_progress", 1, Some(90), None),
                    (1, 2, "pending", 0, Some(100), None),
                ];
                for (file, destination, state, attempts, next, error) in rows {
                    insert.execute(params![ids[file], destination, state, attempts, next, 700, error])?;
                }
                Ok(())
            })
            .unwrap();
        ids
    }

    #[test]
    fn sync_due_pages_through_due_rows_in_next_attempt_order() {
        let (_dir, index) = setup();
        let ids = sync_fixture(&index);
        let key = |row: &SyncDue| (row.file_id.0, row.destination_id.0);
        let all = index.sync_due(1000, SyncCursor::START, 100).unwrap();
        assert_eq!(
            all.iter().map(key).collect::<Vec<_>>(),
            [(ids[2], 1), (ids[0], 1), (ids[1], 1), (ids[1], 2)]
        );
        assert_eq!(
            (all[0].state.as_str(), all[0].attempts, all[0].path.as_str()),
            ("failed", 2, "files/3")
        );
        // Page by page, the same rows in the same order, none twice.
        let mut paged = Vec::new();
        let mut cursor = SyncCursor::START;
        loop {
            let page = index.sync_due(1000, cursor, 1).unwrap();
            let Some(last) = page.last() else { break };
            cursor = last.cursor();
            paged.extend(page);
        }
        assert_eq!(paged, all);
        // Before anything is due, nothing.
        assert!(
            index
                .sync_due(10, SyncCursor::START, 100)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn retention_candidates_page_by_entity_newest_first_without_gaps() {
        let (_dir, index) = setup();
        let mut batch = Vec::new();
        for (entity, n) in [(Some("b"), 3), (Some("a"), 4), (None, 2)] {
            for i in 0..n {
                // Two files per entity share a creation time: the id orders them.
                batch.push(file(
                    &format!("files/{}/{i}", entity.unwrap_or("-")),
                    entity,
                    100 + i / 2,
                ));
            }
        }
        let ids = ids(&index.insert_files(&batch).unwrap());
        index
            .set_file_state(FileId(ids[0]), FileState::Lost, "gone")
            .unwrap();
        let all = index
            .retention_candidates(RetentionCursor::START, 100)
            .unwrap();
        let keys: Vec<_> = all
            .iter()
            .map(|c| (c.entity_id.map(|e| e.0), c.created_ms, c.id.0))
            .collect();
        let mut expected = keys.clone();
        expected.sort_by_key(|&(entity, created, id)| (entity, std::cmp::Reverse(created), id));
        assert_eq!(keys, expected);
        assert_eq!(all.len(), 8, "every ready file, the lost one left out");
        assert_eq!(all[0].entity_id, None, "files of no entity first");
        for page_size in 1..=4 {
            let mut paged = Vec::new();
            let mut cursor = RetentionCursor::START;
            loop {
                let page = index.retention_candidates(cursor, page_size).unwrap();
                assert!(page.len() <= page_size);
                let Some(last) = page.last() else { break };
                cursor = last.cursor();
                paged.extend(page);
            }
            assert_eq!(paged, all, "page size {page_size}");
        }
    }

    #[test]
    fn the_paged_queries_use_their_indexes_and_never_sort() {
        let (_dir, index) = setup();
        let plans = read_only(&index).query_plans().unwrap();
        let plan = |name: &str| {
            plans
                .iter()
                .find(|p| p.name.contains(name))
                .unwrap()
                .lines
                .join("\n")
        };
        for (name, index_name) in [
            ("sync backlog", "USING COVERING INDEX sync_status_backlog"),
            ("rest of an entity", "USING INDEX files_retention"),
            ("later entities", "USING INDEX files_retention"),
        ] {
            let plan = plan(name);
            assert!(plan.contains(index_name), "{name}:\n{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{name} sorts:\n{plan}");
            assert!(!plan.contains("SCAN"), "{name} scans:\n{plan}");
        }
    }

    #[test]
    fn status_counts_files_backlog_failures_and_leases() {
        let (_dir, index) = setup();
        let ids = sync_fixture(&index);
        index
            .insert_files(&[NewFile {
                kind: "export".into(),
                size: 7,
                ..file("files/x", None, 1)
            }])
            .unwrap();
        index
            .set_file_state(FileId(ids[4]), FileState::Lost, "gone")
            .unwrap();
        index
            .write(|tx| {
                tx.execute(
                    "INSERT INTO jobs (kind, state, next_attempt_ms, last_error, created_ms, finished_ms)
                     VALUES ('export', 'failed', 0, 'plugin trapped', 1, 900)",
                    [],
                )
            })
            .unwrap();
        index
            .try_acquire_lease("gc", "host:1:1", 100, 0, None)
            .unwrap();
        index
            .try_acquire_lease("sync", "host:2:2", 10_000, 0, None)
            .unwrap();
        for status in [
            index.status(1000).unwrap(),
            read_only(&index).status(1000).unwrap(),
        ] {
            let files: Vec<_> = status
                .files
                .iter()
                .map(|c| (c.state.as_str(), c.kind.as_str(), c.files, c.bytes))
                .collect();
            assert_eq!(
                files,
                [
                    ("lost", "capture", 1, 10),
                    ("ready", "capture", 5, 50),
                    ("ready", "export", 1, 7)
                ]
            );
            let backlog: Vec<_> = status
                .sync_backlog
                .iter()
                .map(|c| {
                    (
                        c.destination.as_str(),
                        c.state.as_str(),
                        c.files,
                        c.bytes,
                        c.due,
                    )
                })
                .collect();
            assert_eq!(
                backlog,
                [
                    ("local", "failed", 1, 10, 1),
                    ("local", "pending", 3, 30, 2),
                    ("s3", "in_progress", 1, 10, 0),
                    ("s3", "pending", 1, 10, 1)
                ]
            );
            assert_eq!(status.failures, 2);
            let failures: Vec<_> = status
                .latest_failures
                .iter()
                .map(|f| (f.what.as_str(), f.error.as_deref(), f.at_ms))
                .collect();
            assert_eq!(
                failures,
                [
                    ("job", Some("plugin trapped"), Some(900)),
                    ("sync", Some("403 forbidden"), Some(700))
                ]
            );
            let leases: Vec<_> = status
                .leases
                .iter()
                .map(|l| (l.name.as_str(), l.stale))
                .collect();
            assert_eq!(leases, [("gc", true), ("sync", false)]);
        }
    }

    #[test]
    fn the_documented_views_read() {
        let (_dir, index) = setup();
        sync_fixture(&index);
        let reader = read_only(&index);
        for view in [
            "sync_backlog",
            "disk_usage",
            "stale_locks",
            "export_cache",
            "failures",
        ] {
            collect(&reader, &format!("SELECT * FROM {view}")).unwrap();
        }
        let backlog = collect(&reader, "SELECT state FROM sync_backlog")
            .unwrap()
            .1;
        assert_eq!(
            backlog.len(),
            6,
            "pending, retried and in-progress rows: {backlog:?}"
        );
    }
}
