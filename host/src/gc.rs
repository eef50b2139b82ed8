//! Orphan GC: leftovers in `tmp/` (a `*.part` of a killed copy) and, when
//! the operator asks for it (`remove_untracked_files`), files under `files/`
//! the index does not track, removed once neither modified nor moved for
//! `orphan_lifetime_ms`. By default untracked files under `files/` are only
//! reported: one may be the only copy of a file an ingest placed just before
//! a crash, which `wharf fsck --repair` indexes.
//!
//! Race-safe against an ingest placing the same path: a file's age is the
//! younger of its mtime and ctime, and placing a file (rename or link)
//! updates its ctime, so a file an ingest just placed is young for a whole
//! lifetime; and right before unlinking, under the index's write lock
//! (under which an ingest commits its rows), the path is checked again and
//! re-examined on disk, so a path the index gained since the scan, or a
//! file replaced since, is never removed (dlrepo's GC/re-link race).
//!
//! Interruptible between files. Never follows a symlink and never removes
//! anything but regular files.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::index::Index;
use crate::store::DataDir;

/// A file GC would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub path: PathBuf,
    /// The index path (`files/...`) for an untracked file; none in `tmp/`.
    pub index_path: Option<String>,
    pub size: u64,
    /// Device, inode and ctime seen at the scan: a file replaced, moved or
    /// changed since is not the orphan (an inode number alone may be reused).
    identity: Identity,
}

type Identity = (u64, u64, i64, i64);

fn identity(metadata: &std::fs::Metadata) -> Identity {
    (
        metadata.dev(),
        metadata.ino(),
        metadata.ctime(),
        metadata.ctime_nsec(),
    )
}

/// What a GC run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Paths relative to the data directory.
    pub removed: Vec<String>,
    pub removed_bytes: u64,
    /// Orphans at the scan that the index gained or that changed before
    /// their removal: left alone.
    pub spared: Vec<String>,
    /// Untracked files under `files/` left in place (GC does not remove
    /// them unless told to); `wharf fsck --repair` indexes them.
    pub untracked: Vec<String>,
    /// Entries GC cannot judge or remove (path: error).
    pub errors: Vec<String>,
    pub cancelled: bool,
}

/// Milliseconds since the file was last modified or moved.
fn age_ms(metadata: &std::fs::Metadata, now_ms: i64) -> i64 {
    let ms = |secs: i64, nanos: i64| secs.saturating_mul(1000) + nanos / 1_000_000;
    let changed = ms(metadata.mtime(), metadata.mtime_nsec())
        .max(ms(metadata.ctime(), metadata.ctime_nsec()));
    now_ms.saturating_sub(changed)
}

/// What GC does with untracked files under `files/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untracked {
    /// Leave them and list them in [`GcReport::untracked`].
    Report,
    /// Remove them like `tmp/` leftovers.
    Remove,
}

impl Untracked {
    pub fn from_config(remove: bool) -> Untracked {
        if remove {
            Untracked::Remove
        } else {
            Untracked::Report
        }
    }
}

/// Lists the orphans: regular files in `tmp/` and (with
/// [`Untracked::Remove`]) untracked regular files under `files/`, each older
/// than `lifetime_ms` at `now_ms`.
pub fn scan(
    data_dir: &DataDir,
    index: &Index,
    lifetime_ms: u64,
    untracked: Untracked,
    now_ms: i64,
    report: &mut GcReport,
) -> anyhow::Result<Vec<Orphan>> {
    let lifetime = i64::try_from(lifetime_ms).unwrap_or(i64::MAX);
    let mut found = Vec::new();
    walk(&data_dir.files_dir(), &mut found, &mut report.errors);
    let files_found = found.len();
    walk(&data_dir.tmp_dir(), &mut found, &mut report.errors);
    let mut orphans = Vec::new();
    for (i, (path, metadata)) in found.into_iter().enumerate() {
        if age_ms(&metadata, now_ms) < lifetime {
            continue;
        }
        let index_path = if i < files_found {
            let Some(relative) = data_dir.relative(&path) else {
                report
                    .errors
                    .push(format!("{}: not a valid index path", path.display()));
                continue;
            };
            if index.is_tracked(&relative)? {
                continue;
            }
            if untracked == Untracked::Report {
                report.untracked.push(relative);
                continue;
            }
            Some(relative)
        } else {
            None
        };
        orphans.push(Orphan {
            path,
            index_path,
            size: metadata.len(),
            identity: identity(&metadata),
        });
    }
    Ok(orphans)
}

/// Regular files under `dir`, recursively, without following symlinks.
fn walk(dir: &Path, found: &mut Vec<(PathBuf, std::fs::Metadata)>, errors: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            errors.push(format!("{}: {error}", dir.display()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                errors.push(format!("{}: {error}", dir.display()));
                continue;
            }
        };
        let path = entry.path();
        match entry.path().symlink_metadata() {
            Ok(metadata) if metadata.is_dir() => walk(&path, found, errors),
            Ok(metadata) if metadata.is_file() => found.push((path, metadata)),
            Ok(_) => {}
            Err(error) => errors.push(format!("{}: {error}", path.display())),
        }
    }
}

/// Removes `orphans`, each only if, right before, it is still untracked
/// (checked under the index's write lock), still the same file and still
/// older than `lifetime_ms`. Stops between files when `cancel` is set.
pub fn remove(
    data_dir: &DataDir,
    index: &Index,
    orphans: &[Orphan],
    lifetime_ms: u64,
    cancel: &AtomicBool,
    report: &mut GcReport,
) -> anyhow::Result<()> {
    let lifetime = i64::try_from(lifetime_ms).unwrap_or(i64::MAX);
    for orphan in orphans {
        if cancel.load(Ordering::Relaxed) {
            report.cancelled = true;
            return Ok(());
        }
        let shown = data_dir
            .relative(&orphan.path)
            .unwrap_or_else(|| orphan.path.display().to_string());
        let remove_now = || -> std::io::Result<bool> {
            let metadata = match orphan.path.symlink_metadata() {
                Ok(metadata) => metadata,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(error) => return Err(error),
            };
            let same = metadata.is_file() && identity(&metadata) == orphan.identity;
            if !same || age_ms(&metadata, crate::index::now_ms()) < lifetime {
                return Ok(false);
            }
            std::fs::remove_file(&orphan.path)?;
            Ok(true)
        };
        let outcome = match &orphan.index_path {
            Some(path) => index.unless_tracked(path, remove_now)?,
            // The index never tracks `tmp/`.
            None => Some(remove_now()),
        };
        match outcome {
            Some(Ok(true)) => {
                report.removed_bytes += orphan.size;
                report.removed.push(shown);
            }
            None | Some(Ok(false)) => report.spared.push(shown),
            Some(Err(error)) => report.errors.push(format!("{shown}: {error}")),
        }
    }
    Ok(())
}

/// One GC run: [`scan`], then [`remove`].
pub fn collect(
    data_dir: &DataDir,
    index: &Index,
    lifetime_ms: u64,
    untracked: Untracked,
    cancel: &AtomicBool,
) -> anyhow::Result<GcReport> {
    let mut report = GcReport::default();
    let orphans = scan(
        data_dir,
        index,
        lifetime_ms,
        untracked,
        crate::index::now_ms(),
        &mut report,
    )?;
    remove(data_dir, index, &orphans, lifetime_ms, cancel, &mut report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::NewFile;

    fn setup() -> (tempfile::TempDir, DataDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(dir.path().join("data"));
        data_dir.create().unwrap();
        let index = Index::open(&data_dir.index_path()).unwrap();
        (dir, data_dir, index)
    }

    fn index_file(index: &Index, path: &str) {
        index
            .insert_files(&[NewFile {
                path: path.into(),
                size: 1,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: None,
                created_ms: 1,
            }])
            .unwrap();
    }

    #[test]
    fn by_default_gc_removes_tmp_leftovers_and_only_reports_untracked_files() {
        let (_dir, data_dir, index) = setup();
        let files = data_dir.files_dir();
        std::fs::create_dir_all(files.join("set")).unwrap();
        std::fs::write(files.join("set/untracked.bin"), b"only copy").unwrap();
        std::fs::write(data_dir.tmp_dir().join("1.2.copy.part"), b"xyz").unwrap();
        let never = AtomicBool::new(false);
        let report = collect(&data_dir, &index, 0, Untracked::Report, &never).unwrap();
        assert_eq!(report.removed, ["tmp/1.2.copy.part"]);
        assert_eq!(report.untracked, ["files/set/untracked.bin"]);
        assert_eq!(
            std::fs::read(files.join("set/untracked.bin")).unwrap(),
            b"only copy"
        );
    }

    #[test]
    fn gc_removes_untracked_files_and_tmp_leftovers_but_not_tracked_or_young_ones() {
        let (_dir, data_dir, index) = setup();
        let files = data_dir.files_dir();
        std::fs::create_dir_all(files.join("set")).unwrap();
        std::fs::write(files.join("set/tracked.bin"), b"x").unwrap();
        std::fs::write(files.join("set/orphan.bin"), b"xy").unwrap();
        std::fs::write(data_dir.tmp_dir().join("1.2.copy.part"), b"xyz").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", files.join("link")).unwrap();
        index_file(&index, "files/set/tracked.bin");
        let never = AtomicBool::new(false);
        // Everything is younger than a minute: nothing goes.
        let young = collect(&data_dir, &index, 60_000, Untracked::Remove, &never).unwrap();
        assert!(young.removed.is_empty(), "{young:?}");
        let report = collect(&data_dir, &index, 0, Untracked::Remove, &never).unwrap();
        let mut removed = report.removed.clone();
        removed.sort();
        assert_eq!(removed, ["files/set/orphan.bin", "tmp/1.2.copy.part"]);
        assert_eq!(report.removed_bytes, 5);
        assert!(files.join("set/tracked.bin").exists());
        assert!(
            files.join("link").symlink_metadata().is_ok(),
            "symlinks are left alone"
        );
    }

    #[test]
    fn gc_never_removes_a_path_the_index_gained_since_its_scan() {
        let (_dir, data_dir, index) = setup();
        let path = data_dir.files_dir().join("late.bin");
        std::fs::write(&path, b"data").unwrap();
        let mut report = GcReport::default();
        let orphans = scan(
            &data_dir,
            &index,
            0,
            Untracked::Remove,
            crate::index::now_ms(),
            &mut report,
        )
        .unwrap();
        assert_eq!(orphans.len(), 1);
        // An ingest commits the same path between the scan and the removal.
        index_file(&index, "files/late.bin");
        remove(
            &data_dir,
            &index,
            &orphans,
            0,
            &AtomicBool::new(false),
            &mut report,
        )
        .unwrap();
        assert!(path.exists(), "the file the index gained is still there");
        assert_eq!(report.spared, ["files/late.bin"]);
        assert!(report.removed.is_empty());
    }

    #[test]
    fn gc_spares_a_file_placed_at_an_orphan_path_since_its_scan() {
        let (dir, data_dir, index) = setup();
        let path = data_dir.files_dir().join("again.bin");
        std::fs::write(&path, b"old").unwrap();
        let mut report = GcReport::default();
        let orphans = scan(
            &data_dir,
            &index,
            0,
            Untracked::Remove,
            crate::index::now_ms(),
            &mut report,
        )
        .unwrap();
        // The orphan goes and an ingest places a new file at its path
        // (not yet committed): not the file GC saw. (The old inode stays
        // open so the new file cannot reuse its number.)
        let _old = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let source = dir.path().join("new.bin");
        std::fs::write(&source, b"new").unwrap();
        crate::store::place(&source, &path).unwrap();
        remove(
            &data_dir,
            &index,
            &orphans,
            0,
            &AtomicBool::new(false),
            &mut report,
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn gc_stops_between_files_when_cancelled() {
        let (_dir, data_dir, index) = setup();
        for i in 0..3 {
            std::fs::write(data_dir.files_dir().join(format!("{i}")), b"x").unwrap();
        }
        let report = collect(
            &data_dir,
            &index,
            0,
            Untracked::Remove,
            &AtomicBool::new(true),
        )
        .unwrap();
        assert!(report.cancelled);
        assert!(report.removed.is_empty());
    }
}
