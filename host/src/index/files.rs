//! Tracked files and the entities they belong to.

use rusqlite::{OptionalExtension, Row, params};

use super::Index;

/// A row of `files`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub i64);

/// Where a file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Writing,
    Ready,
    Deleting,
    /// The index has it but the disk does not.
    Lost,
    /// The disk has it with other content than the index recorded.
    Corrupt,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Writing => "writing",
            FileState::Ready => "ready",
            FileState::Deleting => "deleting",
            FileState::Lost => "lost",
            FileState::Corrupt => "corrupt",
        }
    }

    fn parse(text: &str) -> FileState {
        match text {
            "writing" => FileState::Writing,
            "deleting" => FileState::Deleting,
            "lost" => FileState::Lost,
            "corrupt" => FileState::Corrupt,
            _ => FileState::Ready,
        }
    }
}

/// A file to index, already in its place in the store.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Relative to the data directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub mtime_ms: i64,
    pub sha256: String,
    pub kind: String,
    pub entity: Option<String>,
    pub created_ms: i64,
}

/// A row of `files`, with its entity's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub id: FileId,
    pub path: String,
    pub size: u64,
    pub mtime_ms: i64,
    pub sha256: String,
    pub kind: String,
    pub entity: Option<String>,
    pub state: FileState,
    pub created_ms: i64,
}

/// What happened to one file of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted(FileId),
    /// The path is already indexed (under this id).
    AlreadyIndexed(FileId),
}

pub(super) const FILE_COLUMNS: &str =
    "f.id, f.path, f.size, f.mtime_ms, f.sha256, f.kind, e.name, f.state, f.created_ms";

pub(super) fn file_row(row: &Row<'_>) -> rusqlite::Result<FileRow> {
    let state: String = row.get(7)?;
    Ok(FileRow {
        id: FileId(row.get(0)?),
        path: row.get(1)?,
        size: row.get::<_, i64>(2)? as u64,
        mtime_ms: row.get(3)?,
        sha256: row.get(4)?,
        kind: row.get(5)?,
        entity: row.get(6)?,
        state: FileState::parse(&state),
        created_ms: row.get(8)?,
    })
}

impl Index {
    /// Indexes a batch of files in one transaction, creating their entities
    /// and bumping the version of every entity that gained a file.
    pub fn insert_files(&self, files: &[NewFile]) -> anyhow::Result<Vec<InsertOutcome>> {
        self.write(|tx| {
            let mut entity_id = tx.prepare_cached(
                "INSERT INTO entities (name) VALUES (?1) ON CONFLICT (name) DO UPDATE SET name = name RETURNING id",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO files (path, size, mtime_ms, sha256, kind, entity_id, state, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ready', ?7) ON CONFLICT (path) DO NOTHING",
            )?;
            let mut existing = tx.prepare_cached("SELECT id FROM files WHERE path = ?1")?;
            let mut bump = tx.prepare_cached("UPDATE entities SET version = version + 1 WHERE id = ?1")?;
            let mut touched = std::collections::BTreeSet::new();
            // One upsert per entity and batch, not per file: a batch of an
            // ingest is mostly one entity's files.
            let mut entity_ids = std::collections::HashMap::<&str, i64>::new();
            let mut outcomes = Vec::with_capacity(files.len());
            for file in files {
                let entity: Option<i64> = match file.entity.as_deref() {
                    Some(name) => Some(match entity_ids.get(name) {
                        Some(&id) => id,
                        None => {
                            let id = entity_id.query_row([name], |row| row.get(0))?;
                            entity_ids.insert(name, id);
                            id
                        }
                    }),
                    None => None,
                };
                let inserted = insert.execute(params![
                    file.path,
                    file.size as i64,
                    file.mtime_ms,
                    file.sha256,
                    file.kind,
                    entity,
                    file.created_ms
                ])?;
                if inserted == 1 {
                    outcomes.push(InsertOutcome::Inserted(FileId(tx.last_insert_rowid())));
                    touched.extend(entity);
                } else {
                    let id = existing.query_row([&file.path], |row| row.get(0))?;
                    outcomes.push(InsertOutcome::AlreadyIndexed(FileId(id)));
                }
            }
            for entity in touched {
                bump.execute([entity])?;
            }
            Ok(outcomes)
        })
    }

    /// Sets the attributes of entity `name` (created if new), replacing the
    /// ones it had. Retention policies read them from their batches.
    pub fn set_entity_attributes(
        &self,
        name: &str,
        attributes: &[(String, String)],
    ) -> anyhow::Result<()> {
        self.write(|tx| {
            let id: i64 = tx.query_row(
                "INSERT INTO entities (name) VALUES (?1) ON CONFLICT (name) DO UPDATE SET name = name RETURNING id",
                [name],
                |row| row.get(0),
            )?;
            tx.execute("DELETE FROM entity_attributes WHERE entity_id = ?1", [id])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO entity_attributes (entity_id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (entity_id, key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in attributes {
                insert.execute(params![id, key, value])?;
            }
            Ok(())
        })
    }

    pub fn file_by_path(&self, path: &str) -> anyhow::Result<Option<FileRow>> {
        self.read(|db| {
            db.query_row(
                &format!("SELECT {FILE_COLUMNS} FROM files f LEFT JOIN entities e ON e.id = f.entity_id WHERE f.path = ?1"),
                [path],
                file_row,
            )
            .optional()
        })
    }

    /// Every tracked file, in path order, streamed to `visit`.
    pub fn for_each_file(
        &self,
        mut visit: impl FnMut(FileRow) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let connection = self.readers.get()?;
        let mut query = connection.prepare(&format!(
            "SELECT {FILE_COLUMNS} FROM files f LEFT JOIN entities e ON e.id = f.entity_id ORDER BY f.path"
        ))?;
        let mut rows = query.query([])?;
        while let Some(row) = rows.next()? {
            visit(file_row(row)?)?;
        }
        Ok(())
    }

    /// Records that a file was read for an export or a sync at `at_ms`
    /// (retention policies such as `ttl` count it as an access).
    pub fn touch_file_access(&self, id: FileId, at_ms: i64) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE files SET last_access_ms = max(ifnull(last_access_ms, 0), ?1) WHERE id = ?2",
                params![at_ms, id.0],
            )?;
            Ok(())
        })
    }

    /// Sets a file's state and records why in the audit log.
    pub fn set_file_state(&self, id: FileId, state: FileState, reason: &str) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE files SET state = ?1 WHERE id = ?2",
                params![state.as_str(), id.0],
            )?;
            tx.execute(
                "INSERT INTO events (at_ms, kind, file_id, message) VALUES (?1, ?2, ?3, ?4)",
                params![super::now_ms(), state.as_str(), id.0, reason],
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_file(path: &str, entity: Option<&str>) -> NewFile {
        NewFile {
            path: path.into(),
            size: 3,
            mtime_ms: 1,
            sha256: "a".repeat(64),
            kind: "capture".into(),
            entity: entity.map(str::to_owned),
            created_ms: 2,
        }
    }

    #[test]
    fn insert_is_idempotent_per_path_and_bumps_entity_versions_once() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let batch = [
            new_file("files/a", Some("set")),
            new_file("files/b", Some("set")),
            new_file("files/c", None),
        ];
        let first = index.insert_files(&batch).unwrap();
        assert!(
            first
                .iter()
                .all(|o| matches!(o, InsertOutcome::Inserted(_)))
        );
        let again = index.insert_files(&batch[..1]).unwrap();
        assert_eq!(
            again,
            vec![InsertOutcome::AlreadyIndexed(match first[0] {
                InsertOutcome::Inserted(id) => id,
                InsertOutcome::AlreadyIndexed(id) => id,
            })]
        );
        let row = index.file_by_path("files/a").unwrap().unwrap();
        assert_eq!(
            (row.entity.as_deref(), row.state, row.size),
            (Some("set"), FileState::Ready, 3)
        );
        let version: i64 = index
            .read(|db| {
                db.query_row("SELECT version FROM entities WHERE name = 'set'", [], |r| {
                    r.get(0)
                })
            })
            .unwrap();
        assert_eq!(version, 2, "created at 1, bumped once for the batch");
    }

    #[test]
    fn a_batch_mixing_entities_gives_each_file_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let batch = [
            new_file("files/a", Some("x")),
            new_file("files/b", Some("y")),
            new_file("files/c", Some("x")),
            new_file("files/d", None),
        ];
        index.insert_files(&batch).unwrap();
        for (path, entity) in [
            ("files/a", Some("x")),
            ("files/b", Some("y")),
            ("files/c", Some("x")),
            ("files/d", None),
        ] {
            assert_eq!(
                index.file_by_path(path).unwrap().unwrap().entity.as_deref(),
                entity,
                "{path}"
            );
        }
    }

    #[test]
    fn state_changes_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        let InsertOutcome::Inserted(id) =
            index.insert_files(&[new_file("files/a", None)]).unwrap()[0]
        else {
            panic!("not inserted")
        };
        index
            .set_file_state(id, FileState::Lost, "missing on disk")
            .unwrap();
        assert_eq!(
            index.file_by_path("files/a").unwrap().unwrap().state,
            FileState::Lost
        );
        let message: String = index
            .read(|db| {
                db.query_row(
                    "SELECT message FROM events WHERE file_id = ?1",
                    [id.0],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(message, "missing on disk");
    }
}
