//! The summary `wharf status` prints: files by state and kind, the sync
//! backlog, jobs by state, failures and leases, in one read.

use anyhow::Context;
use rusqlite::Connection;

use super::{ReadOnlyIndex, count};
use crate::index::{Index, JobCounts};

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
    /// Jobs queued, running and failed for good.
    pub jobs: JobCounts,
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
impl ReadOnlyIndex {
    /// The summary `wharf status` prints.
    pub fn status(&self, now_ms: i64) -> anyhow::Result<Status> {
        status(&self.connection, now_ms).context("cannot read the status from the index")
    }
}

impl Index {
    /// The summary `wharf status` prints.
    pub fn status(&self, now_ms: i64) -> anyhow::Result<Status> {
        self.read(|db| status(db, now_ms))
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
        jobs: crate::index::jobs::job_counts(db)?,
    })
}
