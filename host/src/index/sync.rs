//! The sync queries: the configured destinations as rows, a `sync_status`
//! row per file and destination, the claim of one due row by a sync job,
//! its outcome, recovery of claims whose job died, retry of failed rows and
//! the per-destination summary of `wharf sync status`.
//!
//! Invariants: a row is `in_progress` under exactly one job (`job_id`), and
//! only that job records its outcome; a file is never claimed while another
//! of its rows is `in_progress`, so one file is never uploaded twice at once;
//! `synced` is written with the verified sha256 only.

use rusqlite::{OptionalExtension, Transaction, params};

use super::inspect::count;
use super::{DestinationId, FileId, Index, JobId};

/// A destination as the index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationSpec {
    pub name: String,
    pub plugin: String,
    /// Its base URL, or the directory of a local one.
    pub url: String,
    pub required: bool,
}

/// A row claimed for upload: the file and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncClaim {
    pub file_id: FileId,
    pub destination_id: DestinationId,
    /// Attempts before this one.
    pub attempts: u32,
    /// Relative to the data directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub kind: String,
    pub created_ms: i64,
    pub mtime_ms: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The remote copy exists and its sha256 is the index's.
    Synced { remote_ref: String, sha256: String },
    /// Failed; tried again at `next_attempt_ms`.
    Retry { error: String, next_attempt_ms: i64 },
    /// Failed for good: never retried unless a user asks.
    Failed { error: String },
    /// Not attempted after all (the job stopped): due again now, the
    /// attempt not counted.
    Released,
}

/// One destination's rows, for `wharf sync status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSummary {
    pub destination: String,
    pub plugin: String,
    pub url: String,
    pub required: bool,
    pub pending: u64,
    pub pending_bytes: u64,
    pub in_progress: u64,
    pub in_progress_bytes: u64,
    pub synced: u64,
    pub synced_bytes: u64,
    /// Failed and waiting for a retry.
    pub retrying: u64,
    pub retrying_bytes: u64,
    /// Failed for good.
    pub failed: u64,
    pub failed_bytes: u64,
    /// The newest error of a failed row, with its file's path.
    pub last_error: Option<(String, String)>,
}

/// Rows of destinations a query is restricted to, as JSON for `json_each`.
fn ids_json(ids: &[DestinationId]) -> String {
    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned())
}

impl Index {
    /// Makes the `destinations` table the configured set: new ones added,
    /// changed ones updated (a changed plugin or URL forgets their rows, so
    /// every file is synced to the new place), others removed with their
    /// rows. Returns each destination's id, in the order given.
    pub fn set_destinations(
        &self,
        specs: &[DestinationSpec],
    ) -> anyhow::Result<Vec<DestinationId>> {
        self.write(|tx| {
            let mut ids = Vec::with_capacity(specs.len());
            for spec in specs {
                ids.push(upsert_destination(tx, spec)?);
            }
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            let names = serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned());
            tx.execute(
                "DELETE FROM destinations WHERE name NOT IN (SELECT value FROM json_each(?1))",
                [names],
            )?;
            Ok(ids)
        })
    }

    /// Adds a `pending` row, due at `now_ms`, for every ready file that has
    /// none for one of `destinations`, of those with an id above `after`
    /// (all with `None`). Empty files get none: there is nothing to
    /// upload, and they are reported as skipped. Exports are cached results
    /// made again on demand, not data to back up: they get none either.
    /// Returns the rows added and the largest file id at that moment, the
    /// `after` of an incremental pass that follows.
    pub fn sync_add_missing(
        &self,
        destinations: &[DestinationId],
        after: Option<FileId>,
        now_ms: i64,
    ) -> anyhow::Result<(u64, FileId)> {
        let ids = ids_json(destinations);
        self.write(|tx| {
            let last: i64 =
                tx.query_row("SELECT ifnull(max(id), 0) FROM files", [], |row| row.get(0))?;
            let added = tx.execute(
                "INSERT INTO sync_status (file_id, destination_id, state, next_attempt_ms)
                 SELECT f.id, d.value, 'pending', ?2
                 FROM json_each(?1) d JOIN files f
                 WHERE f.id > ?3 AND f.state = 'ready' AND f.size > 0 AND f.kind <> 'export'
                   AND NOT EXISTS (SELECT 1 FROM sync_status s
                                   WHERE s.file_id = f.id AND s.destination_id = d.value)",
                params![ids, now_ms, after.map_or(i64::MIN, |id| id.0)],
            )?;
            Ok((added as u64, FileId(last)))
        })
    }

    /// Puts back the `in_progress` rows of `destinations` whose job is not
    /// running (it died or ended without recording an outcome) or is `job`
    /// itself (a previous attempt of it): due now, the attempt not counted.
    /// Returns how many.
    pub fn sync_recover(
        &self,
        destinations: &[DestinationId],
        job: JobId,
        now_ms: i64,
    ) -> anyhow::Result<u64> {
        let ids = ids_json(destinations);
        self.write(|tx| {
            let recovered = tx.execute(
                "UPDATE sync_status
                 SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END,
                     next_attempt_ms = ?3, job_id = NULL
                 WHERE state = 'in_progress'
                   AND destination_id IN (SELECT value FROM json_each(?1))
                   AND (job_id IS NULL OR job_id = ?2
                        OR NOT EXISTS (SELECT 1 FROM jobs j
                                       WHERE j.id = sync_status.job_id AND j.state = 'running'))",
                params![ids, job.0, now_ms],
            )?;
            Ok(recovered as u64)
        })
    }

    /// Claims for `job` the first row of `destinations` due at `now_ms`
    /// whose file is ready, was last modified at or before
    /// `modified_before_ms`, and has no row in progress; `None` when there
    /// is none.
    pub fn sync_claim(
        &self,
        destinations: &[DestinationId],
        job: JobId,
        now_ms: i64,
        modified_before_ms: i64,
    ) -> anyhow::Result<Option<SyncClaim>> {
        let ids = ids_json(destinations);
        self.write(|tx| {
            let claim = tx
                .prepare_cached(
                    "SELECT s.file_id, s.destination_id, s.attempts, f.path, f.size, f.sha256,
                            f.kind, f.created_ms, f.mtime_ms
                     FROM sync_status s JOIN files f ON f.id = s.file_id
                     WHERE s.state IN ('pending', 'failed') AND s.next_attempt_ms <= ?2
                       AND s.destination_id IN (SELECT value FROM json_each(?1))
                       AND f.state = 'ready' AND f.mtime_ms <= ?3
                       AND NOT EXISTS (SELECT 1 FROM sync_status o
                                       WHERE o.file_id = s.file_id AND o.state = 'in_progress')
                     ORDER BY s.next_attempt_ms, s.file_id, s.destination_id
                     LIMIT 1",
                )?
                .query_row(params![ids, now_ms, modified_before_ms], |row| {
                    Ok(SyncClaim {
                        file_id: FileId(row.get(0)?),
                        destination_id: DestinationId(row.get(1)?),
                        attempts: row.get(2)?,
                        path: row.get(3)?,
                        size: count(row, 4)?,
                        sha256: row.get(5)?,
                        kind: row.get(6)?,
                        created_ms: row.get(7)?,
                        mtime_ms: row.get(8)?,
                    })
                })
                .optional()?;
            if let Some(claim) = &claim {
                tx.execute(
                    "UPDATE sync_status SET state = 'in_progress', job_id = ?3
                     WHERE file_id = ?1 AND destination_id = ?2",
                    params![claim.file_id.0, claim.destination_id.0, job.0],
                )?;
            }
            Ok(claim)
        })
    }

    /// Records how `job`'s attempt at `claim` ended; a row no longer held
    /// by `job` (recovered meanwhile) is left alone. Returns whether it was.
    pub fn sync_finish(
        &self,
        claim: &SyncClaim,
        job: JobId,
        outcome: &SyncOutcome,
        now_ms: i64,
    ) -> anyhow::Result<bool> {
        let key = params![claim.file_id.0, claim.destination_id.0, job.0];
        self.write(|tx| {
            let held: bool = tx
                .query_row(
                    "SELECT 1 FROM sync_status
                     WHERE file_id = ?1 AND destination_id = ?2 AND state = 'in_progress' AND job_id = ?3",
                    key,
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if !held {
                return Ok(false);
            }
            let (file, destination) = (claim.file_id.0, claim.destination_id.0);
            match outcome {
                SyncOutcome::Synced { remote_ref, sha256 } => tx.execute(
                    "UPDATE sync_status SET state = 'synced', attempts = attempts + 1,
                         next_attempt_ms = NULL, last_attempt_ms = ?3, last_error = NULL,
                         remote_ref = ?4, verified_sha256 = ?5, job_id = NULL
                     WHERE file_id = ?1 AND destination_id = ?2",
                    params![file, destination, now_ms, remote_ref, sha256],
                )?,
                SyncOutcome::Retry {
                    error,
                    next_attempt_ms,
                } => tx.execute(
                    "UPDATE sync_status SET state = 'failed', attempts = attempts + 1,
                         next_attempt_ms = ?4, last_attempt_ms = ?3, last_error = ?5, job_id = NULL
                     WHERE file_id = ?1 AND destination_id = ?2",
                    params![file, destination, now_ms, next_attempt_ms, error],
                )?,
                SyncOutcome::Failed { error } => tx.execute(
                    "UPDATE sync_status SET state = 'failed', attempts = attempts + 1,
                         next_attempt_ms = NULL, last_attempt_ms = ?3, last_error = ?4, job_id = NULL
                     WHERE file_id = ?1 AND destination_id = ?2",
                    params![file, destination, now_ms, error],
                )?,
                SyncOutcome::Released => tx.execute(
                    "UPDATE sync_status
                     SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'failed' END,
                         next_attempt_ms = ?3, job_id = NULL
                     WHERE file_id = ?1 AND destination_id = ?2",
                    params![file, destination, now_ms],
                )?,
            };
            Ok(true)
        })
    }

    /// When the next row of `destinations` that waits for a later attempt
    /// (pending or retrying, due after `now_ms`) becomes due, if any. Rows
    /// due already but not claimable (a file modified recently, not ready,
    /// or in progress to another destination) do not count.
    pub fn sync_next_due(
        &self,
        destinations: &[DestinationId],
        now_ms: i64,
    ) -> anyhow::Result<Option<i64>> {
        let ids = ids_json(destinations);
        self.read(|db| {
            db.query_row(
                "SELECT min(next_attempt_ms) FROM sync_status
                 WHERE state IN ('pending', 'failed') AND next_attempt_ms > ?2
                   AND destination_id IN (SELECT value FROM json_each(?1))",
                params![ids, now_ms],
                |row| row.get(0),
            )
        })
    }

    /// Makes every failed row of `destinations` (for good or waiting for a
    /// retry) pending and due at `now_ms`, its attempts reset. Returns how
    /// many.
    pub fn sync_retry_failed(
        &self,
        destinations: &[DestinationId],
        now_ms: i64,
    ) -> anyhow::Result<u64> {
        let ids = ids_json(destinations);
        self.write(|tx| {
            let requeued = tx.execute(
                "UPDATE sync_status SET state = 'pending', attempts = 0, next_attempt_ms = ?2
                 WHERE state IN ('pending', 'failed') AND state = 'failed'
                   AND destination_id IN (SELECT value FROM json_each(?1))",
                params![ids, now_ms],
            )?;
            Ok(requeued as u64)
        })
    }

    /// The rows of every destination the index knows, by state, in name
    /// order.
    pub fn sync_summaries(&self) -> anyhow::Result<Vec<SyncSummary>> {
        self.read(|db| {
            let mut destinations = db.prepare_cached(
                "SELECT id, name, plugin, url, required FROM destinations ORDER BY name",
            )?;
            let destinations = destinations
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        SyncSummary {
                            destination: row.get(1)?,
                            plugin: row.get(2)?,
                            url: row.get(3)?,
                            required: row.get::<_, i64>(4)? != 0,
                            ..SyncSummary::default()
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut counts = db.prepare_cached(
                "SELECT s.state, s.state = 'failed' AND s.next_attempt_ms IS NULL, count(*), sum(f.size)
                 FROM sync_status s JOIN files f ON f.id = s.file_id
                 WHERE s.destination_id = ?1
                 GROUP BY 1, 2",
            )?;
            let mut last_error = db.prepare_cached(
                "SELECT f.path, s.last_error FROM sync_status s JOIN files f ON f.id = s.file_id
                 WHERE s.destination_id = ?1 AND s.state = 'failed' AND s.last_error IS NOT NULL
                 ORDER BY s.last_attempt_ms DESC LIMIT 1",
            )?;
            let mut summaries = Vec::with_capacity(destinations.len());
            for (id, mut summary) in destinations {
                let rows = counts.query_map([id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, bool>(1)?,
                        count(row, 2)?,
                        count(row, 3)?,
                    ))
                })?;
                for row in rows {
                    let (state, for_good, files, bytes) = row?;
                    let (n, b) = match (state.as_str(), for_good) {
                        ("pending", _) => (&mut summary.pending, &mut summary.pending_bytes),
                        ("in_progress", _) => {
                            (&mut summary.in_progress, &mut summary.in_progress_bytes)
                        }
                        ("synced", _) => (&mut summary.synced, &mut summary.synced_bytes),
                        (_, false) => (&mut summary.retrying, &mut summary.retrying_bytes),
                        (_, true) => (&mut summary.failed, &mut summary.failed_bytes),
                    };
                    *n += files;
                    *b += bytes;
                }
                summary.last_error = last_error
                    .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                summaries.push(summary);
            }
            Ok(summaries)
        })
    }

    /// Ready files of no bytes: never synced, reported as skipped.
    pub fn sync_empty_files(&self) -> anyhow::Result<u64> {
        self.read(|db| {
            db.query_row(
                "SELECT count(*) FROM files WHERE state = 'ready' AND size = 0",
                [],
                |row| count(row, 0),
            )
        })
    }
}

fn upsert_destination(
    tx: &Transaction<'_>,
    spec: &DestinationSpec,
) -> rusqlite::Result<DestinationId> {
    let existing: Option<(i64, String, String)> = tx
        .query_row(
            "SELECT id, plugin, url FROM destinations WHERE name = ?1",
            [&spec.name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let required = i64::from(spec.required);
    match existing {
        None => {
            tx.execute(
                "INSERT INTO destinations (name, plugin, url, required) VALUES (?1, ?2, ?3, ?4)",
                params![spec.name, spec.plugin, spec.url, required],
            )?;
            Ok(DestinationId(tx.last_insert_rowid()))
        }
        Some((id, plugin, url)) => {
            if plugin != spec.plugin || url != spec.url {
                tx.execute("DELETE FROM sync_status WHERE destination_id = ?1", [id])?;
            }
            tx.execute(
                "UPDATE destinations SET plugin = ?2, url = ?3, required = ?4 WHERE id = ?1",
                params![id, spec.plugin, spec.url, required],
            )?;
            Ok(DestinationId(id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::NewFile;

    fn index_with_files(dir: &std::path::Path, sizes: &[u64]) -> Index {
        let index = Index::open(&dir.join("index.sqlite")).unwrap();
        let files: Vec<NewFile> = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| NewFile {
                path: format!("files/{i}.bin"),
                size: *size,
                mtime_ms: 1,
                sha256: "a".repeat(64),
                kind: "capture".into(),
                entity: None,
                created_ms: 1,
            })
            .collect();
        index.insert_files(&files).unwrap();
        index
    }

    /// Adds one more file (`files/{n}.bin`, 9 bytes); returns its id.
    fn index_with_more(index: &Index, n: usize) -> FileId {
        index
            .insert_files(&[NewFile {
                path: format!("files/{n}.bin"),
                size: 9,
                mtime_ms: 1,
                sha256: "b".repeat(64),
                kind: "capture".into(),
                entity: None,
                created_ms: 1,
            }])
            .unwrap();
        index
            .file_by_path(&format!("files/{n}.bin"))
            .unwrap()
            .unwrap()
            .id
    }

    fn spec(name: &str, url: &str, required: bool) -> DestinationSpec {
        DestinationSpec {
            name: name.into(),
            plugin: "local-dir".into(),
            url: url.into(),
            required,
        }
    }

    #[test]
    fn a_file_is_never_claimed_twice_at_once_and_a_dead_jobs_claim_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let index = index_with_files(dir.path(), &[5, 0, 7]);
        let ids = index
            .set_destinations(&[spec("a", "/a", false), spec("b", "/b", true)])
            .unwrap();
        // Two destinations × two non-empty files; the empty one gets none.
        let (added, last) = index.sync_add_missing(&ids, None, 100).unwrap();
        assert_eq!((added, last), (4, FileId(3)));
        assert_eq!(index.sync_add_missing(&ids, None, 100).unwrap().0, 0);
        let first = index.sync_claim(&ids, JobId(1), 100, 100).unwrap().unwrap();
        let second = index.sync_claim(&ids, JobId(2), 100, 100).unwrap().unwrap();
        assert_ne!(first.file_id, second.file_id, "the same file twice at once");
        // Both files are in progress: nothing else may be claimed.
        assert_eq!(index.sync_claim(&ids, JobId(3), 100, 100).unwrap(), None);
        // Job 1 synced its file; job 2 died (no running job row).
        let synced = SyncOutcome::Synced {
            remote_ref: "0.bin".into(),
            sha256: "a".repeat(64),
        };
        assert!(index.sync_finish(&first, JobId(1), &synced, 150).unwrap());
        assert_eq!(index.sync_recover(&ids, JobId(9), 200).unwrap(), 1);
        // A recovered row no longer answers to the job that held it.
        assert!(!index.sync_finish(&second, JobId(2), &synced, 210).unwrap());
        let summaries = index.sync_summaries().unwrap();
        let b = summaries.iter().find(|s| s.destination == "b").unwrap();
        assert!(b.required);
        assert_eq!(
            (
                summaries[0].synced + b.synced,
                summaries[0].pending + b.pending
            ),
            (1, 3)
        );
        assert_eq!(index.sync_empty_files().unwrap(), 1);
        // An incremental pass only looks above the last id it saw.
        let more = index_with_more(&index, 4);
        assert_eq!(
            index.sync_add_missing(&ids, Some(last), 300).unwrap(),
            (2, more)
        );
        assert_eq!(index.sync_add_missing(&ids, Some(more), 300).unwrap().0, 0);
    }

    #[test]
    fn failures_wait_for_their_retry_and_retry_failed_makes_them_due() {
        let dir = tempfile::tempdir().unwrap();
        let index = index_with_files(dir.path(), &[5]);
        let ids = index.set_destinations(&[spec("a", "/a", false)]).unwrap();
        index.sync_add_missing(&ids, None, 100).unwrap();
        let claim = index.sync_claim(&ids, JobId(1), 100, 100).unwrap().unwrap();
        let retry = SyncOutcome::Retry {
            error: "503".into(),
            next_attempt_ms: 500,
        };
        index.sync_finish(&claim, JobId(1), &retry, 100).unwrap();
        assert_eq!(index.sync_claim(&ids, JobId(1), 400, 400).unwrap(), None);
        assert_eq!(index.sync_next_due(&ids, 400).unwrap(), Some(500));
        let claim = index.sync_claim(&ids, JobId(1), 500, 500).unwrap().unwrap();
        assert_eq!(claim.attempts, 1);
        let failed = SyncOutcome::Failed {
            error: "403".into(),
        };
        index.sync_finish(&claim, JobId(1), &failed, 500).unwrap();
        assert_eq!(index.sync_next_due(&ids, 500).unwrap(), None);
        assert_eq!(
            index.sync_claim(&ids, JobId(1), 9_999, 9_999).unwrap(),
            None
        );
        let summary = &index.sync_summaries().unwrap()[0];
        assert_eq!((summary.failed, summary.failed_bytes), (1, 5));
        assert_eq!(summary.last_error.as_ref().unwrap().1, "403");
        assert_eq!(index.sync_retry_failed(&ids, 600).unwrap(), 1);
        let claim = index.sync_claim(&ids, JobId(1), 600, 600).unwrap().unwrap();
        assert_eq!(claim.attempts, 0, "attempts reset");
        // Changing a destination's place forgets its rows.
        index
            .set_destinations(&[spec("a", "/elsewhere", false)])
            .unwrap();
        assert_eq!(index.sync_summaries().unwrap()[0].in_progress, 0);
        assert_eq!(index.set_destinations(&[]).unwrap(), []);
        assert!(index.sync_summaries().unwrap().is_empty());
    }
}
