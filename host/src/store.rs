//! The data directory's layout: the one place that knows where things live
//! under it.
//!
//! ```text
//! wharf-data/
//!   wharf.toml        configuration (optional)
//!   index.sqlite      the index
//!   plugins/          NAME.toml manifests and their .wasm files
//!   cache/compiled/   compiled plugins (0700)
//!   tmp/              work in progress, renamed into place when complete (`*.part`);
//!                     ingest's copies and journals are `ingest.*`; ingest runs lock it
//!   inbox/            files dropped here are ingested (inbox/ENTITY/... gives the entity)
//!   files/            tracked files; the index names them `files/...`
//!   exports/          cached exports, `exports/ENTITY-ID/vVERSION/FORMAT-PARAMS/NAME`
//!   api-token         the HTTP API's bearer token (0600)
//!   api-address       where the running daemon's HTTP API listens
//! ```
//!
//! Every path the index stores is relative to the data directory and
//! `/`-separated; [`DataDir::resolve`] is the only way back to a real path,
//! and it refuses anything that would leave the data directory.
//!
//! Files enter `files/` only through [`place`], which never replaces an
//! existing file: a name already taken is an error the caller reports.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The store's directory name, and the first component of every index path
/// of a tracked file (`files/set/a.bin`).
pub const FILES: &str = "files";

/// The first part of the name of everything ingest keeps in `tmp/`.
const INGEST_PREFIX: &str = "ingest.";
/// The suffix of a file being written in `tmp/`, by any writer.
const PART: &str = ".part";
/// The suffix of an ingest journal in `tmp/`.
const JOURNAL: &str = ".journal";

/// A file in `tmp/`.
#[derive(Debug)]
pub struct TmpFile {
    pub path: PathBuf,
    pub kind: TmpKind,
    /// From lstat.
    pub metadata: std::fs::Metadata,
}

/// What a file in `tmp/` is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpKind {
    /// `ingest.*.part`: an ingest's copy of a file from another filesystem.
    IngestCopy,
    /// `ingest.*.journal`: what an ingest run was placing in the store.
    IngestJournal,
    /// Another `*.part`: an export's output or a local-store copy.
    OtherPart,
    Other,
}

impl TmpKind {
    /// Work in progress, or left behind by a writer that died: a `*.part`.
    pub fn is_part(self) -> bool {
        matches!(self, TmpKind::IngestCopy | TmpKind::OtherPart)
    }
}

/// The index path of a file stored directly under the store by `name`
/// (`a.bin` → `files/a.bin`).
pub fn stored_path(name: &str) -> String {
    format!("{FILES}/{name}")
}

/// Whether an index path names a file in the store.
pub fn is_stored_path(path: &str) -> bool {
    path.strip_prefix(FILES)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The first directory under the store in an index path, which names a
/// file's entity by default (`files/set1/a.bin` → `set1`); none for a file
/// directly in the store.
pub fn entity_of(path: &str) -> Option<&str> {
    let mut parts = path.split('/');
    if parts.next() != Some(FILES) {
        return None;
    }
    match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => Some(first),
        _ => None,
    }
}

/// The manifest of plugin `name` in a plugins directory.
pub fn plugin_manifest_path(plugins_dir: &Path, name: &str) -> PathBuf {
    plugins_dir.join(format!("{name}.toml"))
}

/// Where `wharf plugin install` puts the component of plugin `name`.
pub fn plugin_wasm_path(plugins_dir: &Path, name: &str) -> PathBuf {
    plugins_dir.join(format!("{name}.wasm"))
}

/// Writes `bytes` to `path`, replacing it atomically: readers see the old
/// file or the new one, never part of one. The temporary file is a hidden
/// sibling, so the rename never crosses filesystems.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::Builder::new()
        .prefix(".wharf-")
        .suffix(".partial")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    sync_dir(dir)
}

/// The directory of cached exports.
pub const EXPORTS: &str = "exports";

/// The index path of an export's result: one directory per cache key
/// (entity, its version, format, parameters), so different keys never
/// share a name, and the plugin's own file name inside it. `format` is a
/// plugin name and `file_name` was checked to be a bare name by the runtime.
pub fn export_path(
    entity_id: i64,
    version: i64,
    format: &str,
    params_sha256: &str,
    file_name: &str,
) -> String {
    let format: String = format
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let params = params_sha256.get(..16).unwrap_or(params_sha256);
    format!("{EXPORTS}/{entity_id}/v{version}/{format}-{params}/{file_name}")
}

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
        self.root.join(FILES)
    }

    /// The HTTP API's bearer token, written by `wharf init` (mode 0600).
    pub fn api_token_path(&self) -> PathBuf {
        self.root.join("api-token")
    }

    /// Where the running daemon writes the address its HTTP API listens on.
    pub fn api_address_path(&self) -> PathBuf {
        self.root.join("api-address")
    }

    /// A path under `tmp/` that does not exist yet, for a writer that
    /// creates the file itself (an exporter's output); rename it into place
    /// with [`place`] once it is complete and synced.
    pub fn new_tmp_path(&self, hint: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let hint: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(64)
            .collect();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.tmp_dir().join(format!(
                "{}.{n}.{:08x}.{hint}.part",
                std::process::id(),
                fastrand::u32(..)
            ));
            if path.symlink_metadata().is_err() {
                return path;
            }
        }
    }

    /// The real path of an index path such as `files/set/a.bin`.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, String> {
        let valid = !relative.is_empty()
            && !relative.starts_with('/')
            && !relative.contains('\\')
            && !relative.contains('\0')
            && relative
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !valid {
            return Err(format!(
                "{relative:?} is not a path inside the data directory"
            ));
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

    /// The same data directory with its root made absolute and free of
    /// symlinks, as [`DataDir::internal_area`] needs it.
    pub fn canonical(&self) -> io::Result<DataDir> {
        Ok(DataDir::new(std::fs::canonicalize(&self.root)?))
    }

    /// Which part of the data directory's own internals `path` lies in:
    /// `Some("files/")`, `Some("index.sqlite")`, … for anything inside the
    /// data directory except the inbox, which is meant to be ingested; `None`
    /// for paths outside it and inside the inbox. Both `path` and this data
    /// directory's root must be canonical (see [`DataDir::canonical`]).
    pub fn internal_area(&self, path: &Path) -> Option<String> {
        let rest = path.strip_prefix(&self.root).ok()?;
        let first = rest.components().next();
        match first {
            None => Some("the data directory itself".into()),
            Some(part) if part.as_os_str() == "inbox" => None,
            Some(part) => {
                let shown = part.as_os_str().to_string_lossy();
                Some(if rest.components().count() > 1 || path.is_dir() {
                    format!("{shown}/")
                } else {
                    shown.into_owned()
                })
            }
        }
    }

    /// Creates a new, empty file under `tmp/` for an ingest's copy of a
    /// file from another filesystem, `tmp/ingest.PID.N.HINT.part`, with a
    /// name no other writer uses; rename it into place with [`place`] once
    /// it is complete and synced. The prefix tells ingest's own leftovers
    /// from other writers' (see [`TmpFile`]).
    pub fn create_ingest_copy(&self, hint: &str) -> io::Result<(File, PathBuf)> {
        let hint: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .take(64)
            .collect();
        self.create_unique_tmp(|pid, n| format!("{INGEST_PREFIX}{pid}.{n}.{hint}{PART}"))
    }

    /// Creates a new, empty ingest journal, `tmp/ingest.PID.N.journal`:
    /// what one ingest run is placing in the store, so a run after a crash
    /// can index what was placed and not committed.
    pub fn create_ingest_journal(&self) -> io::Result<(File, PathBuf)> {
        self.create_unique_tmp(|pid, n| format!("{INGEST_PREFIX}{pid}.{n}{JOURNAL}"))
    }

    fn create_unique_tmp(&self, name: impl Fn(u32, u64) -> String) -> io::Result<(File, PathBuf)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.tmp_dir().join(name(std::process::id(), n));
            match File::options().append(true).create_new(true).open(&path) {
                Ok(file) => return Ok((file, path)),
                // Left behind by an earlier process with our pid: pick another name.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Opens `tmp/` itself, for the ingest runs' advisory lock on it (see
    /// `ingest`): a directory is never removed by orphan GC, unlike a lock
    /// file inside it.
    pub fn open_tmp_dir(&self) -> io::Result<File> {
        File::open(self.tmp_dir())
    }

    /// The regular files directly in `tmp/` (work in progress writes no
    /// subdirectories), each with what it is by its name. A missing `tmp/`
    /// has none.
    pub fn tmp_files(&self) -> io::Result<Vec<TmpFile>> {
        let entries = match std::fs::read_dir(self.tmp_dir()) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            let metadata = match entry.path().symlink_metadata() {
                Ok(metadata) if metadata.is_file() => metadata,
                Ok(_) => continue,
                // Removed since it was listed (a run finished it).
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = match (name.starts_with(INGEST_PREFIX), name.ends_with(PART)) {
                (true, true) => TmpKind::IngestCopy,
                (true, false) if name.ends_with(JOURNAL) => TmpKind::IngestJournal,
                (_, true) => TmpKind::OtherPart,
                _ => TmpKind::Other,
            };
            files.push(TmpFile {
                path: entry.path(),
                kind,
                metadata,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Creates the directories that must exist; idempotent.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [
            self.root.clone(),
            self.plugins_dir(),
            self.tmp_dir(),
            self.inbox_dir(),
            self.files_dir(),
        ] {
            std::fs::create_dir_all(&dir)?;
        }
        Ok(())
    }
}

/// Moves `from` to `to` atomically without ever replacing a file at `to`:
/// fails with `AlreadyExists` if `to` exists, and with `CrossesDevices` if
/// the two are on different filesystems (copy into `tmp/` first, then place
/// the copy). Creates `to`'s parent directories.
pub fn place(from: &Path, to: &Path) -> io::Result<()> {
    match rename_no_replace(from, to) {
        // Most often the directory exists already, so it is only created
        // when the rename says it is missing (and the source is not).
        Err(error)
            if error.kind() == io::ErrorKind::NotFound && from.symlink_metadata().is_ok() =>
        {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            rename_no_replace(from, to)
        }
        other => other,
    }
}

fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags};
    use rustix::io::Errno;
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: a hard link also refuses an
        // existing name, atomically; then the old name goes.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            std::fs::hard_link(from, to)?;
            if let Err(error) = std::fs::remove_file(from) {
                let _ = std::fs::remove_file(to);
                return Err(error);
            }
            Ok(())
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Makes a directory's entries (a rename into it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("sub/b"));
        std::fs::write(&a, b"new").unwrap();
        place(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
        std::fs::write(&a, b"other").unwrap();
        assert_eq!(
            place(&a, &b).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(
            (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()),
            (b"other".to_vec(), b"new".to_vec())
        );
    }

    #[test]
    fn tmp_files_tell_ingest_leftovers_from_other_writers() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let (_, copy) = data.create_ingest_copy("files/set/a.bin").unwrap();
        let (_, journal) = data.create_ingest_journal().unwrap();
        let export = data.new_tmp_path("tar-export");
        std::fs::write(&export, b"x").unwrap();
        std::fs::write(data.tmp_dir().join("notes"), b"x").unwrap();
        std::fs::create_dir(data.tmp_dir().join("sub.part")).unwrap();
        let kinds: Vec<(PathBuf, TmpKind)> = data
            .tmp_files()
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.kind))
            .collect();
        let mut expected = vec![
            (copy, TmpKind::IngestCopy),
            (journal, TmpKind::IngestJournal),
            (export, TmpKind::OtherPart),
            (data.tmp_dir().join("notes"), TmpKind::Other),
        ];
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(kinds, expected);
        assert!(TmpKind::IngestCopy.is_part() && TmpKind::OtherPart.is_part());
        assert!(!TmpKind::IngestJournal.is_part());
    }

    #[test]
    fn internals_are_named_and_the_inbox_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.create().unwrap();
        let data = data.canonical().unwrap();
        let root = data.root().to_path_buf();
        assert_eq!(
            data.internal_area(&root.join("files/a.bin")).as_deref(),
            Some("files/")
        );
        assert_eq!(
            data.internal_area(&root.join("index.sqlite")).as_deref(),
            Some("index.sqlite")
        );
        assert_eq!(
            data.internal_area(&root.join("tmp")).as_deref(),
            Some("tmp/")
        );
        assert_eq!(
            data.internal_area(&root).as_deref(),
            Some("the data directory itself")
        );
        assert_eq!(data.internal_area(&root.join("inbox/set/a.bin")), None);
        assert_eq!(data.internal_area(&root.with_file_name("elsewhere")), None);
    }

    #[test]
    fn the_entity_is_the_first_directory_under_files() {
        assert_eq!(entity_of("files/set1/a.bin"), Some("set1"));
        assert_eq!(entity_of("files/set1/deep/a.bin"), Some("set1"));
        assert_eq!(entity_of("files/a.bin"), None);
        assert_eq!(entity_of("inbox/set1/a.bin"), None);
        assert!(is_stored_path(&stored_path("a.bin")));
        assert!(!is_stored_path("filesx/a.bin"));
    }

    #[test]
    fn index_paths_never_leave_the_data_directory() {
        let data = DataDir::new("/srv/wharf");
        assert_eq!(
            data.resolve("files/a/b.bin").unwrap(),
            Path::new("/srv/wharf/files/a/b.bin")
        );
        for bad in [
            "",
            "/etc/passwd",
            "files/../../etc",
            "files//a",
            "./files",
            "files/a\\b",
            "files/..",
        ] {
            assert!(data.resolve(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            data.relative(Path::new("/srv/wharf/files/x/y")).as_deref(),
            Some("files/x/y")
        );
        assert_eq!(data.relative(Path::new("/srv/other/files/x")), None);
    }
}
