//! The walk: finds the files of a run (arguments of `wharf add`, or the
//! inbox) without following symlinks, checks each, and records it either as
//! a [`Candidate`] to read or with its outcome.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::Path;

use super::outcome::{FailReason, Outcome, Report, SkipReason, read_error};
use super::{Candidate, Run, Stat};
use crate::store::{self, DataDir};

/// What the walk found: files to read, and the outcome of everything else.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub(super) candidates: Vec<Candidate>,
    pub(super) report: Report,
    dests: HashSet<String>,
}

impl Run<'_> {
    /// Checks one regular file found by the walk (`metadata` from lstat)
    /// and records it as a candidate or as an outcome.
    pub(super) fn consider(
        &self,
        source: std::path::PathBuf,
        dest: String,
        metadata: &Metadata,
        walk: &mut Walk,
    ) {
        match self.check(&dest, metadata) {
            Ok(()) if !walk.dests.insert(dest.clone()) => {
                walk.report
                    .fail(source, FailReason::SameDestination { dest });
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
        if metadata.file_type().is_symlink() {
            return Err(Outcome::Failed(FailReason::Symlink));
        }
        if !metadata.is_file() {
            return Err(Outcome::Failed(FailReason::NotRegular));
        }
        if metadata.len() == 0 {
            return Err(self.skip(SkipReason::Empty));
        }
        let age_ms = self.now_ms.saturating_sub(Stat::of(metadata).mtime_ms());
        if age_ms < 0 {
            return Err(self.skip(SkipReason::FutureModification { ahead_ms: -age_ms }));
        }
        if (age_ms as u64) < options.file_last_modified_ms {
            return Err(self.skip(SkipReason::RecentlyModified {
                age_ms,
                limit_ms: options.file_last_modified_ms,
            }));
        }
        if metadata.len() > options.max_file_size_bytes {
            return Err(Outcome::Failed(FailReason::TooLarge {
                size: metadata.len(),
                limit: options.max_file_size_bytes,
            }));
        }
        if let Err(error) = self.data.resolve(dest) {
            return Err(Outcome::Failed(FailReason::Unstorable { error }));
        }
        Ok(())
    }
}

/// One `wharf add` argument: a file or a directory.
pub(super) fn walk_argument(run: &Run<'_>, path: &Path, walk: &mut Walk) {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => return walk.report.fail(path, read_error(&error)),
    };
    if metadata.file_type().is_symlink() {
        return walk.report.fail(path, FailReason::Symlink);
    }
    let canonical = match std::fs::canonicalize(path) {
        Ok(canonical) => canonical,
        Err(error) => return walk.report.fail(path, read_error(&error)),
    };
    if let Some(area) = run.data.internal_area(&canonical) {
        return walk.report.fail(path, internal_error(&run.data, area));
    }
    // `.` or `..` have no name of their own: the canonical path has.
    let Some(name) = canonical.file_name().and_then(|name| name.to_str()) else {
        let reason = if canonical.file_name().is_none() {
            FailReason::NoName
        } else {
            FailReason::NonUtf8Name
        };
        return walk.report.fail(path, reason);
    };
    let dest = store::stored_path(name);
    if metadata.is_dir() {
        walk_dir(run, path, Some(&canonical), &dest, walk);
    } else {
        run.consider(path.to_path_buf(), dest, &metadata, walk);
    }
}

fn internal_error(data: &DataDir, area: String) -> FailReason {
    FailReason::InsideDataDir {
        area,
        inbox: data.inbox_dir().display().to_string(),
    }
}

/// Every file under `dir`, depth first in name order, stored under `dest`.
/// With `canonical` (`dir`'s canonical path), each subdirectory is checked
/// against the data directory's internals, for a `wharf add` of a tree that
/// contains the data directory; the walk follows no symlink, so joining
/// names keeps that path canonical.
pub(super) fn walk_dir(
    run: &Run<'_>,
    dir: &Path,
    canonical: Option<&Path>,
    dest: &str,
    walk: &mut Walk,
) {
    let mut stack = vec![(
        dir.to_path_buf(),
        canonical.map(Path::to_path_buf),
        dest.to_owned(),
    )];
    while let Some((dir, canonical, dest)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) => {
                let error = error.to_string();
                walk.report.fail(dir, FailReason::Unlistable { error });
                continue;
            }
        };
        let mut entries: Vec<_> = entries
            .filter_map(|entry| match entry {
                Ok(entry) => Some(entry),
                Err(error) => {
                    let error = error.to_string();
                    walk.report.fail(&dir, FailReason::PartlyListed { error });
                    None
                }
            })
            .collect();
        entries.sort_by_key(|entry| entry.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                walk.report.fail(path, FailReason::NonUtf8Name);
                continue;
            };
            let child_dest = format!("{dest}/{name}");
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(error) => {
                    walk.report.fail(path, read_error(&error));
                    continue;
                }
            };
            if metadata.is_dir() {
                let child_canonical = canonical.as_ref().map(|c| c.join(&name));
                if let Some(area) = child_canonical
                    .as_ref()
                    .and_then(|c| run.data.internal_area(c))
                {
                    walk.report.fail(path, internal_error(&run.data, area));
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
