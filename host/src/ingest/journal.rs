//! The journal: what one run has placed in the store and not committed yet,
//! so a run after a crash can index it. The writer appends one JSON line
//! per file (its future index row) right before renaming the file into the
//! store, and removes the journal once those rows are committed; so a
//! journal exists only while files are placed and not committed (never
//! long enough for orphan GC to take it for a leftover), and a run killed
//! then leaves `tmp/ingest.PID.N.journal` behind, which the next run that
//! recovers (`recover.rs`) reads back with [`read`].
//!
//! Each line is written with one `write` on a file opened for appending, so
//! a killed process leaves whole lines (a torn last line is skipped: its
//! file was not renamed yet). The journal is not synced: it guards against a
//! killed process, whose writes the kernel keeps; after a power loss,
//! `wharf fsck --repair` indexes what it lost, as without a journal.

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::index::NewFile;
use crate::store::DataDir;

/// One file being placed: the row the run was going to commit for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The index path, `files/...`.
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) mtime_ms: i64,
    pub(super) sha256: String,
    pub(super) kind: String,
    pub(super) entity: Option<String>,
}

impl Entry {
    fn of(row: &NewFile) -> Entry {
        Entry {
            path: row.path.clone(),
            size: row.size,
            mtime_ms: row.mtime_ms,
            sha256: row.sha256.clone(),
            kind: row.kind.clone(),
            entity: row.entity.clone(),
        }
    }

    /// The row to commit for it now.
    pub(super) fn into_row(self, created_ms: i64) -> NewFile {
        NewFile {
            path: self.path,
            size: self.size,
            mtime_ms: self.mtime_ms,
            sha256: self.sha256,
            kind: self.kind,
            entity: self.entity,
            created_ms,
        }
    }
}

/// The writer's journal, created with its first entry after a commit.
pub(super) struct Journal<'a> {
    data: &'a DataDir,
    file: Option<(File, PathBuf)>,
}

impl<'a> Journal<'a> {
    pub(super) fn new(data: &'a DataDir) -> Journal<'a> {
        Journal { data, file: None }
    }

    /// Records that `row`'s file is about to be placed; the file must not
    /// be placed if this fails.
    pub(super) fn record(&mut self, row: &NewFile) -> io::Result<()> {
        let mut line = serde_json::to_vec(&Entry::of(row)).map_err(io::Error::other)?;
        line.push(b'\n');
        let (file, _) = match &mut self.file {
            Some(open) => open,
            None => self.file.insert(self.data.create_ingest_journal()?),
        };
        // One write: a killed process leaves the line whole or not at all.
        file.write_all(&line)?;
        Ok(())
    }

    /// Everything recorded is committed: the journal goes (the next entry
    /// starts a new one).
    pub(super) fn committed(&mut self) {
        // One left behind is harmless: the recovery skips tracked paths.
        if let Some((_, path)) = self.file.take()
            && let Err(error) = std::fs::remove_file(&path)
        {
            tracing::warn!(path = %path.display(), error = %error, "cannot remove the ingest journal");
        }
    }

    /// Where the journal is, while it exists.
    #[cfg(test)]
    fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(_, path)| path.as_path())
    }
}

/// The entries of a journal a killed run left, in order; a line that does
/// not parse (torn by the kill) is skipped.
pub(super) fn read(path: &Path) -> io::Result<Vec<Entry>> {
    let reader = io::BufReader::new(File::open(path)?);
    let mut entries = Vec::new();
    for line in reader.split(b'\n') {
        if let Ok(entry) = serde_json::from_slice::<Entry>(&line?) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str) -> NewFile {
        NewFile {
            path: path.into(),
            size: 3,
            mtime_ms: 17,
            sha256: "ab".repeat(32),
            kind: "capture".into(),
            entity: Some("set".into()),
            created_ms: 99,
        }
    }

    #[test]
    fn a_journal_reads_back_what_was_recorded_since_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        data.create().unwrap();
        let mut journal = Journal::new(&data);
        journal.record(&row("files/set/a")).unwrap();
        let first = journal.path().unwrap().to_path_buf();
        journal.committed();
        assert!(!first.exists(), "gone once committed");
        journal.record(&row("files/set/b")).unwrap();
        journal.record(&row("files/set/c")).unwrap();
        let path = journal.path().unwrap().to_path_buf();
        // A kill in the middle of a line leaves it torn.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"path\":\"files/se")
            .unwrap();
        let paths: Vec<String> = read(&path).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["files/set/b", "files/set/c"]);
        let entry = read(&path).unwrap().remove(0).into_row(5);
        assert_eq!(
            (entry.size, entry.mtime_ms, entry.created_ms, entry.entity),
            (3, 17, 5, Some("set".into()))
        );
        journal.committed();
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(data.tmp_dir()).unwrap().count(), 0);
    }
}
