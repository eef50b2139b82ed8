//! Ingest: takes files into the store and the index, for `wharf add PATH...`
//! ([`add`]) and the daemon's inbox scan ([`scan_inbox`]), and indexes files
//! that already sit in `files/` ([`index_in_place`], for `wharf fsck --repair`).
//!
//! One run walks its paths first (never following a symlink), checks every
//! file, then reads and hashes on `hash_threads` workers that hand their
//! results over a bounded channel to one writer, the calling thread, which
//! re-checks each file, places it and commits index rows in batches. Workers
//! only read (and write copies into `tmp/`); every change to `files/` and
//! the index is the writer's, and renames into one filesystem are serialized
//! by the kernel anyway. Per file:
//!
//! 1. stat, then the checks: a symlink, a non-regular file, a non-UTF-8 name,
//!    a path in the data directory's internals or a name that cannot be
//!    stored is an error; an empty file or one modified within
//!    `file_last_modified_ms` is skipped and left for later; a file over
//!    `max_file_size_bytes` is an error.
//! 2. Same filesystem as the store: hash it (one read), re-stat it (same
//!    inode, size, mtime and ctime, else "changed while being read": left
//!    for later), then rename it into `files/` without replacing anything.
//!    Another filesystem: copy it into `tmp/` hashing in the same pass (one
//!    read), fsync, re-stat the source, rename the copy into `files/`.
//! 3. Commit the index row (batched; the directories that received copies
//!    are synced first), then, for a copy, remove the source.
//!
//! A crash at any point loses nothing: before the rename the source is
//! intact; after it and before the commit the file is in `files/` untracked,
//! which `wharf fsck --repair` indexes. A file is never indexed with a hash
//! of other bytes than those it holds when placed, and a file in `files/` is
//! never overwritten. One bad file never stops the run: every file gets an
//! [`Outcome`] that says what happened and what to do.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::IngestConfig;
use crate::index::{Index, InsertOutcome, NewFile, now_ms};
use crate::store::{self, DataDir};

/// Bytes read at a time. Measured on a 1 GiB file: 64 KiB reads hash 35-40%
/// faster than 1 MiB reads, whose buffer spills out of the L2 cache between
/// the kernel's copy and the hash; the syscalls saved by bigger reads are
/// worth far less.
const READ_BUFFER: usize = 64 << 10;
/// Index rows committed in one transaction at most.
const BATCH: usize = 1000;
/// Results a worker hands the writer at once: one wake-up per handful of
/// small files instead of one per file.
const HANDOFF_FILES: usize = 64;
/// ... or per this many bytes read, so big files reach the writer promptly.
const HANDOFF_BYTES: u64 = 8 << 20;
/// Hand-offs waiting for the writer at most; workers block beyond that.
const CHANNEL: usize = 16;
/// A partial batch is committed when no result arrived for this long.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// Called with a source path after it was hashed and before it is
/// re-checked; see [`IngestOptions::before_recheck`].
pub type Hook = Arc<dyn Fn(&Path) + Send + Sync>;

/// How one run ingests.
#[derive(Clone)]
pub struct IngestOptions {
    /// The `kind` of every file indexed (e.g. `capture`).
    pub kind: String,
    /// The entity of every file indexed; `None` derives it from the store
    /// path: the first directory under `files/` (`files/set1/a.bin` → `set1`),
    /// none for a file directly in `files/`.
    pub entity: Option<String>,
    pub file_last_modified_ms: u64,
    pub max_file_size_bytes: u64,
    /// Hashing threads, at least 1.
    pub hash_threads: usize,
    /// Set to stop the run early (shutdown): files not started are reported
    /// as skipped and left where they are; a file being read is abandoned.
    pub cancel: Arc<AtomicBool>,
    /// Copy through `tmp/` even from the store's own filesystem, as for a
    /// source on another one (the source is removed after the commit all
    /// the same). Tests use it to exercise the copy path anywhere.
    pub always_copy: bool,
    /// A test seam: runs between hashing a file and re-checking it, so a
    /// test can change a file at exactly that moment.
    pub before_recheck: Option<Hook>,
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
            always_copy: false,
            before_recheck: None,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// In the store at `path` and indexed.
    Ingested {
        path: String,
        size: u64,
        sha256: String,
    },
    /// The store already has this content at `path`; the source was left alone.
    Duplicate { path: String },
    /// Not taken now, left where it is; the reason says when it will be.
    Skipped(String),
    /// Not taken; the reason says what to do.
    Failed(String),
}

/// One file (or directory) of a run and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub source: PathBuf,
    pub outcome: Outcome,
}

impl std::fmt::Display for FileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = self.source.display();
        match &self.outcome {
            Outcome::Ingested { path, .. } => write!(f, "{source}: ingested as {path}"),
            Outcome::Duplicate { path } => {
                write!(
                    f,
                    "{source}: duplicate of {path}, already in the store; the source was left where it is"
                )
            }
            Outcome::Skipped(reason) | Outcome::Failed(reason) => write!(f, "{source}: {reason}"),
        }
    }
}

/// Every file of a run, in the order they were found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub files: Vec<FileReport>,
}

/// How many files of a run ended each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ingested: usize,
    pub ingested_bytes: u64,
    pub duplicates: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for file in &self.files {
            match &file.outcome {
                Outcome::Ingested { size, .. } => {
                    counts.ingested += 1;
                    counts.ingested_bytes += size;
                }
                Outcome::Duplicate { .. } => counts.duplicates += 1,
                Outcome::Skipped(_) => counts.skipped += 1,
                Outcome::Failed(_) => counts.failed += 1,
            }
        }
        counts
    }

    fn push(&mut self, source: impl Into<PathBuf>, outcome: Outcome) {
        self.files.push(FileReport {
            source: source.into(),
            outcome,
        });
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
    let run = Run::new(data_dir, index, options, Origin::Add)?;
    let mut walk = Walk::default();
    for path in paths {
        walk_argument(&run, path, &mut walk);
    }
    run.ingest(walk, progress)
}

/// Ingests everything in `DATA_DIR/inbox`: `inbox/<rel>` goes to
/// `files/<rel>`, and the first directory under the inbox is the entity
/// (`inbox/set1/a.bin` → `set1`) unless the options name one. Files not
/// ready yet stay in the inbox for the next scan.
pub fn scan_inbox(
    data_dir: &DataDir,
    index: &Index,
    options: &IngestOptions,
) -> anyhow::Result<Report> {
    let run = Run::new(data_dir, index, options, Origin::Inbox)?;
    let mut walk = Walk::default();
    let inbox = run.data.inbox_dir();
    if inbox.is_dir() {
        walk_dir(&run, &inbox, None, "files", &mut walk);
    }
    run.ingest(walk, progress_none())
}

/// Indexes files already in `files/` that the index does not have: hashes
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
    let run = Run::new(data_dir, index, options, Origin::InPlace)?;
    let mut walk = Walk::default();
    for path in paths {
        let real = match run.data.resolve(path) {
            Ok(real) if path.starts_with("files/") => real,
            _ => {
                walk.report.push(
                    path,
                    Outcome::Failed(format!("{path:?} is not an index path under files/")),
                );
                continue;
            }
        };
        match std::fs::symlink_metadata(&real) {
            Ok(metadata) => run.consider(real, path.clone(), &metadata, &mut walk),
            Err(error) => walk.report.push(real, Outcome::Failed(read_error(&error))),
        }
    }
    run.ingest(walk, progress_none())
}

fn progress_none() -> &'static dyn Progress {
    &NoProgress
}

/// Where a run's files come from; decides placement and the retry hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Add,
    Inbox,
    InPlace,
}

impl Origin {
    fn retry_hint(self) -> &'static str {
        match self {
            Origin::Add => "run `wharf add` on it again later",
            Origin::Inbox => "the next inbox scan retries it",
            Origin::InPlace => "run `wharf fsck --repair` again later",
        }
    }
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
}

/// A file that passed the checks and will be read.
#[derive(Debug)]
struct Candidate {
    source: PathBuf,
    /// Its index path, `files/...`.
    dest: String,
    stat: Stat,
}

/// What the walk found: files to read, and the outcome of everything else.
#[derive(Debug, Default)]
struct Walk {
    candidates: Vec<Candidate>,
    report: Report,
    dests: HashSet<String>,
}

/// What a worker hands the writer for one file.
enum Step {
    /// Read once and hashed (and copied to `tmp`, synced, for a source on
    /// another filesystem); the writer re-checks it and places it.
    Hashed {
        sha256: String,
        tmp: Option<PathBuf>,
    },
    Done(Outcome),
}

/// Rows placed in the store and waiting for their commit, with, for each,
/// its candidate's number and, for a copy, the source to remove after it.
#[derive(Default)]
struct Batch {
    rows: Vec<NewFile>,
    placed: Vec<(usize, Option<(PathBuf, Stat)>)>,
    /// Directories that received a copy: synced before the commit, so no
    /// source is removed while its copy's new name could still be lost.
    dirs_to_sync: std::collections::BTreeSet<PathBuf>,
}

/// One run's shared state.
struct Run<'a> {
    /// The data directory with a canonical root.
    data: DataDir,
    index: &'a Index,
    options: &'a IngestOptions,
    origin: Origin,
    /// The filesystem `files/` is on.
    store_dev: u64,
    now_ms: i64,
    /// Set when the index fails: no more files are taken.
    stop: AtomicBool,
}

impl<'a> Run<'a> {
    fn new(
        data_dir: &DataDir,
        index: &'a Index,
        options: &'a IngestOptions,
        origin: Origin,
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
            origin,
            store_dev,
            now_ms: now_ms(),
            stop: AtomicBool::new(false),
        })
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.options.cancel.load(Ordering::Relaxed)
    }

    /// Checks one regular file found by the walk (`metadata` from lstat)
    /// and records it as a candidate or as an outcome.
    fn consider(&self, source: PathBuf, dest: String, metadata: &Metadata, walk: &mut Walk) {
        match self.check(&dest, metadata) {
            Ok(()) if !walk.dests.insert(dest.clone()) => {
                let reason = format!(
                    "another file of this run also goes to {dest}; rename one of them and add it again"
                );
                walk.report.push(source, Outcome::Failed(reason));
            }
            Ok(()) => walk.candidates.push(Candidate {
                source,
                dest,
                stat: Stat::of(metadata),
            }),
            Err(outcome) => walk.report.push(source, outcome),
        }
    }

    fn check(&self, dest: &str, metadata: &Metadata) -> Result<(), Outcome> {
        let options = self.options;
        let hint = self.origin.retry_hint();
        if metadata.file_type().is_symlink() {
            return Err(Outcome::Failed(SYMLINK.into()));
        }
        if !metadata.is_file() {
            return Err(Outcome::Failed(NOT_REGULAR.into()));
        }
        if metadata.len() == 0 {
            return Err(Outcome::Skipped(format!(
                "is empty (0 bytes), left where it is; it is taken once it has content: {hint}"
            )));
        }
        let age_ms = self.now_ms.saturating_sub(Stat::of(metadata).mtime_ms());
        if age_ms < 0 {
            return Err(Outcome::Skipped(format!(
                "has a modification time {} ms in the future, so it may still be being written; left where \
                 it is: check the clock of whatever wrote it (or `touch` it), then {hint}",
                -age_ms
            )));
        }
        if (age_ms as u64) < options.file_last_modified_ms {
            return Err(Outcome::Skipped(format!(
                "was modified {age_ms} ms ago, within file_last_modified_ms = {} ms, so it may still be \
                 being written; left where it is: {hint}",
                options.file_last_modified_ms
            )));
        }
        if metadata.len() > options.max_file_size_bytes {
            return Err(Outcome::Failed(format!(
                "is {} bytes, more than max_file_size_bytes = {}; left where it is. To accept it, raise \
                 [ingest] max_file_size_bytes in wharf.toml",
                metadata.len(),
                options.max_file_size_bytes
            )));
        }
        if let Err(error) = self.data.resolve(dest) {
            return Err(Outcome::Failed(format!(
                "cannot be stored: {error}; rename it and add it again"
            )));
        }
        Ok(())
    }

    /// Hashes, places and indexes every candidate; the calling thread is the
    /// one writer.
    fn ingest(&self, walk: Walk, progress: &dyn Progress) -> anyhow::Result<Report> {
        let Walk {
            candidates,
            mut report,
            ..
        } = walk;
        let total_bytes = candidates.iter().map(|c| c.stat.size).sum();
        progress.planned(candidates.len() as u64, total_bytes);
        let mut outcomes: Vec<Option<Outcome>> = vec![None; candidates.len()];
        let next = AtomicUsize::new(0);
        let threads = self.options.hash_threads.clamp(1, candidates.len().max(1));
        let (sender, receiver) = mpsc::sync_channel::<Vec<(usize, Step)>>(CHANNEL);
        let mut commit_error = None;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let sender = sender.clone();
                let (next, candidates) = (&next, &candidates);
                scope.spawn(move || self.work(candidates, next, &sender, progress));
            }
            drop(sender);
            let mut batch = Batch::default();
            // For the rare second read of a file renamed across a bind mount.
            let mut buffer = Vec::new();
            loop {
                let flush = match receiver.recv_timeout(FLUSH_AFTER) {
                    Ok(steps) => {
                        for (i, step) in steps {
                            let placed = match step {
                                Step::Done(outcome) => Err(outcome),
                                Step::Hashed { sha256, tmp } => {
                                    self.place(&candidates[i], sha256, tmp, &mut buffer)
                                }
                            };
                            match placed {
                                Ok((row, copied)) => {
                                    let source = &candidates[i];
                                    if copied {
                                        let dest = self.data.root().join(&row.path);
                                        batch
                                            .dirs_to_sync
                                            .extend(dest.parent().map(Path::to_path_buf));
                                    }
                                    let remove =
                                        copied.then(|| (source.source.clone(), source.stat));
                                    batch.rows.push(row);
                                    batch.placed.push((i, remove));
                                }
                                Err(outcome) => outcomes[i] = Some(outcome),
                            }
                        }
                        batch.rows.len() >= BATCH
                    }
                    Err(RecvTimeoutError::Timeout) => true,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                if flush
                    && !batch.rows.is_empty()
                    && let Err(error) = self.commit(&mut batch, &mut outcomes)
                {
                    // The index is unusable: stop taking files; what is
                    // already placed stays in files/ for fsck to index.
                    self.stop.store(true, Ordering::Relaxed);
                    commit_error.get_or_insert(error);
                }
            }
            if !batch.rows.is_empty()
                && let Err(error) = self.commit(&mut batch, &mut outcomes)
            {
                commit_error.get_or_insert(error);
            }
        });
        if let Some(error) = commit_error {
            let unindexed: Vec<String> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Some(Outcome::Failed(reason)) if reason.starts_with(UNINDEXED) => {
                        Some(reason.clone())
                    }
                    _ => None,
                })
                .collect();
            return Err(error.context(format!(
                "cannot commit to the index {}; {} file(s) were placed in files/ but not indexed: run \
                 `wharf fsck --repair` to index them ({})",
                self.index.path().display(),
                unindexed.len(),
                unindexed.join("; ")
            )));
        }
        let hint = self.origin.retry_hint();
        for (candidate, outcome) in candidates.into_iter().zip(outcomes) {
            let outcome = outcome.unwrap_or_else(|| {
                Outcome::Skipped(format!(
                    "not started: the run was interrupted; left where it is: {hint}"
                ))
            });
            report.push(candidate.source, outcome);
        }
        Ok(report)
    }

    /// A worker: takes candidates until none are left or the run is cancelled.
    fn work(
        &self,
        candidates: &[Candidate],
        next: &AtomicUsize,
        sender: &SyncSender<Vec<(usize, Step)>>,
        progress: &dyn Progress,
    ) {
        let mut buffer = vec![0; READ_BUFFER];
        let mut pending = Vec::with_capacity(HANDOFF_FILES);
        let mut pending_bytes = 0;
        // Bytes read and not yet told to `progress`, told every HANDOFF_BYTES.
        let mut unreported = 0;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let candidate = match candidates.get(i) {
                Some(candidate) if !self.stopped() => candidate,
                _ => break,
            };
            let mut read = 0;
            let step = self.read_one(candidate, &mut buffer, &mut |n| {
                read += n;
                unreported += n;
                if unreported >= HANDOFF_BYTES {
                    progress.advanced(std::mem::take(&mut unreported));
                }
            });
            // A file read only in part (or not at all) still counts as done.
            unreported += candidate.stat.size.saturating_sub(read);
            pending.push((i, step));
            pending_bytes += candidate.stat.size;
            if pending.len() >= HANDOFF_FILES || pending_bytes >= HANDOFF_BYTES {
                progress.advanced(std::mem::take(&mut unreported));
                pending_bytes = 0;
                let full = std::mem::replace(&mut pending, Vec::with_capacity(HANDOFF_FILES));
                if sender.send(full).is_err() {
                    return;
                }
            }
        }
        progress.advanced(unreported);
        if !pending.is_empty() {
            let _ = sender.send(pending);
        }
    }

    /// A worker's part: opens the file, checks it is the one the walk saw,
    /// and reads it once, hashing it (and copying it into `tmp/` when it is
    /// on another filesystem than the store).
    fn read_one(
        &self,
        candidate: &Candidate,
        buffer: &mut [u8],
        advanced: &mut dyn FnMut(u64),
    ) -> Step {
        let mut file = match open_regular(&candidate.source) {
            Ok(file) => file,
            Err(error) => return Step::Done(Outcome::Failed(read_error(&error))),
        };
        match file.metadata() {
            Ok(metadata) if Stat::of(&metadata) == candidate.stat => {}
            Ok(_) => return Step::Done(self.changed()),
            Err(error) => return Step::Done(Outcome::Failed(read_error(&error))),
        }
        let copy = self.origin != Origin::InPlace
            && (self.options.always_copy || candidate.stat.dev != self.store_dev);
        if !copy {
            return match self.read_hash(candidate, &mut file, None, buffer, advanced) {
                Ok(Some(sha256)) => Step::Hashed { sha256, tmp: None },
                Ok(None) => Step::Done(self.changed()),
                Err(outcome) => Step::Done(outcome),
            };
        }
        match self.copy_to_tmp(candidate, &mut file, buffer, advanced) {
            Ok((sha256, tmp)) => Step::Hashed {
                sha256,
                tmp: Some(tmp),
            },
            Err(outcome) => Step::Done(outcome),
        }
    }

    /// Copies `file` into a new file in `tmp/`, hashing it in the same pass,
    /// and syncs the copy. Returns the sha256 and the copy's path.
    fn copy_to_tmp(
        &self,
        candidate: &Candidate,
        file: &mut File,
        buffer: &mut [u8],
        advanced: &mut dyn FnMut(u64),
    ) -> Result<(String, PathBuf), Outcome> {
        let (mut tmp, tmp_path) = self
            .data
            .create_tmp_file(&candidate.dest)
            .map_err(|error| {
                Outcome::Failed(format!(
                    "cannot create a file in {}: {error}; check that it is writable and has space",
                    self.data.tmp_dir().display()
                ))
            })?;
        match self.read_hash(candidate, file, Some(&mut tmp), buffer, advanced) {
            Ok(Some(sha256)) => Ok((sha256, tmp_path)),
            Ok(None) => {
                let _ = std::fs::remove_file(&tmp_path);
                Err(self.changed())
            }
            Err(outcome) => {
                let _ = std::fs::remove_file(&tmp_path);
                Err(outcome)
            }
        }
    }

    /// Reads the file once, hashing it and, for a copy, writing it to
    /// `copy` (then fsync). `Ok(None)`: it is not the size the walk saw.
    fn read_hash(
        &self,
        candidate: &Candidate,
        file: &mut File,
        mut copy: Option<&mut File>,
        buffer: &mut [u8],
        advanced: &mut dyn FnMut(u64),
    ) -> Result<Option<String>, Outcome> {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        loop {
            if self.stopped() {
                let hint = self.origin.retry_hint();
                return Err(Outcome::Skipped(format!(
                    "interrupted while being read; left where it is: {hint}"
                )));
            }
            // Once the size seen at the walk is read, the read that would
            // return 0 is saved: the writer's re-check catches a file that grew.
            if total == candidate.stat.size {
                break;
            }
            let n = match file.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Outcome::Failed(read_error(&error))),
            };
            let chunk = &buffer[..n];
            hasher.update(chunk);
            if let Some(copy) = copy.as_deref_mut() {
                copy.write_all(chunk)
                    .map_err(|error| self.tmp_error(&error))?;
            }
            total += n as u64;
            advanced(n as u64);
        }
        if let Some(copy) = copy {
            copy.sync_all().map_err(|error| self.tmp_error(&error))?;
        }
        Ok((total == candidate.stat.size).then(|| hex::encode(hasher.finalize())))
    }

    /// The writer's part, after a worker hashed the file: re-checks that the
    /// source did not change since the walk (so the hash is of the bytes
    /// placed), then places it (the source, or its copy in `tmp`). Returns
    /// the row to commit and whether the source was copied.
    fn place(
        &self,
        candidate: &Candidate,
        sha256: String,
        tmp: Option<PathBuf>,
        buffer: &mut Vec<u8>,
    ) -> Result<(NewFile, bool), Outcome> {
        let discard = |outcome: Outcome| {
            if let Some(tmp) = &tmp {
                let _ = std::fs::remove_file(tmp);
            }
            outcome
        };
        if self.stopped() {
            let hint = self.origin.retry_hint();
            return Err(discard(Outcome::Skipped(format!(
                "not placed: the run stopped; left where it is: {hint}"
            ))));
        }
        if let Some(hook) = &self.options.before_recheck {
            hook(&candidate.source);
        }
        let unchanged = std::fs::symlink_metadata(&candidate.source)
            .is_ok_and(|m| Stat::of(&m) == candidate.stat);
        if !unchanged {
            return Err(discard(self.changed()));
        }
        let row = NewFile {
            path: candidate.dest.clone(),
            size: candidate.stat.size,
            mtime_ms: candidate.stat.mtime_ms(),
            sha256,
            kind: self.options.kind.clone(),
            entity: self
                .options
                .entity
                .clone()
                .or_else(|| entity_of(&candidate.dest)),
            created_ms: now_ms(),
        };
        if self.origin == Origin::InPlace {
            return Ok((row, false));
        }
        let dest = self
            .data
            .resolve(&candidate.dest)
            .map_err(|error| discard(Outcome::Failed(format!("cannot be stored: {error}"))))?;
        let from = tmp.as_deref().unwrap_or(&candidate.source);
        match store::place(from, &dest) {
            Ok(()) => Ok((row, tmp.is_some())),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(discard(self.already_stored(&row)))
            }
            Err(error) if error.kind() == io::ErrorKind::CrossesDevices && tmp.is_none() => {
                // The same device number but another mount (a bind mount):
                // copy after all, the one case that reads a file twice.
                let tmp = self.copy_again(candidate, &row.sha256, buffer)?;
                self.place(candidate, row.sha256, Some(tmp), buffer)
            }
            Err(error) => Err(discard(Outcome::Failed(format!(
                "cannot be moved to {}: {error}; left where it is",
                dest.display()
            )))),
        }
    }

    /// Copies a file into `tmp/` after a rename across mounts failed; its
    /// content must still hash to `sha256`.
    fn copy_again(
        &self,
        candidate: &Candidate,
        sha256: &str,
        buffer: &mut Vec<u8>,
    ) -> Result<PathBuf, Outcome> {
        buffer.resize(READ_BUFFER, 0);
        let mut file =
            open_regular(&candidate.source).map_err(|error| Outcome::Failed(read_error(&error)))?;
        let (again, tmp) = self.copy_to_tmp(candidate, &mut file, buffer, &mut |_| {})?;
        if again != sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.changed());
        }
        Ok(tmp)
    }

    fn changed(&self) -> Outcome {
        let hint = self.origin.retry_hint();
        Outcome::Skipped(format!(
            "changed while it was being read (size or modification time), so it was not indexed; \
             left where it is: {hint}"
        ))
    }

    fn tmp_error(&self, error: &io::Error) -> Outcome {
        Outcome::Failed(format!(
            "cannot copy it into {}: {error}; check the free space there; the source was left where it is",
            self.data.tmp_dir().display()
        ))
    }

    /// The destination exists: a duplicate if the index has it with the
    /// same content, an error naming both otherwise. Nothing is replaced.
    fn already_stored(&self, row: &NewFile) -> Outcome {
        let dest = &row.path;
        match self.index.file_by_path(dest) {
            Ok(Some(existing)) if existing.sha256 == row.sha256 => {
                Outcome::Duplicate { path: dest.clone() }
            }
            Ok(Some(_)) => Outcome::Failed(format!(
                "cannot be stored as {dest}: that path already holds a different file; the source was left \
                 where it is: rename it and add it again"
            )),
            Ok(None) => Outcome::Failed(format!(
                "cannot be stored as {dest}: a file that is not indexed is already there (left by an \
                 interrupted ingest?); run `wharf fsck --repair` to index it, then add this file again if \
                 it differs"
            )),
            Err(error) => Outcome::Failed(format!(
                "cannot be stored as {dest}: that path is taken and the index cannot be read ({error:#}); \
                 left where it is"
            )),
        }
    }

    /// Commits a batch, records its outcomes, and removes copied sources.
    fn commit(&self, batch: &mut Batch, outcomes: &mut [Option<Outcome>]) -> anyhow::Result<()> {
        for dir in std::mem::take(&mut batch.dirs_to_sync) {
            if let Err(error) = store::sync_dir(&dir) {
                tracing::warn!(path = %dir.display(), error = %error, "cannot sync a store directory");
            }
        }
        let inserted = self.index.insert_files(&batch.rows);
        let rows = batch.rows.drain(..);
        let placed = batch.placed.drain(..);
        let inserted = match inserted {
            Ok(inserted) => inserted,
            Err(error) => {
                for (row, (i, _)) in rows.zip(placed) {
                    outcomes[i] = Some(Outcome::Failed(format!("{UNINDEXED} {}", row.path)));
                }
                return Err(error);
            }
        };
        for ((row, (i, remove_source)), result) in rows.zip(placed).zip(inserted) {
            outcomes[i] = Some(match result {
                InsertOutcome::Inserted(_) => match remove_source {
                    Some((source, stat)) => remove_copied_source(&source, stat, row),
                    None => Outcome::Ingested {
                        path: row.path,
                        size: row.size,
                        sha256: row.sha256,
                    },
                },
                InsertOutcome::AlreadyIndexed(_) => Outcome::Failed(format!(
                    "was placed at {} but the index already had a row for that path (a file recorded as \
                     lost?); run `wharf fsck` to reconcile them",
                    row.path
                )),
            });
        }
        Ok(())
    }
}

/// The start of the outcome of a file placed in the store whose row could not be committed.
const UNINDEXED: &str = "placed but not indexed:";

const SYMLINK: &str =
    "is a symbolic link, which wharf never follows; add the file it points to instead";
const NOT_REGULAR: &str = "is not a regular file (a FIFO, socket or device cannot be read as data); remove it or add a regular file";

/// After a copy is committed its source goes, unless it changed after it
/// was read: then it stays, and the user is told.
fn remove_copied_source(source: &Path, stat: Stat, row: NewFile) -> Outcome {
    let unchanged = std::fs::symlink_metadata(source).is_ok_and(|m| Stat::of(&m) == stat);
    if !unchanged {
        return Outcome::Failed(format!(
            "was copied and indexed as {}, but changed after it was read, so it was left where it is; \
             check it and remove it, or add it again under another name",
            row.path
        ));
    }
    if let Err(error) = std::fs::remove_file(source) {
        return Outcome::Failed(format!(
            "was copied and indexed as {}, but cannot be removed ({error}); remove it yourself",
            row.path
        ));
    }
    Outcome::Ingested {
        path: row.path,
        size: row.size,
        sha256: row.sha256,
    }
}

/// The entity a store path implies: its first directory under `files/`.
fn entity_of(dest: &str) -> Option<String> {
    let mut parts = dest.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => Some(first.to_owned()),
        _ => None,
    }
}

/// Opens a file for reading without following a symlink or blocking on a
/// FIFO swapped in since the walk looked at it.
fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

fn read_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "does not exist (or vanished); check the path".into(),
        io::ErrorKind::PermissionDenied => {
            format!("cannot be read ({error}); give wharf read permission on it and add it again")
        }
        _ if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => SYMLINK.into(),
        _ => format!("cannot be read ({error}); left where it is"),
    }
}

/// One `wharf add` argument: a file or a directory.
fn walk_argument(run: &Run<'_>, path: &Path, walk: &mut Walk) {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => return walk.report.push(path, Outcome::Failed(read_error(&error))),
    };
    if metadata.file_type().is_symlink() {
        return walk.report.push(path, Outcome::Failed(SYMLINK.into()));
    }
    let canonical = match std::fs::canonicalize(path) {
        Ok(canonical) => canonical,
        Err(error) => return walk.report.push(path, Outcome::Failed(read_error(&error))),
    };
    if let Some(area) = run.data.internal_area(&canonical) {
        return walk
            .report
            .push(path, Outcome::Failed(internal_error(&run.data, &area)));
    }
    // `.` or `..` have no name of their own: the canonical path has.
    let Some(name) = canonical.file_name().and_then(|name| name.to_str()) else {
        let reason = if canonical.file_name().is_none() {
            "has no name to store it under; add the files or directories inside it instead"
        } else {
            "has a name that is not valid UTF-8; rename it and add it again"
        };
        return walk.report.push(path, Outcome::Failed(reason.into()));
    };
    if metadata.is_dir() {
        walk_dir(run, path, Some(&canonical), &format!("files/{name}"), walk);
    } else {
        run.consider(path.to_path_buf(), format!("files/{name}"), &metadata, walk);
    }
}

fn internal_error(data: &DataDir, area: &str) -> String {
    format!(
        "is inside the data directory's own {area}, which wharf manages itself; add files from outside \
         the data directory, or drop them into {}",
        data.inbox_dir().display()
    )
}

/// Every file under `dir`, depth first in name order, stored under `dest`.
/// With `canonical` (`dir`'s canonical path), each subdirectory is checked
/// against the data directory's internals, for a `wharf add` of a tree that
/// contains the data directory; the walk follows no symlink, so joining
/// names keeps that path canonical.
fn walk_dir(run: &Run<'_>, dir: &Path, canonical: Option<&Path>, dest: &str, walk: &mut Walk) {
    let mut stack = vec![(
        dir.to_path_buf(),
        canonical.map(Path::to_path_buf),
        dest.to_owned(),
    )];
    while let Some((dir, canonical, dest)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                walk.report.push(
                    dir,
                    Outcome::Failed(format!(
                        "cannot be listed ({error}); its files were not ingested"
                    )),
                );
                continue;
            }
        };
        let mut entries: Vec<_> = entries
            .filter_map(|entry| match entry {
                Ok(entry) => Some(entry),
                Err(error) => {
                    walk.report.push(
                        &dir,
                        Outcome::Failed(format!("cannot be listed completely ({error})")),
                    );
                    None
                }
            })
            .collect();
        entries.sort_by_key(|entry| entry.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                walk.report.push(
                    path,
                    Outcome::Failed(
                        "has a name that is not valid UTF-8; rename it and add it again".into(),
                    ),
                );
                continue;
            };
            let child_dest = format!("{dest}/{name}");
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(error) => {
                    walk.report.push(path, Outcome::Failed(read_error(&error)));
                    continue;
                }
            };
            if metadata.is_dir() {
                let child_canonical = canonical.as_ref().map(|c| c.join(&name));
                if let Some(area) = child_canonical
                    .as_ref()
                    .and_then(|c| run.data.internal_area(c))
                {
                    walk.report
                        .push(path, Outcome::Failed(internal_error(&run.data, &area)));
                    continue;
                }
                subdirs.push((path, child_canonical, child_dest));
            } else {
                run.consider(path, child_dest, &metadata, walk);
            }
        }
        // Reversed so the stack pops them in name order.
        stack.extend(subdirs.into_iter().rev());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entity_is_the_first_directory_under_files() {
        assert_eq!(entity_of("files/set1/a.bin").as_deref(), Some("set1"));
        assert_eq!(entity_of("files/set1/deep/a.bin").as_deref(), Some("set1"));
        assert_eq!(entity_of("files/a.bin"), None);
    }
}
