//! The writer, the calling thread of a run: receives the workers' results,
//! re-checks each source (so the hash is of the bytes placed), records it
//! in the journal, places it in the store without replacing anything, and
//! commits index rows in batches, syncing the directories that received
//! copies first and removing a copied source only after its row is
//! committed. A destination already taken is finished when it is this very
//! file's interrupted move (see [`Run::finish_interrupted`]).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use super::journal::Journal;
use super::outcome::{FailReason, Outcome, Report, SkipReason, read_error};
use super::read::{READ_BUFFER, Step, open_regular, sha256_of};
use super::walk::Walk;
use super::{Candidate, Progress, Run, Stat};
use crate::index::{FileState, InsertOutcome, NewFile, now_ms};
use crate::store;

/// Index rows committed in one transaction at most.
const BATCH: usize = 1000;
/// Hand-offs waiting for the writer at most; workers block beyond that.
const CHANNEL: usize = 16;
/// A partial batch is committed when no result arrived for this long.
const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// What only the writer uses: the journal, and a buffer for the rare
/// second read of a file (a rename across a bind mount, a destination to
/// compare).
struct Local<'a> {
    journal: Journal<'a>,
    buffer: Vec<u8>,
}

/// Rows placed in the store and waiting for their commit, with, for each,
/// its candidate's number and, for a copy, the source to remove after it.
#[derive(Default)]
struct Batch {
    rows: Vec<NewFile>,
    placed: Vec<(usize, Option<(PathBuf, Stat)>)>,
    /// Directories that received a copy: synced before the commit, so no
    /// source is removed while its copy's new name could still be lost.
    dirs_to_sync: BTreeSet<PathBuf>,
}

impl Run<'_> {
    /// Hashes, places and indexes every candidate; the calling thread is the
    /// one writer.
    pub(super) fn ingest(&self, walk: Walk, progress: &dyn Progress) -> anyhow::Result<Report> {
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
        let mut commit_error = None;
        std::thread::scope(|scope| {
            // Made inside the scope so that a panic of the writer drops the
            // receiver, and workers blocked on a full channel return instead
            // of holding the scope open forever.
            let (sender, receiver) = mpsc::sync_channel::<Vec<(usize, Step)>>(CHANNEL);
            for _ in 0..threads {
                let sender = sender.clone();
                let (next, candidates) = (&next, &candidates);
                scope.spawn(move || self.work(candidates, next, &sender, progress));
            }
            drop(sender);
            let mut batch = Batch::default();
            let mut local = Local {
                journal: Journal::new(&self.data),
                buffer: Vec::new(),
            };
            loop {
                let flush = match receiver.recv_timeout(FLUSH_AFTER) {
                    Ok(steps) => {
                        for (i, step) in steps {
                            let placed = match step {
                                Step::Done(outcome) => Err(outcome),
                                Step::Hashed { sha256, tmp } => {
                                    self.place(&candidates[i], sha256, tmp, &mut local)
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
                    && let Err(error) = self.commit(&mut batch, &mut outcomes, &mut local.journal)
                {
                    // The index is unusable: stop taking files; what is
                    // already placed stays in the store for fsck to index.
                    self.stop.store(true, Ordering::Relaxed);
                    commit_error.get_or_insert(error);
                }
            }
            if !batch.rows.is_empty()
                && let Err(error) = self.commit(&mut batch, &mut outcomes, &mut local.journal)
            {
                commit_error.get_or_insert(error);
            }
            // Entries of files whose placing failed may be left: nothing is
            // uncommitted now. With a commit failed, the journal stays for
            // the next run to index what it names.
            if commit_error.is_none() {
                local.journal.committed();
            }
        });
        if let Some(error) = commit_error {
            let unindexed: Vec<String> = outcomes
                .iter()
                .filter_map(|o| match o {
                    Some(Outcome::Failed(reason @ FailReason::Unindexed { .. })) => {
                        Some(reason.to_string())
                    }
                    _ => None,
                })
                .collect();
            return Err(error.context(format!(
                "cannot commit to the index {}; {} file(s) were placed in {} but not indexed: run \
                 `wharf fsck --repair` to index them ({})",
                self.index.path().display(),
                unindexed.len(),
                self.data.files_dir().display(),
                unindexed.join("; ")
            )));
        }
        for (candidate, outcome) in candidates.into_iter().zip(outcomes) {
            let outcome = outcome.unwrap_or_else(|| self.skip(SkipReason::NotStarted));
            report.push(candidate.source, outcome);
        }
        Ok(report)
    }

    /// The writer's part, after a worker hashed the file: re-checks that the
    /// source did not change since the walk (so the hash is of the bytes
    /// placed), records it in the journal, then places it (the source, or
    /// its copy in `tmp`). Returns the row to commit and whether the source
    /// is to be removed after the commit (it was copied); `Err` is the
    /// file's outcome when there is nothing to commit.
    fn place(
        &self,
        candidate: &Candidate,
        sha256: String,
        tmp: Option<PathBuf>,
        local: &mut Local<'_>,
    ) -> Result<(NewFile, bool), Outcome> {
        let discard = |outcome: Outcome| {
            if let Some(tmp) = &tmp {
                let _ = std::fs::remove_file(tmp);
            }
            outcome
        };
        if self.stopped() {
            return Err(discard(self.skip(SkipReason::NotPlaced)));
        }
        if let Some(hook) = &self.options.before_recheck {
            hook(&candidate.source);
        }
        let unchanged = std::fs::symlink_metadata(&candidate.source)
            .is_ok_and(|m| Stat::of(&m) == candidate.stat);
        if !unchanged {
            return Err(discard(self.skip(SkipReason::Changed)));
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
                .or_else(|| store::entity_of(&candidate.dest).map(str::to_owned)),
            created_ms: now_ms(),
        };
        if self.in_place() {
            return Ok((row, false));
        }
        let dest = self
            .data
            .resolve(&candidate.dest)
            .map_err(|error| discard(Outcome::Failed(FailReason::Unresolvable { error })))?;
        if tmp.is_none() && self.needs_copy(candidate) {
            // Not copied by the worker: its destination was taken.
            if self.destination_taken(candidate) {
                return self.finish_interrupted(candidate, row, &dest, &mut local.buffer);
            }
            let tmp = self.copy_again(candidate, &row.sha256, &mut local.buffer)?;
            return self.place(candidate, row.sha256, Some(tmp), local);
        }
        if let Err(error) = local.journal.record(&row) {
            return Err(discard(Outcome::Failed(FailReason::Unjournaled {
                tmp: self.data.tmp_dir().display().to_string(),
                error: error.to_string(),
            })));
        }
        let from = tmp.as_deref().unwrap_or(&candidate.source);
        match store::place(from, &dest) {
            Ok(()) => {
                if let Some(hook) = &self.options.after_place {
                    hook(&candidate.source);
                }
                Ok((row, tmp.is_some()))
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                if let Some(tmp) = &tmp {
                    let _ = std::fs::remove_file(tmp);
                }
                self.finish_interrupted(candidate, row, &dest, &mut local.buffer)
            }
            Err(error) if error.kind() == io::ErrorKind::CrossesDevices && tmp.is_none() => {
                // The same device number but another mount (a bind mount):
                // copy after all, the one case that reads a file twice.
                let tmp = self.copy_again(candidate, &row.sha256, &mut local.buffer)?;
                self.place(candidate, row.sha256, Some(tmp), local)
            }
            Err(error) => Err(discard(Outcome::Failed(FailReason::Unmovable {
                dest: dest.display().to_string(),
                error: error.to_string(),
            }))),
        }
    }

    /// The destination is taken. When it is this file's own move, which a
    /// killed run did not finish, it is finished: tracked with the same
    /// sha256, size and modification time (the commit landed, the removal
    /// of a copied source did not) → the source is removed now; untracked
    /// with the source's size and sha256 (placed, not committed) → it is
    /// committed and the source removed after. Anything else is a
    /// duplicate or an error naming what to do; nothing is replaced. Only
    /// an untracked destination of the right size is read (hashed).
    fn finish_interrupted(
        &self,
        candidate: &Candidate,
        row: NewFile,
        dest: &Path,
        buffer: &mut Vec<u8>,
    ) -> Result<(NewFile, bool), Outcome> {
        match self.index.file_by_path(&row.path) {
            Ok(Some(existing)) if existing.sha256 == row.sha256 => {
                let own_commit = existing.state == FileState::Ready
                    && existing.size == row.size
                    && existing.mtime_ms == row.mtime_ms;
                // Never the only copy: the stored file must still be there.
                if own_commit && super::regular_of_size(dest, row.size) {
                    return Err(remove_copied_source(&candidate.source, candidate.stat, row));
                }
                Err(Outcome::Duplicate { path: row.path })
            }
            Ok(Some(_)) => Err(Outcome::Failed(FailReason::DifferentFileThere {
                dest: row.path,
            })),
            Ok(None) => {
                buffer.resize(READ_BUFFER, 0);
                let same = super::regular_of_size(dest, row.size)
                    && open_regular(dest)
                        .and_then(|mut file| sha256_of(&mut file, buffer))
                        .is_ok_and(|(sha256, size)| size == row.size && sha256 == row.sha256);
                if same {
                    return Ok((row, true));
                }
                Err(Outcome::Failed(FailReason::UntrackedFileThere {
                    dest: row.path,
                }))
            }
            Err(error) => Err(Outcome::Failed(FailReason::DestinationUnknown {
                dest: row.path,
                error: format!("{error:#}"),
            })),
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
            return Err(self.skip(SkipReason::Changed));
        }
        Ok(tmp)
    }

    /// Commits a batch, records its outcomes, removes copied sources, and
    /// removes the journal.
    fn commit(
        &self,
        batch: &mut Batch,
        outcomes: &mut [Option<Outcome>],
        journal: &mut Journal<'_>,
    ) -> anyhow::Result<()> {
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
                    outcomes[i] = Some(Outcome::Failed(FailReason::Unindexed { path: row.path }));
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
                InsertOutcome::AlreadyIndexed(_) => {
                    Outcome::Failed(FailReason::AlreadyIndexed { path: row.path })
                }
            });
        }
        journal.committed();
        Ok(())
    }
}

/// After a copy is committed its source goes, unless it changed after it
/// was read: then it stays, and the user is told.
fn remove_copied_source(source: &Path, stat: Stat, row: NewFile) -> Outcome {
    let unchanged = std::fs::symlink_metadata(source).is_ok_and(|m| Stat::of(&m) == stat);
    if !unchanged {
        return Outcome::Failed(FailReason::CopiedSourceChanged { path: row.path });
    }
    if let Err(error) = std::fs::remove_file(source) {
        return Outcome::Failed(FailReason::CopiedSourceKept {
            path: row.path,
            error: error.to_string(),
        });
    }
    Outcome::Ingested {
        path: row.path,
        size: row.size,
        sha256: row.sha256,
    }
}
