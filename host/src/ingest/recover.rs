//! Finishing what killed runs left behind, at the start of a run that
//! places files (`wharf add`, the inbox scan).
//!
//! Every such run holds an advisory lock on `tmp/` (flock, so the kernel
//! drops it with a killed process: it never goes stale) shared while it
//! works. A run that gets it exclusively at its start knows no other
//! ingest run is alive, so every ingest journal and copy in `tmp/` is a
//! dead run's. It then, before taking its own files:
//!
//! 1. reads each journal (`journal.rs`) and indexes every file it names
//!    that is in the store, untracked, with the recorded size and sha256 (a
//!    file renamed into the store whose row was never committed); anything
//!    else in it is left for `wharf fsck`;
//! 2. removes the ingest copies (`tmp/ingest.*.part`) last changed before
//!    this run started: a killed copy, which the run copies again.
//!
//! Then it holds the lock shared, like every other run. A run that finds
//! the lock held shared recovers nothing (a live run may own what is
//! there); the next run alone does, or orphan GC removes the copies after
//! `orphan_lifetime_ms`. Other writers' `*.part` files (exports) are never
//! touched here.

use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;

use super::journal;
use super::read::{READ_BUFFER, open_regular, sha256_of};
use super::{Recovery, Run};
use crate::index::{InsertOutcome, NewFile, now_ms};
use crate::store::TmpKind;

/// The shared lock on `tmp/` a placing run holds until it is dropped.
pub(super) struct RunLock {
    _tmp: Option<File>,
}

impl Run<'_> {
    /// Takes the ingest lock on `tmp/` and, when no other ingest run is
    /// alive, finishes what dead ones left. A lock that cannot be taken at
    /// all (a filesystem without flock) is logged, and the run goes on
    /// without recovering anything.
    pub(super) fn lock_and_recover(&self) -> (RunLock, Recovery) {
        let mut recovery = Recovery::default();
        let tmp = match self.data.open_tmp_dir() {
            Ok(tmp) => tmp,
            Err(error) => {
                tracing::warn!(path = %self.data.tmp_dir().display(), error = %error, "cannot open the tmp directory to lock it; not recovering interrupted runs");
                return (RunLock { _tmp: None }, recovery);
            }
        };
        match tmp.try_lock() {
            Ok(()) => {
                self.recover(&mut recovery);
                // Another run may take it exclusively in between: it finds
                // nothing left to recover, and this one has nothing in tmp/ yet.
                let _ = tmp.unlock();
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => {
                tracing::warn!(path = %self.data.tmp_dir().display(), error = %error, "cannot lock the tmp directory; not recovering interrupted runs");
                return (RunLock { _tmp: None }, recovery);
            }
        }
        if let Err(error) = tmp.lock_shared() {
            tracing::warn!(path = %self.data.tmp_dir().display(), error = %error, "cannot lock the tmp directory shared; a run starting now may remove this run's copies");
        }
        (RunLock { _tmp: Some(tmp) }, recovery)
    }

    fn recover(&self, recovery: &mut Recovery) {
        let tmp_files = match self.data.tmp_files() {
            Ok(files) => files,
            Err(error) => {
                recovery.problems.push(format!(
                    "{}: cannot be listed: {error}",
                    self.data.tmp_dir().display()
                ));
                return;
            }
        };
        let mut buffer = vec![0; READ_BUFFER];
        for file in tmp_files {
            match file.kind {
                TmpKind::IngestJournal => self.replay(&file.path, &mut buffer, recovery),
                TmpKind::IngestCopy => {
                    if last_changed_ns(&file.metadata) >= self.started_ns {
                        continue;
                    }
                    match std::fs::remove_file(&file.path) {
                        Ok(()) => {
                            recovery.copies_removed += 1;
                            recovery.copies_removed_bytes += file.metadata.len();
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => recovery.problems.push(format!(
                            "{}: cannot be removed: {error}",
                            file.path.display()
                        )),
                    }
                }
                TmpKind::OtherPart | TmpKind::Other => {}
            }
        }
    }

    /// Indexes what a dead run's journal names and the store holds
    /// untracked with the recorded size and sha256, then removes the
    /// journal; kept if the index cannot be written.
    fn replay(&self, path: &std::path::Path, buffer: &mut [u8], recovery: &mut Recovery) {
        let shown = path.display();
        let entries = match journal::read(path) {
            Ok(entries) => entries,
            Err(error) => {
                recovery
                    .problems
                    .push(format!("{shown}: cannot be read: {error}"));
                return;
            }
        };
        let mut seen = BTreeSet::new();
        let mut rows: Vec<NewFile> = Vec::new();
        for entry in entries {
            if !seen.insert(entry.path.clone()) {
                continue;
            }
            match self.index.file_by_path(&entry.path) {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(error) => {
                    recovery.problems.push(format!("{shown}: {error:#}"));
                    return;
                }
            }
            match self.holds(&entry, buffer) {
                Holds::Same => rows.push(entry.into_row(now_ms())),
                // Never placed: the kill came first.
                Holds::Nothing => {}
                Holds::Other => recovery.problems.push(format!(
                    "{}: named in {shown}, a killed run's journal, but not with the bytes it \
                     recorded; left as it is for `wharf fsck`",
                    entry.path
                )),
            }
        }
        if !rows.is_empty() {
            match self.index.insert_files(&rows) {
                Ok(outcomes) => {
                    for (row, outcome) in rows.into_iter().zip(outcomes) {
                        if let InsertOutcome::Inserted(_) = outcome {
                            recovery.indexed.push(row.path);
                        }
                    }
                }
                Err(error) => {
                    recovery
                        .problems
                        .push(format!("{shown}: cannot index what it names: {error:#}"));
                    return;
                }
            }
        }
        if let Err(error) = std::fs::remove_file(path) {
            recovery
                .problems
                .push(format!("{shown}: cannot be removed: {error}"));
        }
    }

    /// What the store holds at the entry's path.
    fn holds(&self, entry: &journal::Entry, buffer: &mut [u8]) -> Holds {
        let Ok(real) = self.data.resolve(&entry.path) else {
            return Holds::Nothing;
        };
        match std::fs::symlink_metadata(&real) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Holds::Nothing,
            Ok(metadata) if metadata.is_file() && metadata.len() == entry.size => {}
            _ => return Holds::Other,
        }
        let same = open_regular(&real)
            .and_then(|mut file| sha256_of(&mut file, buffer))
            .is_ok_and(|(sha256, size)| size == entry.size && sha256 == entry.sha256);
        if same { Holds::Same } else { Holds::Other }
    }
}

/// What the store holds where a journal says a file was being placed.
enum Holds {
    /// The recorded bytes: placed, and not committed.
    Same,
    Nothing,
    /// Something else (a file changed since, a directory, unreadable).
    Other,
}

/// When a file was last modified or changed otherwise (a rename or a new
/// mtime updates the ctime), in ns since the epoch.
fn last_changed_ns(metadata: &std::fs::Metadata) -> i128 {
    let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    ns(metadata.mtime(), metadata.mtime_nsec()).max(ns(metadata.ctime(), metadata.ctime_nsec()))
}
