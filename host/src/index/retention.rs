//! Retention candidates: ready files in (entity, created newest first, id)
//! order, keyset-paginated over `files_retention` so an entity is never
//! split by a sort and a page costs the same on any index size; and
//! [`RetentionPage`]s, the batches a retention run hands its policy: whole
//! entities only, in columns, with the entities' attributes and what the
//! host knows of each file (synced, export-held, leased).
//!
//! With an age cutoff ([`Index::for_each_aged_page`]) the candidates are
//! only the files whose indexing, modification and last access are all
//! older than it, found by a range scan of `files_age` and sorted by SQLite
//! into the same (entity, created desc, id) order, in one snapshot.

use std::collections::HashMap;

use rusqlite::{Connection, Row, params};

use super::deletions::LiveLeases;
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

/// An entity as a retention page carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageEntity {
    pub name: String,
    pub version: u64,
    pub last_export_ms: Option<i64>,
    /// Sorted by key.
    pub attributes: Vec<(String, String)>,
}

/// What the host knows of a candidate, as bits of [`RetentionPage::flags`]
/// (the same bits as the plugin contract's `batch.flags`).
pub struct CandidateFlags;

impl CandidateFlags {
    /// A synced copy exists on every destination marked required.
    pub const SYNCED: u8 = 1;
    /// An export being written or downloaded holds it: a download of it is
    /// in progress (a live `download:<id>:…` lease), or it is a file of an
    /// entity an export is being made of (a live `export:<entity>:…`
    /// lease). A cached export's result is not held by being cached: the
    /// `export-cache` policy decides when it goes.
    pub const EXPORT_HELD: u8 = 2;
    /// A lease named `file:<id>` is held on it (e.g. a running export reads it).
    pub const LEASED: u8 = 4;
}

/// The entity index of a file of no entity in [`RetentionPage::entity`].
pub const NO_ENTITY: u32 = u32::MAX;

/// One batch of a retention run, in columns: entry `i` of every column is
/// file `i`. It holds whole entities only: a page that reaches its target
/// size mid-entity takes the rest of that entity too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPage {
    pub entities: Vec<PageEntity>,
    pub kinds: Vec<String>,
    pub files: Vec<FileId>,
    pub sizes: Vec<u64>,
    pub created_ms: Vec<i64>,
    pub modified_ms: Vec<i64>,
    /// 0 when never read for an export or sync.
    pub last_access_ms: Vec<i64>,
    /// Index into `entities`, or [`NO_ENTITY`].
    pub entity: Vec<u32>,
    /// Index into `kinds`.
    pub kind: Vec<u32>,
    /// [`CandidateFlags`] bits.
    pub flags: Vec<u8>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<RetentionCursor>,
}

/// Candidate columns plus whether each file is synced to every required
/// destination (asked only when some destination is required; otherwise
/// every file is). A cached export's last access is the later of its file's
/// and its cache entry's (hits and downloads touch the entry). The leases
/// that hold a file are not probed per row: [`LiveLeases`], read once per
/// page, gives them.
fn page_columns(required_destinations: bool) -> String {
    let synced = if required_destinations {
        "NOT EXISTS (SELECT 1 FROM destinations d WHERE d.required = 1 AND NOT EXISTS (
        SELECT 1 FROM sync_status s WHERE s.file_id = f.id AND s.destination_id = d.id AND s.state = 'synced'))"
    } else {
        "1"
    };
    format!(
        "f.id, f.entity_id, f.kind, f.size, f.created_ms, f.mtime_ms,
    max(coalesce(f.last_access_ms, 0),
        coalesce((SELECT max(x.last_access_ms) FROM exports x WHERE x.file_id = f.id), 0)),
    {synced}"
    )
}

/// [`RETENTION_SAME_ENTITY`] with the page columns.
fn page_same_entity(required_destinations: bool) -> String {
    format!(
        "SELECT {} FROM files f
         WHERE f.state = 'ready' AND f.entity_id IS ?1 AND f.created_ms <= ?2 AND NOT (f.created_ms = ?2 AND f.id <= ?3)
         ORDER BY f.created_ms DESC, f.id LIMIT ?4",
        page_columns(required_destinations)
    )
}

/// [`RETENTION_LATER_ENTITIES`] with the page columns (`?2` and `?3` are
/// bound but unused, so both queries take the same parameters).
fn page_later_entities(required_destinations: bool) -> String {
    format!(
        "SELECT {} FROM files f
         WHERE f.state = 'ready' AND f.entity_id > ?1
         ORDER BY f.entity_id, f.created_ms DESC, f.id LIMIT ?4",
        page_columns(required_destinations)
    )
}

/// Ready files older than `?1` by [`AGE`], with the page columns, in
/// (entity, created desc, id) order: a range scan of `files_age`, then a
/// sort. The `+` keeps SQLite from walking `files_retention` for the order
/// instead and reading every file.
fn aged_pages(required_destinations: bool) -> String {
    format!(
        "SELECT {} FROM files f
         WHERE f.state = 'ready' AND max(f.created_ms, f.mtime_ms, coalesce(f.last_access_ms, 0)) < ?1
         ORDER BY +f.entity_id, f.created_ms DESC, f.id",
        page_columns(required_destinations),
    )
}

/// Whether any destination is marked required.
fn required_destinations(db: &Connection) -> rusqlite::Result<bool> {
    db.prepare_cached("SELECT EXISTS (SELECT 1 FROM destinations WHERE required = 1)")?
        .query_row([], |row| row.get(0))
}

/// What a page query reads besides its rows: the leases live in its
/// snapshot and whether it asks about required destinations.
struct PageContext {
    leases: LiveLeases,
    required_destinations: bool,
}

impl PageContext {
    fn read(db: &Connection, now_ms: i64) -> rusqlite::Result<PageContext> {
        Ok(PageContext {
            leases: LiveLeases::read(db, now_ms)?,
            required_destinations: required_destinations(db)?,
        })
    }

    fn row(&self, row: &Row<'_>) -> rusqlite::Result<PageRow> {
        let id: i64 = row.get(0)?;
        let entity_id: Option<i64> = row.get(1)?;
        let kind: String = row.get(2)?;
        let mut flags = 0;
        if row.get::<_, bool>(7)? {
            flags |= CandidateFlags::SYNCED;
        }
        if self.leases.export_held(id, &kind, entity_id) {
            flags |= CandidateFlags::EXPORT_HELD;
        }
        if self.leases.leased(id) {
            flags |= CandidateFlags::LEASED;
        }
        Ok(PageRow {
            id,
            entity_id,
            kind,
            size: count(row, 3)?,
            created_ms: row.get(4)?,
            modified_ms: row.get(5)?,
            last_access_ms: row.get(6)?,
            flags,
        })
    }
}

/// One row of a page query.
struct PageRow {
    id: i64,
    entity_id: Option<i64>,
    kind: String,
    size: u64,
    created_ms: i64,
    modified_ms: i64,
    last_access_ms: Option<i64>,
    flags: u8,
}

impl PageRow {
    fn cursor(&self) -> RetentionCursor {
        RetentionCursor {
            entity_id: self.entity_id,
            created_ms: self.created_ms,
            id: self.id,
        }
    }
}

impl Index {
    /// The retention batch after `after`: about `target` ready files, never
    /// splitting an entity (an entity larger than `target` is a page of its
    /// own), the files of no entity first. `now_ms` decides which leases
    /// still hold. Pass [`RetentionPage::next`] for the following page.
    pub fn retention_page(
        &self,
        after: RetentionCursor,
        target: usize,
        now_ms: i64,
    ) -> anyhow::Result<RetentionPage> {
        self.read(|db| {
            // One snapshot for the whole page, files and entities alike.
            let tx = db.unchecked_transaction()?;
            let page = retention_page(&tx, after, target.max(1), now_ms)?;
            tx.finish()?;
            Ok(page)
        })
    }
}

fn page_rows(
    db: &Connection,
    context: &PageContext,
    sql: &str,
    args: (Option<i64>, i64, i64, usize),
    into: &mut Vec<PageRow>,
) -> rusqlite::Result<()> {
    let mut query = db.prepare_cached(sql)?;
    let rows = query.query_map(params![args.0, args.1, args.2, sql_limit(args.3)], |row| {
        context.row(row)
    })?;
    for row in rows {
        into.push(row?);
    }
    Ok(())
}

fn retention_page(
    db: &Connection,
    after: RetentionCursor,
    target: usize,
    now_ms: i64,
) -> rusqlite::Result<RetentionPage> {
    let context = PageContext::read(db, now_ms)?;
    let mut rows = Vec::with_capacity(target.min(100_000));
    let same = page_same_entity(context.required_destinations);
    page_rows(
        db,
        &context,
        &same,
        (after.entity_id, after.created_ms, after.id, target),
        &mut rows,
    )?;
    if rows.len() < target {
        // Files of no entity sort first, so after them every entity is later.
        let later_than = after.entity_id.unwrap_or(i64::MIN);
        let rest = target - rows.len();
        page_rows(
            db,
            &context,
            &page_later_entities(context.required_destinations),
            (Some(later_than), 0, 0, rest),
            &mut rows,
        )?;
    }
    let full = rows.len() >= target;
    if let Some(last) = rows.last().filter(|_| full).map(PageRow::cursor) {
        // The page ends mid-entity, perhaps: take the rest of that entity.
        page_rows(
            db,
            &context,
            &same,
            (last.entity_id, last.created_ms, last.id, usize::MAX),
            &mut rows,
        )?;
    }
    let next = rows.last().filter(|_| full).map(PageRow::cursor);
    columns(db, rows, next)
}

impl Index {
    /// Hands `each`, page by page, the ready files older than `cutoff_ms`
    /// by [`AGE`] (indexing, modification and last access all before it),
    /// in (entity, created newest first, id) order, about `target` files a
    /// page and never splitting an entity, all read in one snapshot. `now_ms`
    /// decides which leases still hold. `each` returns false to stop.
    pub fn for_each_aged_page(
        &self,
        cutoff_ms: i64,
        target: usize,
        now_ms: i64,
        mut each: impl FnMut(RetentionPage) -> bool,
    ) -> anyhow::Result<()> {
        let target = target.max(1);
        self.read(|db| {
            let tx = db.unchecked_transaction()?;
            {
                let context = PageContext::read(&tx, now_ms)?;
                let mut query = tx.prepare_cached(&aged_pages(context.required_destinations))?;
                let mut rows = query.query(params![cutoff_ms])?;
                let mut pending: Vec<PageRow> = Vec::with_capacity(target.min(100_000));
                while let Some(row) = rows.next()? {
                    let row = context.row(row)?;
                    let entity_ends = pending
                        .last()
                        .is_some_and(|last| last.entity_id != row.entity_id);
                    if pending.len() >= target && entity_ends {
                        let page = columns(&tx, std::mem::take(&mut pending), None)?;
                        if !each(page) {
                            return Ok(());
                        }
                    }
                    pending.push(row);
                }
                if !pending.is_empty() {
                    each(columns(&tx, pending, None)?);
                }
            }
            tx.finish()
        })
    }

    /// How many files are ready: the files an age preselection chooses
    /// from, which the deletion cap compares a plan with.
    pub fn ready_files(&self) -> anyhow::Result<u64> {
        self.read(|db| {
            db.prepare_cached("SELECT count(*) FROM files WHERE state = 'ready'")?
                .query_row([], |row| count(row, 0))
        })
    }
}

/// Turns rows into a page: each entity and kind once, files in columns.
fn columns(
    db: &Connection,
    rows: Vec<PageRow>,
    next: Option<RetentionCursor>,
) -> rusqlite::Result<RetentionPage> {
    let mut page = RetentionPage {
        next,
        ..RetentionPage::default()
    };
    let mut entity_index: HashMap<i64, u32> = HashMap::new();
    let mut kind_index: HashMap<String, u32> = HashMap::new();
    let mut entity =
        db.prepare_cached("SELECT name, version, last_export_ms FROM entities WHERE id = ?1")?;
    let mut attributes = db.prepare_cached(
        "SELECT key, value FROM entity_attributes WHERE entity_id = ?1 ORDER BY key",
    )?;
    for row in rows {
        let entity_slot = match row.entity_id {
            None => NO_ENTITY,
            Some(id) => match entity_index.get(&id) {
                Some(&slot) => slot,
                None => {
                    let (name, version, last_export_ms) = entity.query_row([id], |r| {
                        Ok((r.get::<_, String>(0)?, count(r, 1)?, r.get(2)?))
                    })?;
                    let attributes = attributes
                        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    page.entities.push(PageEntity {
                        name,
                        version,
                        last_export_ms,
                        attributes,
                    });
                    let slot = (page.entities.len() - 1) as u32;
                    entity_index.insert(id, slot);
                    slot
                }
            },
        };
        let kind_slot = match kind_index.get(&row.kind) {
            Some(&slot) => slot,
            None => {
                let slot = page.kinds.len() as u32;
                page.kinds.push(row.kind.clone());
                kind_index.insert(row.kind, slot);
                slot
            }
        };
        page.files.push(FileId(row.id));
        page.sizes.push(row.size);
        page.created_ms.push(row.created_ms);
        page.modified_ms.push(row.modified_ms);
        page.last_access_ms.push(row.last_access_ms.unwrap_or(0));
        page.entity.push(entity_slot);
        page.kind.push(kind_slot);
        page.flags.push(row.flags);
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

    #[test]
    fn retention_pages_hold_whole_entities_with_attributes_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        // Entity sizes around the page target of 4: 2 of no entity, then 3,
        // 7, 1 and 4 files.
        let mut files = Vec::new();
        for (entity, n) in [
            (None, 2),
            (Some("a"), 3),
            (Some("b"), 7),
            (Some("c"), 1),
            (Some("d"), 4),
        ] {
            for i in 0..n {
                files.push(file(
                    &format!("files/{}/{i}", entity.unwrap_or("-")),
                    entity,
                    1000 - i,
                ));
            }
        }
        let ids = ids(&index.insert_files(&files).unwrap());
        index
            .set_entity_attributes(
                "b",
                &[
                    ("released".into(), "true".into()),
                    ("branch".into(), "main".into()),
                ],
            )
            .unwrap();
        // File 0 is leased until 5000; file 1 is being downloaded (until
        // 5000); file 2 is a cached export's result, last hit at 1500; the
        // files of d are read by an export of d (until 5000).
        index
            .try_acquire_lease(&format!("file:{}", ids[0]), "me", 4000, 1000, None)
            .unwrap();
        index
            .try_acquire_lease(
                &crate::index::download_lease_name(FileId(ids[1]), "1"),
                "me",
                4000,
                1000,
                None,
            )
            .unwrap();
        index.write(|tx| {
            tx.execute(
                "INSERT INTO exports (entity_id, entity_version, format, params_sha256, file_id, created_ms, last_access_ms)
                 SELECT id, 1, 'tar', 'x', ?1, 0, 1500 FROM entities WHERE name = 'a'",
                [ids[2]],
            )
        }).unwrap();
        let d: i64 = index
            .read(|db| db.query_row("SELECT id FROM entities WHERE name = 'd'", [], |r| r.get(0)))
            .unwrap();
        index
            .try_acquire_lease(&format!("export:{d}:1:tar:abc"), "me", 4000, 1000, None)
            .unwrap();

        let mut pages = Vec::new();
        let mut cursor = Some(RetentionCursor::START);
        while let Some(after) = cursor {
            let page = index.retention_page(after, 4, 2000).unwrap();
            cursor = page.next;
            if page.files.is_empty() {
                break;
            }
            pages.push(page);
        }
        let entity_names = |page: &RetentionPage| -> Vec<String> {
            page.entity
                .iter()
                .map(|&e| {
                    if e == NO_ENTITY {
                        "-".to_owned()
                    } else {
                        page.entities[e as usize].name.clone()
                    }
                })
                .collect()
        };
        let seen: Vec<Vec<String>> = pages.iter().map(entity_names).collect();
        // A page reaching 4 mid-entity takes the rest of it; b (7) is whole.
        let groups: Vec<String> = seen
            .iter()
            .map(|names| {
                let mut distinct = names.clone();
                distinct.dedup();
                distinct.join(",")
            })
            .collect();
        assert_eq!(groups, vec!["-,a", "b", "c,d"]);
        assert_eq!(
            pages.iter().map(|p| p.files.len()).collect::<Vec<_>>(),
            vec![5, 7, 5]
        );
        // Every file once, in order.
        let all: Vec<i64> = pages
            .iter()
            .flat_map(|p| p.files.iter().map(|f| f.0))
            .collect();
        assert_eq!(all, ids);
        // Attributes and flags.
        let b = &pages[1].entities[0];
        assert_eq!(b.name, "b");
        assert_eq!(
            b.attributes,
            vec![
                ("branch".into(), "main".into()),
                ("released".into(), "true".into())
            ]
        );
        let first = &pages[0];
        // No destination is required, so every file counts as synced.
        assert_eq!(
            first.flags[0],
            CandidateFlags::SYNCED | CandidateFlags::LEASED
        );
        assert_eq!(
            first.flags[1],
            CandidateFlags::SYNCED | CandidateFlags::EXPORT_HELD,
            "a download in progress holds its file"
        );
        assert_eq!(
            first.flags[2],
            CandidateFlags::SYNCED,
            "being cached does not hold an export"
        );
        assert_eq!(first.last_access_ms[2], 1500, "a cache hit is an access");
        assert_eq!(first.kinds, vec!["capture"]);
        let last = &pages[2];
        let of_d: Vec<u8> = (0..last.files.len())
            .filter(|&i| last.entities[last.entity[i] as usize].name == "d")
            .map(|i| last.flags[i])
            .collect();
        assert_eq!(
            of_d,
            vec![CandidateFlags::SYNCED | CandidateFlags::EXPORT_HELD; 4],
            "an export being made of d holds its files"
        );
        // After the leases expire they no longer hold the files.
        let later = index
            .retention_page(RetentionCursor::START, 4, 9000)
            .unwrap();
        assert_eq!(&later.flags[..2], &[CandidateFlags::SYNCED; 2]);
        // With a required destination, only files synced to it are.
        index.write(|tx| {
            tx.execute("INSERT INTO destinations (name, plugin, url, required) VALUES ('s3', 'http-put', 'x', 1)", [])?;
            tx.execute(
                "INSERT INTO sync_status (file_id, destination_id, state) SELECT ?1, id, 'synced' FROM destinations",
                [ids[2]],
            )
        }).unwrap();
        let required = index
            .retention_page(RetentionCursor::START, 4, 9000)
            .unwrap();
        assert_eq!(&required.flags[..3], &[0, 0, CandidateFlags::SYNCED]);
    }

    #[test]
    fn aged_pages_hold_only_old_files_whole_entities_in_order_from_the_age_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        // Entities x (5 files), y (1), z (3) and 2 files of none, created at
        // 100, 90, 80...; the cutoff is 95. Some old ones were modified or
        // read recently: they are not old.
        let mut files = Vec::new();
        for (entity, n) in [(Some("x"), 5), (None, 2), (Some("y"), 1), (Some("z"), 3)] {
            for i in 0..n {
                let mut new = file(
                    &format!("files/{}/{i}", entity.unwrap_or("-")),
                    entity,
                    100 - 10 * i,
                );
                new.mtime_ms = 1;
                files.push(new);
            }
        }
        files[3].mtime_ms = 500; // x/3: modified recently
        let ids = ids(&index.insert_files(&files).unwrap());
        index.touch_file_access(FileId(ids[4]), 600).unwrap(); // x/4: read recently
        let old = |i: usize| -> bool {
            let f = &files[i];
            let touched = if i == 4 {
                600
            } else {
                f.created_ms.max(f.mtime_ms)
            };
            touched < 95
        };
        // Expected: (entity order: none, x, y, z), newest first within each.
        let mut expected: Vec<(Option<i64>, i64, i64)> = Vec::new();
        let entity_of = |i: usize| -> Option<i64> {
            index
                .read(|db| {
                    db.query_row("SELECT entity_id FROM files WHERE id = ?1", [ids[i]], |r| {
                        r.get(0)
                    })
                })
                .unwrap()
        };
        for i in (0..files.len()).filter(|&i| old(i)) {
            expected.push((entity_of(i), files[i].created_ms, ids[i]));
        }
        expected.sort_by_key(|&(e, c, id)| (e, std::cmp::Reverse(c), id));
        let expected: Vec<i64> = expected.into_iter().map(|(_, _, id)| id).collect();
        assert!(
            expected.len() >= 4 && expected.len() < files.len(),
            "{expected:?}"
        );
        for target in [1, 2, 3, 100] {
            let mut pages = Vec::new();
            index
                .for_each_aged_page(95, target, 0, |page| {
                    pages.push(page);
                    true
                })
                .unwrap();
            let all: Vec<i64> = pages
                .iter()
                .flat_map(|p| p.files.iter().map(|f| f.0))
                .collect();
            assert_eq!(all, expected, "target {target}");
            // No entity is on two pages.
            let names: Vec<Vec<String>> = pages
                .iter()
                .map(|p| {
                    let mut names: Vec<String> = p
                        .entity
                        .iter()
                        .map(|&e| {
                            if e == NO_ENTITY {
                                "-".into()
                            } else {
                                p.entities[e as usize].name.clone()
                            }
                        })
                        .collect();
                    names.dedup();
                    names
                })
                .collect();
            let mut flat = names.concat();
            let before = flat.len();
            flat.sort();
            flat.dedup();
            assert_eq!(
                flat.len(),
                before,
                "target {target}: split entity in {names:?}"
            );
        }
        // Stopping early stops.
        let mut seen = 0;
        index
            .for_each_aged_page(95, 1, 0, |_| {
                seen += 1;
                false
            })
            .unwrap();
        assert_eq!(seen, 1);
        let plan = index
            .read(|db| crate::index::inspect::explain(db, &aged_pages(false)))
            .unwrap()
            .join("\n");
        assert!(plan.contains("files_age"), "{plan}");
        assert_eq!(index.ready_files().unwrap(), files.len() as u64);
    }
}
