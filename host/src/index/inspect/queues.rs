//! The first pages of the sync backlog, keyset-paginated over its partial
//! index, and the query plans of every paged query (these and the
//! retention candidates' in `index/retention.rs`).

use rusqlite::{Connection, params};

use super::{DestinationId, ReadOnlyIndex, count, explain, sql_limit};
use crate::index::retention::{RETENTION_LATER_ENTITIES, RETENTION_SAME_ENTITY};
use crate::index::{FileId, Index};

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

impl ReadOnlyIndex {
    /// See [`Index::sync_due`].
    pub fn sync_due(
        &self,
        now_ms: i64,
        after: SyncCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<SyncDue>> {
        Ok(sync_due(&self.connection, now_ms, after, limit)?)
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
