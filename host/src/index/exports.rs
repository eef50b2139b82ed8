//! The export cache: what an export is made of (a dataset's files, read in
//! one snapshot with its version), cache lookups that touch the entity's
//! `last_export_ms` and the entry's `last_access_ms`, and the commit of a
//! finished export (its `files` row and `exports` row in one transaction).
//! Also the files pages the API lists.

use rusqlite::{OptionalExtension, Row, params};

use super::{EntityId, FileId, FileRow, Index};

/// A row of `exports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportId(pub i64);

/// What makes two export requests the same: one cache entry each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportKey {
    pub entity: EntityId,
    pub version: i64,
    pub format: String,
    pub params_sha256: String,
}

/// A cached export with the file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub id: ExportId,
    pub dataset: String,
    pub entity_version: i64,
    /// Made from the dataset's present version.
    pub current: bool,
    pub format: String,
    pub params_sha256: String,
    pub file: Option<FileId>,
    /// The file's index path, size and sha256 while it is ready.
    pub path: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub media_type: Option<String>,
    pub created_ms: i64,
    pub last_access_ms: i64,
}

impl ExportRow {
    /// Whether it can be served: its file is there and ready.
    pub fn is_ready(&self) -> bool {
        self.path.is_some()
    }
}

/// A verified copy of a file on a sync destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCopyRow {
    pub destination: String,
    pub remote_ref: String,
    pub sha256: String,
}

/// A file an export is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub id: FileId,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub kind: String,
    pub created_ms: i64,
    pub mtime_ms: i64,
    pub remote_copies: Vec<RemoteCopyRow>,
}

/// A dataset as one consistent read: its version, attributes and ready
/// files (exports excluded), in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSnapshot {
    pub entity: EntityId,
    pub name: String,
    pub version: i64,
    pub last_export_ms: Option<i64>,
    pub attributes: Vec<(String, String)>,
    pub files: Vec<ExportFile>,
}

/// A finished export, in place in the store, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExport {
    pub key: ExportKey,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub mtime_ms: i64,
    pub media_type: String,
}

const EXPORT_QUERY: &str = "
    SELECT x.id, e.name, x.entity_version, x.entity_version = e.version, x.format, x.params_sha256,
        x.file_id, f.path, f.size, f.sha256, x.media_type, x.created_ms, x.last_access_ms
    FROM exports x JOIN entities e ON e.id = x.entity_id
    LEFT JOIN files f ON f.id = x.file_id AND f.state = 'ready'";

fn export_row(row: &Row<'_>) -> rusqlite::Result<ExportRow> {
    Ok(ExportRow {
        id: ExportId(row.get(0)?),
        dataset: row.get(1)?,
        entity_version: row.get(2)?,
        current: row.get(3)?,
        format: row.get(4)?,
        params_sha256: row.get(5)?,
        file: row.get::<_, Option<i64>>(6)?.map(FileId),
        path: row.get(7)?,
        size: row.get::<_, Option<i64>>(8)?.map(|size| size as u64),
        sha256: row.get(9)?,
        media_type: row.get(10)?,
        created_ms: row.get(11)?,
        last_access_ms: row.get(12)?,
    })
}

const KEY_WHERE: &str =
    "x.entity_id = ?1 AND x.entity_version = ?2 AND x.format = ?3 AND x.params_sha256 = ?4";

impl Index {
    /// Dataset `name`'s id, present version and last export request: all
    /// an export request needs to find its cache key, read without the
    /// counts and sums of [`Index::dataset`] (which visit every file of the
    /// dataset), so a cache hit costs the same for a dataset of 10 files or
    /// of a million.
    pub fn dataset_version(
        &self,
        name: &str,
    ) -> anyhow::Result<Option<(EntityId, i64, Option<i64>)>> {
        self.read(|db| {
            db.prepare_cached("SELECT id, version, last_export_ms FROM entities WHERE name = ?1")?
                .query_row([name], |row| {
                    Ok((EntityId(row.get(0)?), row.get(1)?, row.get(2)?))
                })
                .optional()
        })
    }

    /// An export request: touches the dataset's `last_export_ms` and, on a
    /// hit (an entry of `key` whose file is ready), the entry's
    /// `last_access_ms`, which extends its life in the cache. The hit, if
    /// any.
    pub fn request_export(
        &self,
        key: &ExportKey,
        now_ms: i64,
    ) -> anyhow::Result<Option<ExportRow>> {
        self.write(|tx| {
            tx.execute(
                "UPDATE entities SET last_export_ms = ?2 WHERE id = ?1",
                params![key.entity.0, now_ms],
            )?;
            let hit = tx
                .query_row(
                    &format!("{EXPORT_QUERY} WHERE {KEY_WHERE} AND f.id IS NOT NULL"),
                    params![key.entity.0, key.version, key.format, key.params_sha256],
                    export_row,
                )
                .optional()?;
            let Some(mut hit) = hit else { return Ok(None) };
            tx.execute(
                "UPDATE exports SET last_access_ms = ?2 WHERE id = ?1",
                params![hit.id.0, now_ms],
            )?;
            hit.last_access_ms = now_ms;
            Ok(Some(hit))
        })
    }

    /// The entry of `key` if its file is ready; touches nothing.
    pub fn cached_export(&self, key: &ExportKey) -> anyhow::Result<Option<ExportRow>> {
        self.read(|db| {
            db.query_row(
                &format!("{EXPORT_QUERY} WHERE {KEY_WHERE} AND f.id IS NOT NULL"),
                params![key.entity.0, key.version, key.format, key.params_sha256],
                export_row,
            )
            .optional()
        })
    }

    /// Export `id`, ready or not.
    pub fn export(&self, id: ExportId) -> anyhow::Result<Option<ExportRow>> {
        self.read(|db| {
            db.query_row(
                &format!("{EXPORT_QUERY} WHERE x.id = ?1"),
                [id.0],
                export_row,
            )
            .optional()
        })
    }

    /// Marks export `id` as used now (a download): extends its cache life.
    pub fn touch_export(&self, id: ExportId, now_ms: i64) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE exports SET last_access_ms = max(last_access_ms, ?2) WHERE id = ?1",
                params![id.0, now_ms],
            )?;
            Ok(())
        })
    }

    /// Cached exports, newest first, `limit` after `before` (an id).
    pub fn exports(
        &self,
        dataset: Option<&str>,
        before: Option<ExportId>,
        limit: usize,
    ) -> anyhow::Result<Vec<ExportRow>> {
        self.read(|db| {
            let mut query = db.prepare(&format!(
                "{EXPORT_QUERY} WHERE (?1 IS NULL OR e.name = ?1) AND x.id < ?2 ORDER BY x.id DESC LIMIT ?3"
            ))?;
            let rows = query.query_map(
                params![dataset, before.map_or(i64::MAX, |id| id.0), limit as i64],
                export_row,
            )?;
            rows.collect()
        })
    }

    /// Dataset `name` as one consistent read, for an export.
    pub fn export_snapshot(&self, name: &str) -> anyhow::Result<Option<ExportSnapshot>> {
        self.read(|db| {
            let tx = db.unchecked_transaction()?;
            let head = tx
                .query_row(
                    "SELECT id, version, last_export_ms FROM entities WHERE name = ?1",
                    [name],
                    |row| Ok((EntityId(row.get(0)?), row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let Some((entity, version, last_export_ms)) = head else {
                return Ok(None);
            };
            let attributes = super::datasets::attributes(&tx, entity)?;
            let mut files = Vec::new();
            {
                let mut query = tx.prepare(
                    "SELECT id, path, size, sha256, kind, created_ms, mtime_ms FROM files
                     WHERE entity_id = ?1 AND state = 'ready' AND kind <> 'export' ORDER BY path",
                )?;
                let rows = query.query_map([entity.0], |row| {
                    Ok(ExportFile {
                        id: FileId(row.get(0)?),
                        path: row.get(1)?,
                        size: row.get::<_, i64>(2)? as u64,
                        sha256: row.get(3)?,
                        kind: row.get(4)?,
                        created_ms: row.get(5)?,
                        mtime_ms: row.get(6)?,
                        remote_copies: Vec::new(),
                    })
                })?;
                for row in rows {
                    files.push(row?);
                }
                let position: std::collections::HashMap<i64, usize> =
                    files.iter().enumerate().map(|(i, f)| (f.id.0, i)).collect();
                let mut copies = tx.prepare(
                    "SELECT s.file_id, d.name, s.remote_ref, s.verified_sha256
                     FROM files f JOIN sync_status s ON s.file_id = f.id JOIN destinations d ON d.id = s.destination_id
                     WHERE f.entity_id = ?1 AND s.state = 'synced' AND s.remote_ref IS NOT NULL
                       AND s.verified_sha256 IS NOT NULL
                     ORDER BY d.name",
                )?;
                let mut rows = copies.query([entity.0])?;
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    if let Some(&i) = position.get(&id) {
                        files[i].remote_copies.push(RemoteCopyRow {
                            destination: row.get(1)?,
                            remote_ref: row.get(2)?,
                            sha256: row.get(3)?,
                        });
                    }
                }
            }
            tx.finish()?;
            Ok(Some(ExportSnapshot {
                entity,
                name: name.to_owned(),
                version,
                last_export_ms,
                attributes,
                files,
            }))
        })
    }

    /// Records a finished export: its `files` row (kind `export`, the
    /// dataset's entity; the dataset's version is not bumped, an export is
    /// not one of its files) and its cache entry, in one transaction.
    pub fn commit_export(&self, export: &NewExport, now_ms: i64) -> anyhow::Result<ExportId> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO files (path, size, mtime_ms, sha256, kind, entity_id, state, created_ms, last_access_ms)
                 VALUES (?1, ?2, ?3, ?4, 'export', ?5, 'ready', ?6, ?6)",
                params![
                    export.path,
                    export.size as i64,
                    export.mtime_ms,
                    export.sha256,
                    export.key.entity.0,
                    now_ms
                ],
            )?;
            let file = tx.last_insert_rowid();
            let id = tx.query_row(
                "INSERT INTO exports (entity_id, entity_version, format, params_sha256, file_id, created_ms, last_access_ms, media_type)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
                 ON CONFLICT (entity_id, entity_version, format, params_sha256) DO UPDATE SET
                     file_id = excluded.file_id, created_ms = excluded.created_ms,
                     last_access_ms = excluded.last_access_ms, media_type = excluded.media_type
                 RETURNING id",
                params![
                    export.key.entity.0,
                    export.key.version,
                    export.key.format,
                    export.key.params_sha256,
                    file,
                    now_ms,
                    export.media_type
                ],
                |row| row.get(0),
            )?;
            Ok(ExportId(id))
        })
    }

    /// Test support until the sync engine records copies: adds destination
    /// `name` (if missing) and records that the file at index path `path`
    /// has a verified copy there, `remote_ref`, verified against `sha256`.
    #[doc(hidden)]
    pub fn record_verified_copy_for_tests(
        &self,
        path: &str,
        destination: &str,
        remote_ref: &str,
        sha256: &str,
    ) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO destinations (name, plugin, url) VALUES (?1, 'test', 'test://')
                 ON CONFLICT (name) DO NOTHING",
                [destination],
            )?;
            let changed = tx.execute(
                "INSERT INTO sync_status (file_id, destination_id, state, attempts, remote_ref, verified_sha256)
                 SELECT f.id, d.id, 'synced', 1, ?3, ?4 FROM files f, destinations d
                 WHERE f.path = ?1 AND d.name = ?2
                 ON CONFLICT (file_id, destination_id) DO UPDATE SET
                     state = 'synced', remote_ref = excluded.remote_ref,
                     verified_sha256 = excluded.verified_sha256",
                params![path, destination, remote_ref, sha256],
            )?;
            if changed == 0 {
                return Err(rusqlite::Error::QueryReturnedNoRows);
            }
            Ok(())
        })
    }

    /// Test support: adds destination `name` with no copies on it.
    #[doc(hidden)]
    pub fn add_destination_for_tests(&self, name: &str) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO destinations (name, plugin, url) VALUES (?1, 'test', 'test://')
                 ON CONFLICT (name) DO NOTHING",
                [name],
            )?;
            Ok(())
        })
    }

    /// Whether an index path is a tracked file.
    pub fn is_indexed(&self, path: &str) -> anyhow::Result<bool> {
        self.read(|db| {
            db.query_row("SELECT 1 FROM files WHERE path = ?1", [path], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
    }

    /// Files in id order after `after`, at most `limit`: a keyset page, as
    /// cheap at the millionth file as at the first.
    pub fn files_page(
        &self,
        dataset: Option<&str>,
        after: Option<FileId>,
        limit: usize,
    ) -> anyhow::Result<Vec<FileRow>> {
        self.read(|db| {
            let mut query = db.prepare(&format!(
                "SELECT {} FROM files f LEFT JOIN entities e ON e.id = f.entity_id
                 WHERE f.id > ?1 AND (?2 IS NULL OR e.name = ?2) ORDER BY f.id LIMIT ?3",
                super::files::FILE_COLUMNS
            ))?;
            let rows = query.query_map(
                params![after.map_or(0, |id| id.0), dataset, limit as i64],
                super::files::file_row,
            )?;
            rows.collect()
        })
    }

    /// File `id`.
    pub fn file(&self, id: FileId) -> anyhow::Result<Option<FileRow>> {
        self.read(|db| {
            db.query_row(
                &format!(
                    "SELECT {} FROM files f LEFT JOIN entities e ON e.id = f.entity_id WHERE f.id = ?1",
                    super::files::FILE_COLUMNS
                ),
                [id.0],
                super::files::file_row,
            )
            .optional()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::NewFile;

    fn key(index: &Index, format: &str, params: &str) -> ExportKey {
        let set = index.dataset("set").unwrap().unwrap();
        ExportKey {
            entity: set.id,
            version: set.version,
            format: format.into(),
            params_sha256: params.repeat(64),
        }
    }

    fn setup() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        index
            .insert_files(&[NewFile {
                path: "files/set/a".into(),
                size: 3,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: Some("set".into()),
                created_ms: 2,
            }])
            .unwrap();
        (dir, index)
    }

    fn commit(index: &Index, key: &ExportKey, path: &str) -> ExportId {
        index
            .commit_export(
                &NewExport {
                    key: key.clone(),
                    path: path.into(),
                    size: 10,
                    sha256: "b".repeat(64),
                    mtime_ms: 5,
                    media_type: "application/x-tar".into(),
                },
                100,
            )
            .unwrap()
    }

    #[test]
    fn a_cache_entry_is_one_per_key_and_a_hit_touches_it_and_the_dataset() {
        let (_dir, index) = setup();
        let tar = key(&index, "tar-export", "1");
        assert_eq!(index.request_export(&tar, 50).unwrap(), None);
        assert_eq!(
            index.dataset("set").unwrap().unwrap().last_export_ms,
            Some(50)
        );
        let id = commit(&index, &tar, "exports/1/a.tar");
        let other_params = key(&index, "tar-export", "2");
        assert_eq!(index.request_export(&other_params, 60).unwrap(), None);
        let hit = index.request_export(&tar, 200).unwrap().unwrap();
        assert_eq!(
            (hit.id, hit.last_access_ms, hit.path.as_deref()),
            (id, 200, Some("exports/1/a.tar"))
        );
        assert_eq!(
            index.dataset("set").unwrap().unwrap().last_export_ms,
            Some(200)
        );
        // The export is not one of the dataset's files: no version bump, not counted.
        let set = index.dataset("set").unwrap().unwrap();
        assert_eq!((set.version, set.files, set.exports), (tar.version, 1, 1));
        let snapshot = index.export_snapshot("set").unwrap().unwrap();
        assert_eq!(snapshot.files.len(), 1);
        assert_eq!(index.exports(None, None, 10).unwrap().len(), 1);
        assert_eq!(
            index.export(id).unwrap().unwrap().media_type.as_deref(),
            Some("application/x-tar")
        );
    }

    #[test]
    fn a_new_file_in_the_dataset_makes_a_miss() {
        let (_dir, index) = setup();
        let tar = key(&index, "tar-export", "1");
        commit(&index, &tar, "exports/1/a.tar");
        index
            .insert_files(&[NewFile {
                path: "files/set/b".into(),
                size: 1,
                mtime_ms: 1,
                sha256: "c".repeat(64),
                kind: "capture".into(),
                entity: Some("set".into()),
                created_ms: 2,
            }])
            .unwrap();
        let now = key(&index, "tar-export", "1");
        assert_ne!(now.version, tar.version);
        assert_eq!(index.request_export(&now, 300).unwrap(), None);
        assert!(!index.exports(None, None, 10).unwrap()[0].current);
    }

    #[test]
    fn files_are_paged_by_id() {
        let (_dir, index) = setup();
        let first = index.files_page(None, None, 1).unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            index
                .files_page(None, Some(first[0].id), 1)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            index.file(first[0].id).unwrap().unwrap().path,
            "files/set/a"
        );
        assert!(index.is_indexed("files/set/a").unwrap());
    }
}
