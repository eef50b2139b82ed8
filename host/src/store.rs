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
//!   inbox/            files dropped here are ingested (inbox/ENTITY/... gives the entity)
//!   files/            tracked files; the index names them `files/...`
//! ```
//!
//! Every path the index stores is relative to the data directory and
//! `/`-separated; [`DataDir::resolve`] is the only way back to a real path,
//! and it refuses anything that would leave the data directory.

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

    pub fn inbox_dir(&self) -> PathBuf {
        self.root.join("inbox")
    }

    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    /// The real path of an index path such as `files/set/a.bin`.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, String> {
        let valid = !relative.is_empty()
            && !relative.starts_with('/')
            && !relative.contains('\\')
            && !relative.contains('\0')
            && relative.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !valid {
            return Err(format!("{relative:?} is not a path inside the data directory"));
        }
        Ok(self.root.join(relative))
    }

    /// The index path of a real path under the data directory, if it is one
    /// and its name is valid UTF-8.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let rest = path.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = rest.components().map(|c| c.as_os_str().to_str()).collect();
        let joined = parts?.join("/");
        self.resolve(&joined).ok().map(|_| joined)
    }

    /// Creates the directories that must exist; idempotent.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [self.root.clone(), self.plugins_dir(), self.tmp_dir(), self.inbox_dir(), self.files_dir()] {
            std::fs::create_dir_all(&dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_never_leave_the_data_directory() {
        let data = DataDir::new("/srv/wharf");
        assert_eq!(data.resolve("files/a/b.bin").unwrap(), Path::new("/srv/wharf/files/a/b.bin"));
        for bad in ["", "/etc/passwd", "files/../../etc", "files//a", "./files", "files/a\\b", "files/.."] {
            assert!(data.resolve(bad).is_err(), "{bad:?}");
        }
        assert_eq!(data.relative(Path::new("/srv/wharf/files/x/y")).as_deref(), Some("files/x/y"));
        assert_eq!(data.relative(Path::new("/srv/other/files/x")), None);
    }
}
