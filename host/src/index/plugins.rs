//! The `plugins` table: what the daemon loaded, as pinned.

use rusqlite::params;

use super::Index;

/// A plugin as loaded.
#[derive(Debug, Clone)]
pub struct PluginRow {
    pub name: String,
    pub version: String,
    pub world: String,
    pub sha256: String,
    pub source: String,
}

impl Index {
    /// Replaces the `plugins` table with the set just loaded.
    pub fn record_plugins(&self, plugins: &[PluginRow], now_ms: i64) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM plugins", [])?;
            let mut insert = tx.prepare(
                "INSERT INTO plugins (name, version, world, sha256, source, loaded_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for p in plugins {
                insert.execute(params![p.name, p.version, p.world, p.sha256, p.source, now_ms])?;
            }
            Ok(())
        })
    }

    /// The `plugins` table, by name.
    pub fn plugins(&self) -> anyhow::Result<Vec<PluginRow>> {
        self.read(|db| {
            let mut query = db.prepare(
                "SELECT name, version, world, sha256, source FROM plugins ORDER BY name",
            )?;
            let rows = query.query_map([], |row| {
                Ok(PluginRow {
                    name: row.get(0)?,
                    version: row.get(1)?,
                    world: row.get(2)?,
                    sha256: row.get(3)?,
                    source: row.get(4)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_recorded_and_replaced_as_a_set() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let row = |name: &str| PluginRow {
            name: name.into(),
            version: "0.1.0".into(),
            world: "retention".into(),
            sha256: "a".repeat(64),
            source: "bundled".into(),
        };
        index.record_plugins(&[row("a"), row("b")], 1).unwrap();
        index.record_plugins(&[row("b")], 2).unwrap();
        let names: Vec<_> = index
            .plugins()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["b"]);
    }
}
