//! Datasets: the index's entities as `wharf dataset` and the API show them
//! (their files, bytes, version, attributes, cached exports), and attribute
//! changes.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{EntityId, Index};

/// A dataset: an entity with what it holds. Files and bytes count its
/// ready files other than exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRow {
    pub id: EntityId,
    pub name: String,
    pub version: i64,
    pub last_export_ms: Option<i64>,
    pub files: u64,
    pub bytes: u64,
    pub attributes: Vec<(String, String)>,
    /// Cached exports of its present version.
    pub exports: u64,
}

/// What `wharf dataset set` / `unset` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeChange {
    Set(Vec<(String, String)>),
    Unset(Vec<String>),
}

const DATASET_QUERY: &str = "
    SELECT e.id, e.name, e.version, e.last_export_ms,
        (SELECT count(*) FROM files f WHERE f.entity_id = e.id AND f.state = 'ready' AND f.kind <> 'export'),
        (SELECT ifnull(sum(f.size), 0) FROM files f WHERE f.entity_id = e.id AND f.state = 'ready' AND f.kind <> 'export'),
        (SELECT count(*) FROM exports x WHERE x.entity_id = e.id AND x.entity_version = e.version AND x.file_id IS NOT NULL)
    FROM entities e";

fn dataset_row(row: &Row<'_>) -> rusqlite::Result<DatasetRow> {
    Ok(DatasetRow {
        id: EntityId(row.get(0)?),
        name: row.get(1)?,
        version: row.get(2)?,
        last_export_ms: row.get(3)?,
        files: row.get::<_, i64>(4)? as u64,
        bytes: row.get::<_, i64>(5)? as u64,
        attributes: Vec::new(),
        exports: row.get::<_, i64>(6)? as u64,
    })
}

pub(super) fn attributes(
    db: &Connection,
    entity: EntityId,
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut query = db.prepare_cached(
        "SELECT key, value FROM entity_attributes WHERE entity_id = ?1 ORDER BY key",
    )?;
    let rows = query.query_map([entity.0], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

impl Index {
    /// Every dataset in name order, with its counts and attributes.
    pub fn datasets(&self) -> anyhow::Result<Vec<DatasetRow>> {
        self.read(|db| {
            let mut query = db.prepare(&format!("{DATASET_QUERY} ORDER BY e.name"))?;
            let mut rows = query
                .query_map([], dataset_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for row in &mut rows {
                row.attributes = attributes(db, row.id)?;
            }
            Ok(rows)
        })
    }

    /// The dataset `name`, if there is one.
    pub fn dataset(&self, name: &str) -> anyhow::Result<Option<DatasetRow>> {
        self.read(|db| {
            let row = db
                .query_row(
                    &format!("{DATASET_QUERY} WHERE e.name = ?1"),
                    [name],
                    dataset_row,
                )
                .optional()?;
            let Some(mut row) = row else { return Ok(None) };
            row.attributes = attributes(db, row.id)?;
            Ok(Some(row))
        })
    }

    /// Sets or removes attributes of dataset `name` and bumps its version
    /// when anything changed (an export shows the attributes, so a cached
    /// one of the old version must not be served). False if there is no
    /// such dataset.
    pub fn change_attributes(&self, name: &str, change: &AttributeChange) -> anyhow::Result<bool> {
        self.write(|tx| {
            let id: Option<i64> = tx
                .query_row("SELECT id FROM entities WHERE name = ?1", [name], |row| {
                    row.get(0)
                })
                .optional()?;
            let Some(id) = id else { return Ok(false) };
            let mut changed = 0;
            match change {
                AttributeChange::Set(pairs) => {
                    let mut upsert = tx.prepare_cached(
                        "INSERT INTO entity_attributes (entity_id, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (entity_id, key) DO UPDATE SET value = excluded.value
                         WHERE value IS NOT excluded.value",
                    )?;
                    for (key, value) in pairs {
                        changed += upsert.execute(params![id, key, value])?;
                    }
                }
                AttributeChange::Unset(keys) => {
                    let mut delete = tx.prepare_cached(
                        "DELETE FROM entity_attributes WHERE entity_id = ?1 AND key = ?2",
                    )?;
                    for key in keys {
                        changed += delete.execute(params![id, key])?;
                    }
                }
            }
            if changed > 0 {
                tx.execute(
                    "UPDATE entities SET version = version + 1 WHERE id = ?1",
                    [id],
                )?;
            }
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::NewFile;

    fn file(path: &str, size: u64, kind: &str) -> NewFile {
        NewFile {
            path: path.into(),
            size,
            mtime_ms: 1,
            sha256: "a".repeat(64),
            kind: kind.into(),
            entity: Some("set".into()),
            created_ms: 2,
        }
    }

    #[test]
    fn a_dataset_shows_its_files_bytes_and_attributes_and_attribute_changes_bump_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.sqlite")).unwrap();
        index
            .insert_files(&[
                file("files/set/a", 3, "capture"),
                file("files/set/b", 4, "capture"),
            ])
            .unwrap();
        let set = index.dataset("set").unwrap().unwrap();
        assert_eq!((set.files, set.bytes, set.version), (2, 7, 2));
        let change = AttributeChange::Set(vec![("released".into(), "true".into())]);
        assert!(index.change_attributes("set", &change).unwrap());
        let set = index.dataset("set").unwrap().unwrap();
        assert_eq!(set.attributes, vec![("released".into(), "true".into())]);
        assert_eq!(set.version, 3);
        // Setting the same value again changes nothing.
        index.change_attributes("set", &change).unwrap();
        assert_eq!(index.dataset("set").unwrap().unwrap().version, 3);
        index
            .change_attributes("set", &AttributeChange::Unset(vec!["released".into()]))
            .unwrap();
        let set = index.dataset("set").unwrap().unwrap();
        assert!(set.attributes.is_empty());
        assert_eq!(set.version, 4);
        assert!(!index.change_attributes("nope", &change).unwrap());
        assert_eq!(index.datasets().unwrap().len(), 1);
        assert!(index.dataset("nope").unwrap().is_none());
    }
}
