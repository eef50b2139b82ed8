//! Deleting tracked files, in the crash-safe order retention relies on: a
//! file is first marked `deleting` (in the same transaction as the check
//! that it is still safe to delete and its `events` row), then unlinked by
//! the caller, then its row removed. A row left `deleting` by a crash is
//! finished by the next cleanup or `wharf fsck`.
//!
//! Marking a file also removes the cache entry it is the result of (a
//! cache entry never points at a file being deleted) and, for a file of an
//! entity that is not an export, bumps that entity's version (its files
//! changed, so no export made before is served as current).
//!
//! What protects a file from deletion lives here too: leases named
//! `file:<id>`, `download:<id>:…` ([`download_lease_name`]) and, for the
//! files an export reads, `export:<entity id>:…` (the export job's lease on
//! its cache key). A holder takes its lease first and then checks that the
//! file is still `ready`: a mark committed before the lease shows in that
//! check, and one after it sees the lease.
//!
//! Also the audit rows of cleanup runs and the one index question orphan GC
//! asks under the writer: is this path tracked now?

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::jobs::JobId;
use super::{FileId, Index};

/// Why the host refused to delete a file a policy asked for, counted per
/// run. Whatever a plugin says, none of these is ever deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// Gone from the index since the plan (another run deleted it).
    pub gone: u64,
    /// Not `ready`: being written, being deleted, lost or corrupt.
    pub not_ready: u64,
    /// A lease named `file:<id>` holds it (e.g. an export reads it).
    pub leased: u64,
    /// An export being written (it reads the file) or downloaded holds it.
    pub export_held: u64,
    /// Not yet synced to a destination the policy requires.
    pub unsynced: u64,
}

impl Refused {
    pub fn total(&self) -> u64 {
        self.gone + self.not_ready + self.leased + self.export_held + self.unsynced
    }

    pub fn add(&mut self, other: &Refused) {
        self.gone += other.gone;
        self.not_ready += other.not_ready;
        self.leased += other.leased;
        self.export_held += other.export_held;
        self.unsynced += other.unsynced;
    }
}

/// A deletion a policy asked for.
#[derive(Debug, Clone, Copy)]
pub struct DeletionRequest<'a> {
    pub file: FileId,
    pub reason: &'a str,
}

/// Who asks, for the audit log, and what must hold for any deletion.
#[derive(Debug, Clone, Copy)]
pub struct DeletionGuard<'a> {
    pub plugin: &'a str,
    pub job: Option<JobId>,
    /// Destinations (by name) a file must be synced to, beyond those
    /// marked `required`.
    pub require_synced: &'a [String],
    /// Leases expiring after this still hold.
    pub now_ms: i64,
}

/// A file now marked `deleting`: the caller unlinks it, then calls
/// [`Index::remove_deleted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub file: FileId,
    pub path: String,
    pub size: u64,
}

/// The name of the lease a download of `file` holds while it streams:
/// `download:<id>:<unique>` (several downloads of one file each hold
/// their own), which keeps retention off the file.
pub fn download_lease_name(file: FileId, unique: &str) -> String {
    format!("download:{}:{unique}", file.0)
}

/// SQL: whether an export being written or downloaded holds file `f`, with
/// `now` the parameter holding the present time. A download holds its file
/// by a `download:<id>:…` lease; an export job holds the files it reads (an
/// entity's files other than exports) by its `export:<entity id>:…` lease
/// on the cache key. Both are range probes of the `locks` primary key (`;`
/// follows `:` in ASCII, so the range is exactly the prefix).
fn export_held_sql(now: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM locks l WHERE l.name >= 'download:' || f.id || ':'
                  AND l.name < 'download:' || f.id || ';' AND l.expires_ms > {now})
          OR (f.kind <> 'export' AND f.entity_id IS NOT NULL
              AND EXISTS (SELECT 1 FROM locks l WHERE l.name >= 'export:' || f.entity_id || ':'
                          AND l.name < 'export:' || f.entity_id || ';' AND l.expires_ms > {now})))"
    )
}

/// The live leases that protect files, read once: the twin of
/// [`export_held_sql`] and of the `file:<id>` probe, for a query that would
/// otherwise probe `locks` for every row it reads (a retention page).
#[derive(Debug, Default)]
pub(super) struct LiveLeases {
    /// `file:<id>`.
    files: HashSet<i64>,
    /// `download:<id>:…`.
    downloads: HashSet<i64>,
    /// `export:<entity id>:…`.
    exports: HashSet<i64>,
}

impl LiveLeases {
    /// The leases that have not expired at `now_ms`.
    pub(super) fn read(db: &Connection, now_ms: i64) -> rusqlite::Result<LiveLeases> {
        let mut leases = LiveLeases::default();
        let mut query = db.prepare_cached("SELECT name FROM locks WHERE expires_ms > ?1")?;
        let mut rows = query.query([now_ms])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            if let Some(id) = name.strip_prefix("file:").and_then(decimal) {
                leases.files.insert(id);
            } else if let Some(id) = name.strip_prefix("download:").and_then(before_colon) {
                leases.downloads.insert(id);
            } else if let Some(id) = name.strip_prefix("export:").and_then(before_colon) {
                leases.exports.insert(id);
            }
        }
        Ok(leases)
    }

    /// A `file:<id>` lease holds `file`.
    pub(super) fn leased(&self, file: i64) -> bool {
        self.files.contains(&file)
    }

    /// [`export_held_sql`] for a file of `kind` and `entity`.
    pub(super) fn export_held(&self, file: i64, kind: &str, entity: Option<i64>) -> bool {
        self.downloads.contains(&file)
            || (kind != "export" && entity.is_some_and(|e| self.exports.contains(&e)))
    }
}

/// The id `text` is, written as SQLite writes an integer (what `'file:' ||
/// f.id` compares with): no sign but `-`, no leading zero.
fn decimal(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|id| id.to_string() == text)
}

/// The id before the first `:` of `text`, which must have one (the lease
/// name ranges of [`export_held_sql`] are exactly that prefix).
fn before_colon(text: &str) -> Option<i64> {
    text.split_once(':').and_then(|(id, _)| decimal(id))
}

/// Whether a file may be deleted, read in the marking transaction.
fn safety_sql() -> String {
    format!(
        "SELECT f.path, f.size, f.state,
    EXISTS (SELECT 1 FROM locks l WHERE l.name = 'file:' || f.id AND l.expires_ms > ?2),
    {},
    EXISTS (SELECT 1 FROM destinations d
            WHERE (d.required = 1 OR d.name IN (SELECT value FROM json_each(?3)))
              AND NOT EXISTS (SELECT 1 FROM sync_status s
                              WHERE s.file_id = f.id AND s.destination_id = d.id AND s.state = 'synced')),
    CASE WHEN f.kind <> 'export' THEN f.entity_id END
FROM files f WHERE f.id = ?1",
        export_held_sql("?2")
    )
}

impl Index {
    /// Marks each requested file `deleting` if it is still safe to delete:
    /// ready, not leased, not held by an export being written or
    /// downloaded and synced to every required destination, all checked in
    /// the same write transaction as the mark, so nothing that protects a
    /// file can slip in between. Each marked file gets an `events` row
    /// (kind `deleted`: file, plugin, reason), loses the cache entry it is
    /// the result of, and bumps its entity's version unless it is an
    /// export. Returns the marked files and what was refused.
    pub fn mark_deleting(
        &self,
        requests: &[DeletionRequest<'_>],
        guard: &DeletionGuard<'_>,
    ) -> anyhow::Result<(Vec<Marked>, Refused)> {
        let require = serde_json::to_string(guard.require_synced)?;
        let safety = safety_sql();
        self.write(|tx| {
            let mut check = tx.prepare_cached(&safety)?;
            let mut uncache = tx.prepare_cached("DELETE FROM exports WHERE file_id = ?1")?;
            let mut bump =
                tx.prepare_cached("UPDATE entities SET version = version + 1 WHERE id = ?1")?;
            let mut changed = std::collections::BTreeSet::new();
            let mut mark = tx.prepare_cached(
                "UPDATE files SET state = 'deleting' WHERE id = ?1 AND state = 'ready'",
            )?;
            let mut event = tx.prepare_cached(
                "INSERT INTO events (at_ms, kind, file_id, job_id, plugin, message)
                 VALUES (?1, 'deleted', ?2, ?3, ?4, ?5)",
            )?;
            let now = super::now_ms();
            let mut marked = Vec::new();
            let mut refused = Refused::default();
            for request in requests {
                let row = check
                    .query_row(params![request.file.0, guard.now_ms, require], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, i64>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, bool>(3)?,
                            row.get::<_, bool>(4)?,
                            row.get::<_, bool>(5)?,
                            row.get::<_, Option<i64>>(6)?,
                        ))
                    })
                    .optional()?;
                let Some((path, size, state, leased, held, unsynced, entity)) = row else {
                    refused.gone += 1;
                    continue;
                };
                let counter = if state != "ready" {
                    &mut refused.not_ready
                } else if leased {
                    &mut refused.leased
                } else if held {
                    &mut refused.export_held
                } else if unsynced {
                    &mut refused.unsynced
                } else {
                    if mark.execute([request.file.0])? == 1 {
                        uncache.execute([request.file.0])?;
                        changed.extend(entity);
                        event.execute(params![
                            now,
                            request.file.0,
                            guard.job.map(|j| j.0),
                            guard.plugin,
                            format!("{path}: {}", request.reason)
                        ])?;
                        marked.push(Marked {
                            file: request.file,
                            path,
                            size: u64::try_from(size).unwrap_or(0),
                        });
                    }
                    continue;
                };
                *counter += 1;
            }
            for entity in changed {
                bump.execute([entity])?;
            }
            Ok((marked, refused))
        })
    }

    /// Removes the rows of files marked `deleting` whose file is gone.
    pub fn remove_deleted(&self, files: &[FileId]) -> anyhow::Result<()> {
        self.write(|tx| {
            let mut remove =
                tx.prepare_cached("DELETE FROM files WHERE id = ?1 AND state = 'deleting'")?;
            for file in files {
                remove.execute([file.0])?;
            }
            Ok(())
        })
    }

    /// Files marked `deleting` and not finished (a crash came in between):
    /// (id, path), for the next cleanup or fsck to finish.
    pub fn unfinished_deletions(&self) -> anyhow::Result<Vec<(FileId, String)>> {
        self.read(|db| {
            let mut query = db.prepare_cached(
                "SELECT id, path FROM files WHERE state = 'deleting' ORDER BY id",
            )?;
            query
                .query_map([], |row| Ok((FileId(row.get(0)?), row.get(1)?)))?
                .collect()
        })
    }

    /// Appends an audit row.
    pub fn record_event(
        &self,
        kind: &str,
        job: Option<JobId>,
        plugin: Option<&str>,
        message: &str,
    ) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO events (at_ms, kind, job_id, plugin, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![super::now_ms(), kind, job.map(|j| j.0), plugin, message],
            )?;
            Ok(())
        })
    }

    /// The names among `names` that no destination has.
    pub fn unknown_destinations(&self, names: &[String]) -> anyhow::Result<Vec<String>> {
        self.read(|db| {
            let mut query = db.prepare_cached("SELECT 1 FROM destinations WHERE name = ?1")?;
            let mut unknown = Vec::new();
            for name in names {
                if !query.exists([name])? {
                    unknown.push(name.clone());
                }
            }
            Ok(unknown)
        })
    }

    /// The index paths of `files` that are still indexed, in the same order.
    pub fn file_paths(&self, files: &[FileId]) -> anyhow::Result<Vec<Option<String>>> {
        self.read(|db| {
            let mut query = db.prepare_cached("SELECT path FROM files WHERE id = ?1")?;
            files
                .iter()
                .map(|file| query.query_row([file.0], |row| row.get(0)).optional())
                .collect()
        })
    }

    /// Whether `path` is tracked, read now.
    pub fn is_tracked(&self, path: &str) -> anyhow::Result<bool> {
        self.read(|db| {
            db.prepare_cached("SELECT 1 FROM files WHERE path = ?1")?
                .exists([path])
        })
    }

    /// Runs `remove` while holding the index's write lock, if `path` is not
    /// tracked at that moment; returns `None` without running it if it is.
    /// An ingest commits a file's row under the same lock, so the index
    /// cannot gain `path` between the check and `remove`.
    pub fn unless_tracked<T>(
        &self,
        path: &str,
        remove: impl FnOnce() -> T,
    ) -> anyhow::Result<Option<T>> {
        self.write(|tx| {
            if tx
                .prepare_cached("SELECT 1 FROM files WHERE path = ?1")?
                .exists([path])?
            {
                return Ok(None);
            }
            Ok(Some(remove()))
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::index::{FileState, InsertOutcome, NewFile};

    /// One file of a generated index, and what protects it.
    #[derive(Debug, Clone)]
    struct Model {
        state: FileState,
        /// None: no lease; Some(true): held; Some(false): expired.
        lease: Option<bool>,
        /// A download of it: None: none; Some(true): in progress;
        /// Some(false): its lease expired (the downloader died).
        download: Option<bool>,
        /// A cached export's result: that alone protects nothing.
        cached: bool,
        /// Synced to the destination marked required.
        synced_required: bool,
        /// Synced to `extra`, which only the policy requires.
        synced_extra: bool,
    }

    impl Model {
        /// `exporting`: an export of this file's entity is being made.
        fn protected(&self, policy_requires_extra: bool, exporting: bool) -> bool {
            self.state != FileState::Ready
                || self.lease == Some(true)
                || self.download == Some(true)
                || exporting
                || !self.synced_required
                || (policy_requires_extra && !self.synced_extra)
        }
    }

    fn model() -> impl Strategy<Value = Model> {
        (
            prop_oneof![
                6 => Just(FileState::Ready),
                1 => Just(FileState::Writing),
                1 => Just(FileState::Deleting),
                1 => Just(FileState::Lost),
                1 => Just(FileState::Corrupt),
            ],
            prop::option::of(any::<bool>()),
            prop::option::weighted(0.2, any::<bool>()),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.7),
            prop::bool::weighted(0.7),
        )
            .prop_map(
                |(state, lease, download, cached, synced_required, synced_extra)| Model {
                    state,
                    lease,
                    download,
                    cached,
                    synced_required,
                    synced_extra,
                },
            )
    }

    const NOW: i64 = 1_000_000;

    /// An index holding `files` (file `i` of entity `e{i % 3}`); with
    /// `exporting`, an export of `e0` is being made.
    fn build(files: &[Model], exporting: bool) -> (tempfile::TempDir, Index, Vec<FileId>) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let new: Vec<NewFile> = (0..files.len())
            .map(|i| NewFile {
                path: format!("files/e{}/{i}", i % 3),
                size: i as u64 + 1,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: Some(format!("e{}", i % 3)),
                created_ms: i as i64,
            })
            .collect();
        let ids: Vec<FileId> = index
            .insert_files(&new)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id,
            })
            .collect();
        index
            .write(|tx| {
                tx.execute_batch(
                    "INSERT INTO destinations (name, plugin, url, required) VALUES ('main', 'p', 'u', 1), ('extra', 'p', 'u', 0)",
                )
            })
            .unwrap();
        for (id, file) in ids.iter().zip(files) {
            if file.state != FileState::Ready {
                index.set_file_state(*id, file.state, "test").unwrap();
            }
            // Held: expires after NOW; expired: before.
            let acquired = |held| if held { NOW - 10 } else { NOW - 1000 };
            if let Some(held) = file.lease {
                index
                    .try_acquire_lease(
                        &format!("file:{}", id.0),
                        "someone",
                        100,
                        acquired(held),
                        None,
                    )
                    .unwrap();
            }
            if let Some(held) = file.download {
                index
                    .try_acquire_lease(
                        &download_lease_name(*id, "7"),
                        "someone",
                        100,
                        acquired(held),
                        None,
                    )
                    .unwrap();
            }
            index
                .write(|tx| {
                    if file.cached {
                        tx.execute(
                            "INSERT INTO exports (entity_id, entity_version, format, params_sha256, file_id, created_ms, last_access_ms)
                             VALUES ((SELECT entity_id FROM files WHERE id = ?1), 1, 'tar', ?1, ?1, 0, 0)",
                            [id.0],
                        )?;
                    }
                    for (name, synced) in [("main", file.synced_required), ("extra", file.synced_extra)] {
                        tx.execute(
                            "INSERT INTO sync_status (file_id, destination_id, state, next_attempt_ms)
                             SELECT ?1, id, ?2, 0 FROM destinations WHERE name = ?3",
                            params![id.0, if synced { "synced" } else { "pending" }, name],
                        )?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        if exporting {
            let e0: i64 = index
                .read(|db| {
                    db.query_row("SELECT id FROM entities WHERE name = 'e0'", [], |r| {
                        r.get(0)
                    })
                })
                .unwrap();
            index
                .try_acquire_lease(
                    &format!("export:{e0}:1:tar:abc"),
                    "someone",
                    100,
                    NOW - 10,
                    None,
                )
                .unwrap();
        }
        (dir, index, ids)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever a policy asks for (every file, some twice, ids that do
        /// not exist), the host marks exactly the unprotected ready files
        /// it asked for, each once, and never a protected one.
        #[test]
        fn the_host_never_marks_a_protected_file_for_deletion(
            files in prop::collection::vec(model(), 1..24),
            asked in prop::collection::vec(0usize..40, 0..60),
            requires_extra in any::<bool>(),
            exporting in prop::bool::weighted(0.3),
        ) {
            let (_dir, index, ids) = build(&files, exporting);
            let version = |e: &str| -> i64 {
                index
                    .read(|db| {
                        db.query_row("SELECT version FROM entities WHERE name = ?1", [e], |r| r.get(0))
                            .optional()
                    })
                    .unwrap()
                    .unwrap_or(0)
            };
            let versions_before: Vec<i64> = (0..3).map(|e| version(&format!("e{e}"))).collect();
            let reason = "test policy";
            let requests: Vec<DeletionRequest<'_>> = asked
                .iter()
                .map(|&i| DeletionRequest {
                    // Beyond the files: an id the index does not have.
                    file: ids.get(i).copied().unwrap_or(FileId(10_000 + i as i64)),
                    reason,
                })
                .collect();
            let extra = if requires_extra { vec!["extra".to_owned()] } else { Vec::new() };
            let guard = DeletionGuard { plugin: "p", job: None, require_synced: &extra, now_ms: NOW };
            let (marked, refused) = index.mark_deleting(&requests, &guard).unwrap();
            let marked_ids: HashSet<FileId> = marked.iter().map(|m| m.file).collect();
            prop_assert_eq!(marked_ids.len(), marked.len(), "each file marked once");
            let expected: HashSet<FileId> = asked
                .iter()
                .filter_map(|&i| files.get(i).map(|f| (ids[i], i, f)))
                .filter(|(_, i, f)| !f.protected(requires_extra, exporting && i % 3 == 0))
                .map(|(id, _, _)| id)
                .collect();
            prop_assert_eq!(&marked_ids, &expected);
            prop_assert_eq!(refused.total() + marked.len() as u64, requests.len() as u64);
            // Every mark has its audit row naming the plugin and the reason.
            let events: i64 = index.read(|db| db.query_row(
                "SELECT count(*) FROM events WHERE kind = 'deleted' AND plugin = 'p' AND message LIKE '%test policy'",
                [], |r| r.get(0))).unwrap();
            prop_assert_eq!(events, marked.len() as i64);
            // A marked file's cache entry is gone with the mark; the others stay.
            let cached: i64 = index.read(|db| db.query_row("SELECT count(*) FROM exports", [], |r| r.get(0))).unwrap();
            let want_cached = (0..files.len()).filter(|&i| files[i].cached && !marked_ids.contains(&ids[i])).count();
            prop_assert_eq!(cached, want_cached as i64);
            // Each entity that lost a file has a new version, once per mark.
            for (e, before) in versions_before.iter().enumerate() {
                let lost = (0..files.len()).any(|i| i % 3 == e && marked_ids.contains(&ids[i]));
                prop_assert_eq!(version(&format!("e{e}")), before + i64::from(lost));
            }
        }
    }

    use std::collections::HashSet;
}

#[cfg(test)]
mod concurrent {
    use super::*;
    use crate::index::{InsertOutcome, NewFile};

    #[test]
    fn two_concurrent_cleanups_never_mark_the_same_file_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let index = Index::open(&path).unwrap();
        let files: Vec<NewFile> = (0..500)
            .map(|i| NewFile {
                path: format!("f/{i}"),
                size: 1,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: None,
                created_ms: i,
            })
            .collect();
        let ids: Vec<FileId> = index
            .insert_files(&files)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id,
            })
            .collect();
        // Two processes' worth of index connections, asking for the same files.
        let marked: Vec<Vec<FileId>> = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..2)
                .map(|_| {
                    let (path, ids) = (&path, &ids);
                    scope.spawn(move || {
                        let index = Index::open(path).unwrap();
                        let guard = DeletionGuard {
                            plugin: "p",
                            job: None,
                            require_synced: &[],
                            now_ms: 0,
                        };
                        let mut marked = Vec::new();
                        for chunk in ids.chunks(50) {
                            let requests: Vec<_> = chunk
                                .iter()
                                .map(|&file| DeletionRequest { file, reason: "r" })
                                .collect();
                            let (m, _) = index.mark_deleting(&requests, &guard).unwrap();
                            marked.extend(m.into_iter().map(|m| m.file));
                        }
                        marked
                    })
                })
                .collect();
            runs.into_iter().map(|run| run.join().unwrap()).collect()
        });
        let mut all: Vec<FileId> = marked.concat();
        assert_eq!(all.len(), ids.len(), "every file marked once in all");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), ids.len());
    }
}

#[cfg(test)]
mod live_leases {
    use super::*;
    use crate::index::{InsertOutcome, NewFile};

    /// The leases read once agree with the per-row SQL they stand in for,
    /// names at the edges of the lease ranges included.
    #[test]
    fn live_leases_agree_with_the_sql_probes() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let files: Vec<NewFile> = (0..12)
            .map(|i| NewFile {
                path: format!("f/{i}"),
                size: 1,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: if i % 4 == 3 { "export" } else { "capture" }.into(),
                entity: (i % 3 != 0).then(|| format!("e{}", i % 2)),
                created_ms: i,
            })
            .collect();
        let ids: Vec<i64> = index
            .insert_files(&files)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                InsertOutcome::Inserted(id) | InsertOutcome::AlreadyIndexed(id) => id.0,
            })
            .collect();
        let entity = |name: &str| -> i64 {
            index
                .read(|db| {
                    db.query_row("SELECT id FROM entities WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                })
                .unwrap()
        };
        let (e0, e1) = (entity("e0"), entity("e1"));
        let names = [
            // File 0 has no entity, so nothing else holds it.
            format!("file:{}", ids[0]),
            format!("file:0{}", ids[2]),
            format!("file:{}x", ids[1]),
            format!("download:{}:1", ids[4]),
            // No colon after the id (file 3 has no entity and is an export).
            format!("download:{}", ids[3]),
            // The id of file 0 is a prefix of this one's.
            format!("download:{}0:1", ids[0]),
            format!("export:{e1}:1:tar:abc"),
            format!("export:{e0}"),
            format!("file:{}", ids[6]),
        ];
        for (i, name) in names.iter().enumerate() {
            // The last one has expired by `now`.
            let expires_in = if i == names.len() - 1 { 10 } else { 1000 };
            index
                .try_acquire_lease(name, "me", expires_in, 0, None)
                .unwrap();
        }
        let now = 100;
        let (leases, sql) = index
            .read(|db| {
                let leases = LiveLeases::read(db, now)?;
                let mut query = db.prepare(&format!(
                    "SELECT f.id, f.kind, f.entity_id,
                        EXISTS (SELECT 1 FROM locks l WHERE l.name = 'file:' || f.id AND l.expires_ms > ?1),
                        {}
                     FROM files f ORDER BY f.id",
                    export_held_sql("?1")
                ))?;
                let rows = query
                    .query_map([now], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, bool>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((leases, rows))
            })
            .unwrap();
        let mut held = 0;
        for (id, kind, entity_id, leased, export_held) in sql {
            assert_eq!(leases.leased(id), leased, "file:{id}");
            assert_eq!(
                leases.export_held(id, &kind, entity_id),
                export_held,
                "file {id} ({kind}, entity {entity_id:?})"
            );
            held += usize::from(leased) + usize::from(export_held);
        }
        // file:, download: and the export of e1's non-export files.
        assert!(held >= 4, "the case must hold some files: {held}");
    }
}
