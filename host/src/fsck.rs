//! `wharf fsck`: compares the index with the disk.
//!
//! - an indexed file missing on disk becomes `lost`;
//! - an indexed file whose size or sha256 differs becomes `corrupt`;
//! - a `lost` or `corrupt` file found intact again becomes `ready`;
//! - a file under `files/` the index does not know is reported as untracked,
//!   and indexed with `repair` (this is how a crash between moving a file into
//!   the store and committing its row is recovered: nothing is lost).
//!
//! First, deletions a crash interrupted (rows still `deleting`) are
//! finished: the decision and its `events` row were committed before the
//! crash, so the file is unlinked if still there and the row removed. Files
//! being written are left alone. Every state change is recorded in the
//! `events` audit log.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use crate::index::{FileRow, FileState, Index};
use crate::ingest::{self, IngestOptions, Outcome};
use crate::store::DataDir;

/// What fsck found and did. Paths are index paths (`files/...`).
#[derive(Debug, Default)]
pub struct FsckReport {
    pub checked: usize,
    pub lost: Vec<String>,
    pub corrupt: Vec<String>,
    /// Found intact again, back to `ready`.
    pub restored: Vec<String>,
    /// On disk, not in the index (after `repair`: those that could not be indexed).
    pub untracked: Vec<String>,
    /// Untracked files indexed by `repair`.
    pub indexed: Vec<String>,
    /// Entries fsck cannot judge (symlinks, non-UTF-8 names, read errors).
    pub errors: Vec<String>,
    /// Interrupted deletions finished.
    pub deletions_finished: Vec<String>,
}

impl FsckReport {
    /// Problems left after this run; `wharf fsck` exits non-zero when any remain.
    pub fn problems(&self) -> usize {
        self.lost.len() + self.corrupt.len() + self.untracked.len() + self.errors.len()
    }
}

/// Checks every tracked file and every file under `files/`; with `repair`,
/// untracked files are indexed with these ingest options.
pub fn fsck(
    data_dir: &DataDir,
    index: &Index,
    repair: Option<&IngestOptions>,
) -> anyhow::Result<FsckReport> {
    let mut report = FsckReport::default();
    let finished = crate::retention::finish_deletions(index, data_dir)?;
    report.deletions_finished = finished.finished;
    report.errors.extend(
        finished
            .failed
            .into_iter()
            .map(|failed| format!("{failed} (an interrupted deletion; fsck retries it)")),
    );
    let mut on_disk = BTreeMap::new();
    walk(
        data_dir,
        &data_dir.files_dir(),
        &mut on_disk,
        &mut report.errors,
    );

    let mut rows = Vec::new();
    index.for_each_file(|row| {
        rows.push(row);
        Ok(())
    })?;
    let mut to_hash = Vec::new();
    for row in rows {
        if matches!(row.state, FileState::Writing | FileState::Deleting) {
            on_disk.remove(&row.path);
            continue;
        }
        report.checked += 1;
        match on_disk.remove(&row.path) {
            None => {
                if row.state != FileState::Lost {
                    index.set_file_state(row.id, FileState::Lost, "fsck: missing on disk")?;
                }
                report.lost.push(row.path);
            }
            Some(size) if size != row.size => {
                let reason = format!("fsck: size is {size} bytes, the index says {}", row.size);
                mark_corrupt(index, &row, &reason, &mut report)?;
            }
            Some(_) => to_hash.push(row),
        }
    }
    let hashes = hash_all(
        data_dir,
        to_hash.iter().map(|row| row.path.as_str()).collect(),
    );
    for (row, hash) in to_hash.iter().zip(hashes) {
        match hash {
            Ok(hash) if hash == row.sha256 => {
                if matches!(row.state, FileState::Lost | FileState::Corrupt) {
                    index.set_file_state(row.id, FileState::Ready, "fsck: found intact")?;
                    report.restored.push(row.path.clone());
                }
            }
            Ok(hash) => {
                let reason = format!("fsck: sha256 is {hash}, the index says {}", row.sha256);
                mark_corrupt(index, row, &reason, &mut report)?;
            }
            Err(error) => report
                .errors
                .push(format!("{}: cannot be read: {error}", row.path)),
        }
    }

    let untracked: Vec<String> = on_disk.into_keys().collect();
    if let Some(options) = repair.filter(|_| !untracked.is_empty()) {
        index_untracked(data_dir, index, untracked, options, &mut report)?;
    } else {
        report.untracked = untracked;
    }
    Ok(report)
}

fn mark_corrupt(
    index: &Index,
    row: &FileRow,
    reason: &str,
    report: &mut FsckReport,
) -> anyhow::Result<()> {
    if row.state != FileState::Corrupt {
        index.set_file_state(row.id, FileState::Corrupt, reason)?;
    }
    report.corrupt.push(row.path.clone());
    Ok(())
}

/// Indexes files found in `files/` as they are, through the same checks
/// ingest applies; what it cannot index now stays reported as untracked.
fn index_untracked(
    data_dir: &DataDir,
    index: &Index,
    paths: Vec<String>,
    options: &IngestOptions,
    report: &mut FsckReport,
) -> anyhow::Result<()> {
    for file in ingest::index_in_place(data_dir, index, &paths, options)?.files {
        match file.outcome {
            Outcome::Ingested { path, .. } => report.indexed.push(path),
            Outcome::Duplicate { path } => report.indexed.push(path),
            Outcome::Skipped(skip) => {
                report
                    .untracked
                    .push(format!("{} ({skip})", file.source.display()));
            }
            Outcome::Failed(reason) => {
                report
                    .untracked
                    .push(format!("{} ({reason})", file.source.display()));
            }
        }
    }
    Ok(())
}

/// Collects regular files under `dir` as index path → size.
fn walk(
    data_dir: &DataDir,
    dir: &Path,
    found: &mut BTreeMap<String, u64>,
    errors: &mut Vec<String>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => {
            errors.push(format!("{}: cannot be listed: {error}", dir.display()));
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                errors.push(format!("{}: cannot be listed: {error}", dir.display()));
                continue;
            }
        };
        let path = entry.path();
        let Some(relative) = data_dir.relative(&path) else {
            errors.push(format!(
                "{}: the name is not valid UTF-8; rename it",
                path.display()
            ));
            continue;
        };
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => walk(data_dir, &path, found, errors),
            Ok(kind) if kind.is_file() => match entry.metadata() {
                Ok(metadata) => {
                    found.insert(relative, metadata.len());
                }
                Err(error) => errors.push(format!("{relative}: {error}")),
            },
            Ok(_) => errors.push(format!(
                "{relative}: not a regular file (symlinks are never tracked); remove it"
            )),
            Err(error) => errors.push(format!("{relative}: {error}")),
        }
    }
}

/// sha256 of each index path, on as many threads as there are cores.
fn hash_all(data_dir: &DataDir, paths: Vec<&str>) -> Vec<std::io::Result<String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<std::io::Result<String>>>> =
        Mutex::new((0..paths.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // 64 KiB: measured faster than 1 MiB for ingest (BENCHMARKS.md).
                let mut buffer = vec![0u8; 64 << 10];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let hash = data_dir
                        .resolve(path)
                        .map_err(std::io::Error::other)
                        .and_then(|real| sha256_file(&real, &mut buffer));
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)[i] = Some(hash);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|hash| hash.unwrap_or_else(|| Err(std::io::Error::other("not hashed"))))
        .collect()
}

fn sha256_file(path: &PathBuf, buffer: &mut [u8]) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    loop {
        let read = file.read(buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}
