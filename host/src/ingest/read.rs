//! The workers: each takes the next candidate, checks it is the file the
//! walk saw, and reads it once, hashing it (and copying it into `tmp/` in
//! the same pass when it is on another filesystem than the store, keeping
//! its modification time as `mv` does). Results go to the writer in batches
//! over a bounded channel; workers never touch the store or the index.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;

use sha2::{Digest, Sha256};

use super::outcome::{FailReason, Outcome, SkipReason, read_error};
use super::{Candidate, Progress, Run, Stat};

/// Bytes read at a time. Measured on a 1 GiB file: 64 KiB reads hash 35-40%
/// faster than 1 MiB reads, whose buffer spills out of the L2 cache between
/// the kernel's copy and the hash; the syscalls saved by bigger reads are
/// worth far less.
pub(super) const READ_BUFFER: usize = 64 << 10;
/// Results a worker hands the writer at once: one wake-up per handful of
/// small files instead of one per file.
const HANDOFF_FILES: usize = 64;
/// ... or per this many bytes read, so big files reach the writer promptly.
const HANDOFF_BYTES: u64 = 8 << 20;

/// What a worker hands the writer for one file.
pub(super) enum Step {
    /// Read once and hashed (and copied to `tmp`, synced, for a source on
    /// another filesystem whose destination is free); the writer re-checks
    /// it and places it.
    Hashed {
        sha256: String,
        tmp: Option<PathBuf>,
    },
    Done(Outcome),
}

impl Run<'_> {
    /// A worker: takes candidates until none are left or the run is cancelled.
    pub(super) fn work(
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
            Ok(_) => return Step::Done(self.skip(SkipReason::Changed)),
            Err(error) => return Step::Done(Outcome::Failed(read_error(&error))),
        }
        // A destination already taken is most often an interrupted run's
        // copy, which the writer finishes from the hash alone: no copy then.
        if !self.needs_copy(candidate) || self.destination_taken(candidate) {
            return match self.read_hash(candidate, &mut file, None, buffer, advanced) {
                Ok(Some(sha256)) => Step::Hashed { sha256, tmp: None },
                Ok(None) => Step::Done(self.skip(SkipReason::Changed)),
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
    pub(super) fn copy_to_tmp(
        &self,
        candidate: &Candidate,
        file: &mut File,
        buffer: &mut [u8],
        advanced: &mut dyn FnMut(u64),
    ) -> Result<(String, PathBuf), Outcome> {
        let (mut tmp, tmp_path) =
            self.data
                .create_ingest_copy(&candidate.dest)
                .map_err(|error| {
                    Outcome::Failed(FailReason::TmpCreate {
                        tmp: self.data.tmp_dir().display().to_string(),
                        error: error.to_string(),
                    })
                })?;
        match self.read_hash(candidate, file, Some(&mut tmp), buffer, advanced) {
            Ok(Some(sha256)) => Ok((sha256, tmp_path)),
            Ok(None) => {
                let _ = std::fs::remove_file(&tmp_path);
                Err(self.skip(SkipReason::Changed))
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
                return Err(self.skip(SkipReason::Interrupted));
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
            // As `mv` across filesystems does: a placed copy then looks as
            // old as its source, not like a file still being written.
            copy.set_modified(candidate.stat.mtime())
                .and_then(|()| copy.sync_all())
                .map_err(|error| self.tmp_error(&error))?;
        }
        Ok((total == candidate.stat.size).then(|| hex::encode(hasher.finalize())))
    }

    /// Whether placing the file takes a copy: it is on another filesystem
    /// than the store (or the options say to copy anyway).
    pub(super) fn needs_copy(&self, candidate: &Candidate) -> bool {
        !self.in_place() && (self.options.always_copy || candidate.stat.dev != self.store_dev)
    }

    /// Whether something is at the candidate's destination already.
    pub(super) fn destination_taken(&self, candidate: &Candidate) -> bool {
        self.data
            .resolve(&candidate.dest)
            .is_ok_and(|dest| dest.symlink_metadata().is_ok())
    }

    fn tmp_error(&self, error: &io::Error) -> Outcome {
        Outcome::Failed(FailReason::TmpWrite {
            tmp: self.data.tmp_dir().display().to_string(),
            error: error.to_string(),
        })
    }
}

/// Opens a file for reading without following a symlink or blocking on a
/// FIFO swapped in since the walk looked at it.
pub(super) fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// The sha256 and length of everything `file` holds from where it is.
pub(super) fn sha256_of(file: &mut File, buffer: &mut [u8]) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
