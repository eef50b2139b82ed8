//! The SQLite index: opening, migrations and every query. No SQL lives
//! anywhere else.
//!
//! Architecture invariant: this module knows nothing about wasm or plugins
//! beyond the rows it stores. Writes go through one connection (the writer,
//! behind a mutex, with `BEGIN IMMEDIATE` transactions so concurrent
//! processes queue on SQLite's lock instead of deadlocking); reads use a pool
//! of read-only connections, so `wharf sql` and a running daemon coexist.

mod datasets;
mod deletions;
mod exports;
mod files;
mod inspect;
mod jobs;
mod leases;
mod plugins;
mod retention;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use datasets::{AttributeChange, DatasetRow};
pub use deletions::{DeletionGuard, DeletionRequest, Marked, Refused, download_lease_name};
pub use exports::{
    ExportFile, ExportId, ExportKey, ExportRow, ExportSnapshot, NewExport, RemoteCopyRow,
};
pub use files::{FileId, FileRow, FileState, InsertOutcome, NewFile};
pub use inspect::{
    DestinationId, EntityId, Failure, FileCount, LeaseStatus, QueryPlan, ReadOnlyIndex, RowSink,
    SqlValue, Status, SyncCount, SyncCursor, SyncDue,
};
pub use jobs::{
    CancelOutcome, Enqueued, Finish, JobCounts, JobId, JobRow, JobState, NewJob, RetryOutcome,
};
pub use leases::{LeaseHolder, LeaseOutcome};
pub use plugins::PluginRow;
pub use retention::{
    CandidateFlags, NO_ENTITY, PageEntity, RetentionCandidate, RetentionCursor, RetentionPage,
};
pub use sync::{DestinationSpec, SyncClaim, SyncOutcome, SyncSummary};

/// Migrations in order; `PRAGMA user_version` is the number applied.
/// Migration 1 is the first published schema; `schema.sql` at the root is
/// the snapshot of them all (a test fails if they drift).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_initial.sql"),
    include_str!("migrations/002_jobs.sql"),
    include_str!("migrations/003_entity_attributes.sql"),
    include_str!("migrations/004_export_media_type.sql"),
    include_str!("migrations/005_sync_claims.sql"),
    include_str!("migrations/006_files_age.sql"),
    include_str!("migrations/007_job_absorbed_by.sql"),
];

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The index of one data directory.
pub struct Index {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> anyhow::Result<Index> {
        let mut writer = Connection::open(path)
            .with_context(|| format!("cannot open the index {}", path.display()))?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // WAL makes NORMAL durable against process crashes; only a power
        // loss may lose the last transactions, never corrupt the file.
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut writer)?;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|connection| configure(connection));
        let readers = r2d2::Pool::builder()
            .max_size(4)
            .min_idle(Some(0))
            .build(manager)
            .context("cannot open read connections to the index")?;
        Ok(Index {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version applied.
    pub fn schema_version(&self) -> anyhow::Result<u32> {
        self.read(|db| db.pragma_query_value(None, "user_version", |row| row.get(0)))
    }

    /// Runs `f` in one immediate write transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> anyhow::Result<T> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` on a read-only connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let connection = self
            .readers
            .get()
            .context("no read connection to the index")?;
        Ok(f(&connection)?)
    }
}

/// Tells whether anything was committed to the index, by any connection or
/// process, since it last looked: `PRAGMA data_version` on a connection of
/// its own, which costs no disk read. The job claimer polls it when idle.
pub struct ChangeWatch {
    connection: Connection,
    version: i64,
}

impl std::fmt::Debug for ChangeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeWatch")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ChangeWatch {
    /// Whether a commit happened since the last call (or since `watch`).
    pub fn changed(&mut self) -> anyhow::Result<bool> {
        let version: i64 = self
            .connection
            .pragma_query_value(None, "data_version", |row| row.get(0))?;
        Ok(std::mem::replace(&mut self.version, version) != version)
    }
}

impl Index {
    /// A [`ChangeWatch`] on this index.
    pub fn watch(&self) -> anyhow::Result<ChangeWatch> {
        let connection = open_read_only(&self.path)?;
        let version = connection.pragma_query_value(None, "data_version", |row| row.get(0))?;
        Ok(ChangeWatch {
            connection,
            version,
        })
    }
}

/// Opens the index read-only, for inspection while the daemon writes.
pub fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
    if !path.exists() {
        anyhow::bail!(
            "there is no index at {}; run `wharf init` first",
            path.display()
        );
    }
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&connection)?;
    Ok(connection)
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "foreign_keys", "ON")
}

fn migrate(connection: &mut Connection) -> anyhow::Result<()> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        anyhow::bail!(
            "the index is at schema version {applied}, newer than this wharf knows ({}); use a newer wharf",
            MIGRATIONS.len()
        );
    }
    for (number, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", number as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the unit of every time in the index.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_applies_the_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let latest = MIGRATIONS.len() as u32;
        assert_eq!(
            Index::open(&path).unwrap().schema_version().unwrap(),
            latest
        );
        assert_eq!(
            Index::open(&path).unwrap().schema_version().unwrap(),
            latest
        );
    }

    #[test]
    fn an_index_of_schema_1_is_migrated_keeping_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(MIGRATIONS[0]).unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        old.execute(
            "INSERT INTO jobs (kind, unique_key, state, attempts, next_attempt_ms, last_error, created_ms, finished_ms)
             VALUES ('export', 'x', 'failed', 3, 0, 'plugin trapped', 1, 2)",
            [],
        )
        .unwrap();
        drop(old);
        let index = Index::open(&path).unwrap();
        assert_eq!(index.schema_version().unwrap(), MIGRATIONS.len() as u32);
        let job = index.job(JobId(1)).unwrap().unwrap();
        assert_eq!(
            (
                job.kind.as_str(),
                job.state,
                job.attempts,
                job.last_error.as_deref()
            ),
            ("export", JobState::Failed, 3, Some("plugin trapped"))
        );
        assert_eq!(
            index.status(10).unwrap().failures,
            1,
            "the failures view reads the new table"
        );
    }

    #[test]
    fn an_index_from_a_newer_wharf_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Index::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("schema version 99") && err.contains("newer wharf"),
            "{err}"
        );
    }

    #[test]
    fn the_read_only_connection_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        Index::open(&path).unwrap();
        let reader = open_read_only(&path).unwrap();
        assert!(reader.execute("DELETE FROM plugins", []).is_err());
    }

    #[test]
    fn schema_sql_is_what_the_migrations_build() {
        // Drift guard: applying every migration must give the schema that
        // schema.sql alone gives.
        let dump = |connection: &Connection| -> Vec<String> {
            let mut query = connection
                .prepare("SELECT type || ' ' || name || ': ' || ifnull(sql, '') FROM sqlite_master ORDER BY type, name")
                .unwrap();
            query
                .query_map([], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let migrated = Index::open(&dir.path().join("a.sqlite")).unwrap();
        let migrated = dump(&migrated.writer.lock().unwrap());
        let snapshot = Connection::open_in_memory().unwrap();
        snapshot
            .execute_batch(include_str!("../../../schema.sql"))
            .unwrap();
        assert_eq!(migrated, dump(&snapshot));
    }
}
