//! What happened to each file of a run: [`Outcome`], with the reasons a file
//! was skipped ([`SkipReason`]) or refused ([`FailReason`]) as enums whose
//! `Display` says what happened and what to do, and the run's [`Report`].

use std::path::PathBuf;

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
    /// Not taken now, left where it is; the skip says when it will be.
    Skipped(Skip),
    /// Not taken; the reason says what to do.
    Failed(FailReason),
}

/// When a skipped file is tried again: it depends on what the run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// `wharf add`: the user runs it again.
    AddAgain,
    /// The daemon's inbox scan: the next scan retries it.
    NextScan,
    /// `wharf fsck --repair`: the user runs it again.
    FsckAgain,
}

impl std::fmt::Display for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Retry::AddAgain => "run `wharf add` on it again later",
            Retry::NextScan => "the next inbox scan retries it",
            Retry::FsckAgain => "run `wharf fsck --repair` again later",
        })
    }
}

/// A file left where it is for now, and when it is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: SkipReason,
    pub retry: Retry,
}

/// Why a file was left where it is for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// 0 bytes: taken once it has content.
    Empty,
    /// A modification time in the future: it may still be being written.
    FutureModification { ahead_ms: i64 },
    /// Modified within `file_last_modified_ms`.
    RecentlyModified { age_ms: i64, limit_ms: u64 },
    /// Its size, mtime, ctime or inode changed while it was read.
    Changed,
    /// The run was cancelled while the file was read.
    Interrupted,
    /// The run stopped between reading and placing the file.
    NotPlaced,
    /// The run stopped before the file was read.
    NotStarted,
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = self.retry;
        match &self.reason {
            SkipReason::Empty => write!(
                f,
                "is empty (0 bytes), left where it is; it is taken once it has content: {hint}"
            ),
            SkipReason::FutureModification { ahead_ms } => write!(
                f,
                "has a modification time {ahead_ms} ms in the future, so it may still be being written; left \
                 where it is: check the clock of whatever wrote it (or `touch` it), then {hint}"
            ),
            SkipReason::RecentlyModified { age_ms, limit_ms } => write!(
                f,
                "was modified {age_ms} ms ago, within file_last_modified_ms = {limit_ms} ms, so it may still \
                 be being written; left where it is: {hint}"
            ),
            SkipReason::Changed => write!(
                f,
                "changed while it was being read (size or modification time), so it was not indexed; \
                 left where it is: {hint}"
            ),
            SkipReason::Interrupted => {
                write!(f, "interrupted while being read; left where it is: {hint}")
            }
            SkipReason::NotPlaced => {
                write!(f, "not placed: the run stopped; left where it is: {hint}")
            }
            SkipReason::NotStarted => write!(
                f,
                "not started: the run was interrupted; left where it is: {hint}"
            ),
        }
    }
}

/// Why a file was not taken; each says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    #[error("is a symbolic link, which wharf never follows; add the file it points to instead")]
    Symlink,
    #[error(
        "is not a regular file (a FIFO, socket or device cannot be read as data); remove it or add a regular file"
    )]
    NotRegular,
    #[error(
        "is {size} bytes, more than max_file_size_bytes = {limit}; left where it is. To accept it, raise \
         [ingest] max_file_size_bytes in wharf.toml"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("has a name that is not valid UTF-8; rename it and add it again")]
    NonUtf8Name,
    #[error("has no name to store it under; add the files or directories inside it instead")]
    NoName,
    #[error(
        "is inside the data directory's own {area}, which wharf manages itself; add files from outside \
         the data directory, or drop them into {inbox}"
    )]
    InsideDataDir { area: String, inbox: String },
    #[error("another file of this run also goes to {dest}; rename one of them and add it again")]
    SameDestination { dest: String },
    #[error("{path:?} is not an index path under {files}")]
    NotAnIndexPath { path: String, files: String },
    #[error("cannot be stored: {error}; rename it and add it again")]
    Unstorable { error: String },
    #[error("cannot be stored: {error}")]
    Unresolvable { error: String },
    #[error("does not exist (or vanished); check the path")]
    Missing,
    #[error("cannot be read ({error}); give wharf read permission on it and add it again")]
    PermissionDenied { error: String },
    #[error("cannot be read ({error}); left where it is")]
    Unreadable { error: String },
    #[error("cannot be listed ({error}); its files were not ingested")]
    Unlistable { error: String },
    #[error("cannot be listed completely ({error})")]
    PartlyListed { error: String },
    #[error("cannot create a file in {tmp}: {error}; check that it is writable and has space")]
    TmpCreate { tmp: String, error: String },
    #[error(
        "cannot record its move in a journal in {tmp} ({error}), so it was not moved; check that \
         {tmp} is writable and has space; left where it is"
    )]
    Unjournaled { tmp: String, error: String },
    #[error(
        "cannot copy it into {tmp}: {error}; check the free space there; the source was left where it is"
    )]
    TmpWrite { tmp: String, error: String },
    #[error("cannot be moved to {dest}: {error}; left where it is")]
    Unmovable { dest: String, error: String },
    #[error(
        "cannot be stored as {dest}: that path already holds a different file; the source was left \
         where it is: rename it and add it again"
    )]
    DifferentFileThere { dest: String },
    #[error(
        "cannot be stored as {dest}: a file that is not indexed is already there (left by an \
         interrupted ingest?); run `wharf fsck --repair` to index it, then add this file again if \
         it differs"
    )]
    UntrackedFileThere { dest: String },
    #[error(
        "cannot be stored as {dest}: that path is taken and the index cannot be read ({error}); \
         left where it is"
    )]
    DestinationUnknown { dest: String, error: String },
    /// Placed in the store, but its row could not be committed.
    #[error("placed but not indexed: {path}")]
    Unindexed { path: String },
    #[error(
        "was placed at {path} but the index already had a row for that path (a file recorded as \
         lost?); run `wharf fsck` to reconcile them"
    )]
    AlreadyIndexed { path: String },
    #[error(
        "was copied and indexed as {path}, but changed after it was read, so it was left where it is; \
         check it and remove it, or add it again under another name"
    )]
    CopiedSourceChanged { path: String },
    #[error(
        "was copied and indexed as {path}, but cannot be removed ({error}); remove it yourself"
    )]
    CopiedSourceKept { path: String, error: String },
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
            Outcome::Skipped(skip) => write!(f, "{source}: {skip}"),
            Outcome::Failed(reason) => write!(f, "{source}: {reason}"),
        }
    }
}

/// Every file of a run, in the order they were found, and what the run
/// finished of interrupted runs' work before its own.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub files: Vec<FileReport>,
    pub recovered: Recovery,
}

/// What a run finished of killed ingest runs' work before taking its own
/// files (only a run that found no other ingest run alive does this).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Index paths of files a killed run had placed in the store without
    /// committing their rows, indexed now.
    pub indexed: Vec<String>,
    /// Copies a killed run left in `tmp/`, removed.
    pub copies_removed: usize,
    pub copies_removed_bytes: u64,
    /// What could not be finished, each naming the file and the error; left
    /// for `wharf fsck` and orphan GC.
    pub problems: Vec<String>,
}

impl Recovery {
    pub fn is_empty(&self) -> bool {
        self.indexed.is_empty() && self.copies_removed == 0 && self.problems.is_empty()
    }
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

    pub(super) fn push(&mut self, source: impl Into<PathBuf>, outcome: Outcome) {
        self.files.push(FileReport {
            source: source.into(),
            outcome,
        });
    }

    pub(super) fn fail(&mut self, source: impl Into<PathBuf>, reason: FailReason) {
        self.push(source, Outcome::Failed(reason));
    }
}

/// The failure of a file that could not be opened, read or stat'ed.
pub(super) fn read_error(error: &std::io::Error) -> FailReason {
    match error.kind() {
        std::io::ErrorKind::NotFound => FailReason::Missing,
        std::io::ErrorKind::PermissionDenied => FailReason::PermissionDenied {
            error: error.to_string(),
        },
        _ if error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            FailReason::Symlink
        }
        _ => FailReason::Unreadable {
            error: error.to_string(),
        },
    }
}
