//! Retention candidates: ready files in (entity, created newest first, id)
//! order, keyset-paginated over `files_retention` so an entity is never
//! split by a sort and a page costs the same on any index size.

use rusqlite::{Connection, Row, params};

use super::inspect::{EntityId, ReadOnlyIndex, count, sql_limit};
use super::{FileId, Index};

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

/// The rest of the cursor's entity (or of the files of no entity), newest
/// first: `files_retention` with the entity fixed. Rows created at the
/// cursor's time with an id up to the cursor's were on earlier pages.
pub(super) const RETENTION_SAME_ENTITY: &str = "\
SELECT id, entity_id, path, kind, size, created_ms, last_access_ms
FROM files
WHERE state = 'ready' AND entity_id IS ?1 AND created_ms <= ?2 AND NOT (created_ms = ?2 AND id <= ?3)
ORDER BY created_ms DESC, id
LIMIT ?4";

/// The entities after the cursor's, in (entity, created desc, id) order: a
/// range scan of `files_retention`.
pub(super) const RETENTION_LATER_ENTITIES: &str = "\
SELECT id, entity_id, path, kind, size, created_ms, last_access_ms
FROM files
WHERE state = 'ready' AND entity_id > ?1
ORDER BY entity_id, created_ms DESC, id
LIMIT ?2";

impl ReadOnlyIndex {
    /// See [`Index::retention_candidates`].
    pub fn retention_candidates(
        &self,
        after: RetentionCursor,
        limit: usize,
    ) -> anyhow::Result<Vec<RetentionCandidate>> {
        Ok(retention_candidates(&self.connection, after, limit)?)
    }
}

impl Index {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{FileState, InsertOutcome, NewFile};

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

    #[test]
    fn retention_candidates_page_by_entity_newest_first_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
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
}
