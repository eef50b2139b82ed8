//! The data directory's layout: the one place that knows where things live
//! under it.
//!
//! ```text
//! wharf-data/
//!   wharf.toml        configuration (optional)
//!   index.sqlite      the index
//!   plugins/          NAME.toml manifests and their .wasm files
//!   cache/compiled/   compiled plugins (0700)
//!   tmp/              work in progress, renamed into place when complete
//! ```

use std::path::{Path, PathBuf};

/// A data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("wharf.toml")
    }

    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.sqlite")
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    pub fn compiled_cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("compiled")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Creates the directories that must exist; idempotent.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [self.root.clone(), self.plugins_dir(), self.tmp_dir()] {
            std::fs::create_dir_all(&dir)?;
        }
        Ok(())
    }
}
