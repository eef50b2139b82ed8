//! Ingest: takes files into the store and the index, for `wharf add PATH...`
//! ([`add`]) and the daemon's inbox scan ([`scan_inbox`], the `ingest` job),
//! and indexes files that already sit in the store ([`index_in_place`], for
//! `wharf fsck --repair`).
//!
//! One run walks its paths first (`walk.rs`, never following a symlink),
//! checks every file, then reads and hashes on `hash_threads` workers
//! (`read.rs`) that hand their results over a bounded channel to one writer
//! (`writer.rs`), the calling thread, which re-checks each file, places it
//! and commits index rows in batches. Workers only read (and write copies
//! into `tmp/`); every change to the store and the index is the writer's.
//! A run that places files first takes the ingest lock on `tmp/` and, when
//! it is the only ingest run alive, finishes what killed runs left
//! (`recover.rs`).
//! Per file:
//!
//! 1. stat, then the checks: a symlink, a non-regular file, a non-UTF-8 name,
//!    a path in the data directory's internals or a name that cannot be
//!    stored is an error; an empty file or one modified within
//!    `file_last_modified_ms` is skipped and left for later; a file over
//!    `max_file_size_bytes` is an error.
//! 2. Same filesystem as the store: hash it (one read), re-stat it (same
//!    inode, size, mtime and ctime, else "changed while being read": left
//!    for later), then rename it into the store without replacing anything.
//!    Another filesystem: copy it into `tmp/` hashing in the same pass (one
//!    read), fsync, re-stat the source, rename the copy into the store.
//!    A copy keeps the source's modification time, as `mv` does.
//! 3. Record the row in the run's journal (`journal.rs`), rename, commit the
//!    row (batched; the directories that received copies are synced first),
//!    then, for a copy, remove the source.
//!
//! A crash at any point loses nothing, and the next run finishes the job
//! (`recover.rs`, then the writer): before the rename the source is intact
//! (a copy in `tmp/` is removed and made again); after it and before the
//! commit the file is in the store untracked and named in the journal,
//! which the next run indexes; after the commit and before a copy's source
//! is removed, the next run of the same `wharf add` finds its destination
//! tracked with the same content and modification time and removes the
//! source. When the journal is gone (a power loss), a destination holding
//! the source's bytes untracked is indexed and the source removed, and
//! `wharf fsck --repair` indexes what no run names again. A file is never
//! indexed with a hash of other bytes than those it holds when placed, and
//! a stored file is never overwritten. One bad file never stops the run:
//! every file gets an [`Outcome`] (`outcome.rs`) that says what happened
//! and what to do.

mod journal;
mod outcome;
mod read;
mod recover;
mod walk;
mod writer;

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::config::IngestConfig;
use crate::index::{Index, now_ms};
use crate::store::{self, DataDir};

pub use outcome::{
    Counts, FailReason, FileReport, Outcome, Recovery, Report, Retry, Skip, SkipReason,
};

use walk::Walk;

/// Called with a source path after it was hashed and before it is
/// re-checked; see [`IngestOptions::before_recheck`].
pub type Hook = Arc<dyn Fn(&Path) + Send + Sync>;

/// How one run ingests.
#[derive(Clone)]
pub struct IngestOptions {
    /// The `kind` of every file indexed (e.g. `capture`).
    pub kind: String,
    /// The entity of every file indexed; `None` derives it from the store
    /// path: the first directory under the store (`files/set1/a.bin` →
    /// `set1`), none for a file directly in it.
    pub entity: Option<String>,
    pub file_last_modified_ms: u64,
    pub max_file_size_bytes: u64,
    /// Hashing threads, at least 1.
    pub hash_threads: usize,
    /// Set to stop the run early (shutdown): files not started are reported
    /// as skipped and left where they are; a file being read is abandoned.
    pub cancel: Arc<AtomicBool>,
    /// Set to stop the run early to make way for another job (the jobs
    /// engine's time slice): as with `cancel`, what the run did not finish
    /// stays for the next one.
    pub pause: Arc<AtomicBool>,
    /// Copy through `tmp/` even from the store's own filesystem, as for a
    /// source on another one (the source is removed after the commit all
    /// the same). Tests use it to exercise the copy path anywhere.
    pub always_copy: bool,
    /// A test seam: runs between hashing a file and re-checking it, so a
    /// test can change a file at exactly that moment.
    pub before_recheck: Option<Hook>,
    /// A test seam: runs with the source path after its file was placed in
    /// the store and before its row is committed, so a test can stop a run
    /// (panic) where a kill would leave a file placed and not indexed.
    pub after_place: Option<Hook>,
}

impl std::fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("kind", &self.kind)
            .field("entity", &self.entity)
            .field("file_last_modified_ms", &self.file_last_modified_ms)
            .field("max_file_size_bytes", &self.max_file_size_bytes)
            .field("hash_threads", &self.hash_threads)
            .field("always_copy", &self.always_copy)
            .finish_non_exhaustive()
    }
}

impl IngestOptions {
    /// Options from `[ingest]`, kind `capture`, entity from the store path.
    pub fn new(config: &IngestConfig) -> IngestOptions {
        IngestOptions {
            kind: "capture".into(),
            entity: None,
            file_last_modified_ms: config.file_last_modified_ms,
            max_file_size_bytes: config.max_file_size_bytes,
            hash_threads: config.threads().max(1),
            cancel: Arc::new(AtomicBool::new(false)),
            pause: Arc::new(AtomicBool::new(false)),
            always_copy: false,
            before_recheck: None,
            after_place: None,
        }
    }
}

/// Told about a run's progress, from any thread; the CLI draws a bar.
pub trait Progress: Sync {
    /// The walk is done: this many files and bytes will be read.
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// Bytes read (or skipped over) since the last call.
    fn advanced(&self, _bytes: u64) {}
}

/// No progress reporting.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Ingests files and directories given by the user (`wharf add`): a file
/// `x/y/name.bin` goes to `files/name.bin`, a directory `dir/` puts its
/// files at `files/dir/<relative path>`. Sources on the store's filesystem
/// are moved, others copied and then removed.
///
/// Fails as a whole only if the data directory or the index cannot be used;
/// every per-file problem is in the report.
pub fn add(
    data_dir: &DataDir,
    index: &Index,
    paths: &[PathBuf],
    options: &IngestOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let run = Run::new(data_dir, index, options, Retry::AddAgain)?;
    let (_lock, recovered) = run.lock_and_recover();
    let mut walk = Walk::default();
    for path in paths {
        walk::walk_argument(&run, path, &mut walk);
    }
    let mut report = run.ingest(walk, progress)?;
    report.recovered = recovered;
    Ok(report)
}

/// Ingests everything in the inbox: `inbox/<rel>` goes to `files/<rel>`,
/// and the first directory under the inbox is the entity
/// (`inbox/set1/a.bin` → `set1`) unless the options name one. Files not
/// ready yet stay in the inbox for the next scan.
pub fn scan_inbox(
    data_dir: &DataDir,
    index: &Index,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let run = Run::new(data_dir, index, options, Retry::NextScan)?;
    let (_lock, recovered) = run.lock_and_recover();
    let mut walk = Walk::default();
    let inbox = run.data.inbox_dir();
    if inbox.is_dir() {
        walk::walk_dir(&run, &inbox, None, store::FILES, &mut walk);
    }
    let mut report = run.ingest(walk, progress)?;
    report.recovered = recovered;
    Ok(report)
}

/// Indexes files already in the store that the index does not have: hashes
/// them where they are (no move, same checks, same re-check) and commits
/// their rows. `paths` are index paths (`files/...`). `wharf fsck --repair`
/// calls this for the untracked files a crash between placing a file and
/// committing its row leaves behind.
pub fn index_in_place(
    data_dir: &DataDir,
    index: &Index,
    paths: &[String],
    options: &IngestOptions,
) -> anyhow::Result<Report> {
    let run = Run::new(data_dir, index, options, Retry::FsckAgain)?;
    let mut walk = Walk::default();
    for path in paths {
        let real = match run.data.resolve(path) {
            Ok(real) if store::is_stored_path(path) => real,
            _ => {
                let files = run.data.files_dir().display().to_string();
                walk.report.fail(
                    path,
                    FailReason::NotAnIndexPath {
                        path: path.clone(),
                        files,
                    },
                );
                continue;
            }
        };
        match std::fs::symlink_metadata(&real) {
            Ok(metadata) => run.consider(real, path.clone(), &metadata, &mut walk),
            Err(error) => walk.report.fail(real, outcome::read_error(&error)),
        }
    }
    run.ingest(walk, &NoProgress)
}

/// Whether `path` is a regular file (not followed if a symlink) of `size` bytes.
fn regular_of_size(path: &Path, size: u64) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// A file's identity and version: if any of these changed, so may have its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    fn of(metadata: &Metadata) -> Stat {
        Stat {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            ctime_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
        }
    }

    fn mtime_ms(&self) -> i64 {
        (self.mtime_ns.div_euclid(1_000_000)) as i64
    }

    /// The modification time, to give a copy.
    fn mtime(&self) -> SystemTime {
        let before = self.mtime_ns < 0;
        let nanos = u64::try_from(self.mtime_ns.unsigned_abs()).unwrap_or(u64::MAX);
        let offset = Duration::from_nanos(nanos);
        if before {
            UNIX_EPOCH.checked_sub(offset).unwrap_or(UNIX_EPOCH)
        } else {
            UNIX_EPOCH.checked_add(offset).unwrap_or(UNIX_EPOCH)
        }
    }
}

/// A file that passed the checks and will be read.
#[derive(Debug)]
struct Candidate {
    source: PathBuf,
    /// Its index path, `files/...`.
    dest: String,
    stat: Stat,
}

/// One run's shared state.
struct Run<'a> {
    /// The data directory with a canonical root.
    data: DataDir,
    index: &'a Index,
    options: &'a IngestOptions,
    /// What kind of run this is, which says when a skipped file is retried.
    retry: Retry,
    /// The filesystem the store is on.
    store_dev: u64,
    now_ms: i64,
    /// When the run started (ns since the epoch), for the leftovers it may
    /// remove: only files last changed before it.
    started_ns: i128,
    /// Set when the index fails: no more files are taken.
    stop: AtomicBool,
}

impl<'a> Run<'a> {
    fn new(
        data_dir: &DataDir,
        index: &'a Index,
        options: &'a IngestOptions,
        retry: Retry,
    ) -> anyhow::Result<Run<'a>> {
        let shown = data_dir.root().display();
        data_dir
            .create()
            .with_context(|| format!("cannot create the data directory {shown}"))?;
        let data = data_dir
            .canonical()
            .with_context(|| format!("cannot resolve the data directory {shown}"))?;
        let store_dev = std::fs::metadata(data.files_dir())
            .with_context(|| format!("cannot read {}", data.files_dir().display()))?
            .dev();
        Ok(Run {
            data,
            index,
            options,
            retry,
            store_dev,
            now_ms: now_ms(),
            started_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)),
            stop: AtomicBool::new(false),
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.options.cancel.load(Ordering::Relaxed)
            || self.options.pause.load(Ordering::Relaxed)
    }

    /// Files are placed in the store, except in an in-place run (fsck),
    /// whose files are there already.
    fn in_place(&self) -> bool {
        self.retry == Retry::FsckAgain
    }

    fn skip(&self, reason: SkipReason) -> Outcome {
        Outcome::Skipped(Skip {
            reason,
            retry: self.retry,
        })
    }
}
