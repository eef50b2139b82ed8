//! The SQLite index: opening, migrations and every query. No SQL lives
//! anywhere else.
//!
//! Architecture invariant: this module knows nothing about wasm or plugins
//! beyond the rows it stores. Writes go through one connection (the writer);
//! readers use a read-only pool, so `wharf sql` and a running daemon coexist.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

/// Migrations in order; `PRAGMA user_version` is the number applied.
/// Migration 1 is the first published schema (`schema.sql`); later ones will
/// be separate files and `schema.sql` their snapshot.
const MIGRATIONS: &[&str] = &[include_str!("../../../schema.sql")];

/// How long a writer waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The index of one data directory.
pub struct Index {
    writer: Connection,
}

/// A plugin as loaded, for the `plugins` table.
#[derive(Debug, Clone)]
pub struct PluginRow {
    pub name: String,
    pub version: String,
    pub world: String,
    pub sha256: String,
    pub source: String,
}

impl Index {
    /// Opens (creating if needed) the index at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> anyhow::Result<Index> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut writer)?;
        Ok(Index { writer })
    }

    /// The schema version applied.
    pub fn schema_version(&self) -> anyhow::Result<u32> {
        Ok(self
            .writer
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Replaces the `plugins` table with the set just loaded.
    pub fn record_plugins(&mut self, plugins: &[PluginRow], now_ms: i64) -> anyhow::Result<()> {
        let tx = self.writer.transaction()?;
        tx.execute("DELETE FROM plugins", [])?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO plugins (name, version, world, sha256, source, loaded_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for p in plugins {
                insert.execute(params![
                    p.name, p.version, p.world, p.sha256, p.source, now_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The `plugins` table, by name.
    pub fn plugins(&self) -> anyhow::Result<Vec<PluginRow>> {
        let mut query = self
            .writer
            .prepare("SELECT name, version, world, sha256, source FROM plugins ORDER BY name")?;
        let rows = query.query_map([], |row| {
            Ok(PluginRow {
                name: row.get(0)?,
                version: row.get(1)?,
                world: row.get(2)?,
                sha256: row.get(3)?,
                source: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Opens the index read-only, for inspection while the daemon writes.
pub fn open_read_only(path: &Path) -> anyhow::Result<Connection> {
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
        let tx = connection.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", number as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_applies_the_schema_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        assert_eq!(Index::open(&path).unwrap().schema_version().unwrap(), 1);
        assert_eq!(Index::open(&path).unwrap().schema_version().unwrap(), 1);
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
    fn plugins_are_recorded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let row = PluginRow {
            name: "keep-last".into(),
            version: "0.1.0".into(),
            world: "retention".into(),
            sha256: "a".repeat(64),
            source: "bundled".into(),
        };
        index.record_plugins(std::slice::from_ref(&row), 1).unwrap();
        index.record_plugins(std::slice::from_ref(&row), 2).unwrap();
        let rows = index.plugins().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "keep-last");
    }

    #[test]
    fn the_read_only_connection_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        Index::open(&path).unwrap();
        let reader = open_read_only(&path).unwrap();
        assert!(reader.execute("DELETE FROM plugins", []).is_err());
    }
}
