//! Read-only inspection of the index: the one statement `wharf sql` runs
//! ([`sql`]), the summary `wharf status` prints ([`status`]), and the first
//! pages of the sync backlog the daemon reads on a large index ([`queues`];
//! the retention candidates are `index/retention.rs`).
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

mod queues;
mod sql;
mod status;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::Context;
use rusqlite::{Connection, Row};

pub use queues::{QueryPlan, SyncCursor, SyncDue};
pub use sql::{RowSink, SqlValue};
pub use status::{Failure, FileCount, LeaseStatus, Status, SyncCount};

/// A row of `entities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub i64);

/// A row of `destinations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationId(pub i64);

/// The index opened read-only, for inspection while a daemon writes.
pub struct ReadOnlyIndex {
    path: PathBuf,
    pub(in crate::index) connection: Connection,
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
}

/// A count, sum or size: NULL (the sum of nothing) is 0, and the schema
/// keeps them from being negative.
pub(in crate::index) fn count(row: &Row<'_>, column: usize) -> rusqlite::Result<u64> {
    Ok(row
        .get::<_, Option<i64>>(column)?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

pub(in crate::index) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(in crate::index) fn explain(db: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
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
