//! Rows of `jobs`: the queue's SQL. Enqueue with single-flight (one live
//! job per key, a trigger while it runs sets `rerun`), claim under a lease,
//! heartbeat, finish (done, retry at a time, failed, cancelled, released),
//! recovery of jobs whose owner died, and the reads `wharf jobs` shows. The
//! policy (backoff, who is dead, when to claim) lives in `crate::jobs`.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction, so two processes never
//! both see a key free; the unique partial index `jobs_single_flight` backs
//! that up. A row is changed on behalf of a running job only while `owner`
//! still names the caller, so a job taken over after its lease expired is
//! never finished by its old owner.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::Index;

/// A row of `jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Done, failed or cancelled: nothing more happens to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: String,
    /// Single-flight key: while a job of this key is queued, enqueueing
    /// another is a no-op; while one runs, it sets that job's `rerun`.
    pub unique_key: Option<String>,
    /// JSON.
    pub payload: String,
    pub max_attempts: u32,
    /// When it may start (ms since the epoch).
    pub due_ms: i64,
    /// A queued job of this key is cancelled by this one, whose run covers
    /// it (a full cleanup absorbs a pending GC-only one).
    pub absorbs: Option<String>,
    /// ... and a queued job of this key absorbs this one instead.
    pub absorbed_by: Option<String>,
}

/// What enqueueing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new queued job.
    Queued(JobId),
    /// A job of the same key is queued already and covers this trigger.
    AlreadyQueued(JobId),
    /// A job of the same key is running: exactly one more run follows it.
    RerunSet(JobId),
    /// A queued job of the `absorbed_by` key covers this trigger.
    Absorbed(JobId),
}

impl Enqueued {
    /// The job that will do the work asked for.
    pub fn id(self) -> JobId {
        match self {
            Enqueued::Queued(id)
            | Enqueued::AlreadyQueued(id)
            | Enqueued::RerunSet(id)
            | Enqueued::Absorbed(id) => id,
        }
    }
}

/// A row of `jobs`, as `wharf jobs show` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: JobId,
    pub kind: String,
    pub unique_key: Option<String>,
    pub payload: String,
    pub state: JobState,
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_attempt_ms: i64,
    pub owner: Option<String>,
    pub lease_expires_ms: Option<i64>,
    pub rerun: bool,
    pub cancel_requested: bool,
    pub progress: Option<u64>,
    pub progress_total: Option<u64>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// The job whose run covers this one, which it cancelled (a full
    /// cleanup absorbs a queued gc).
    pub absorbed_by: Option<JobId>,
}

/// How a claimed job ended, as its owner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Done,
    /// A transient failure: queued again, due at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Failed for good; kept with its error, listed in `failures`.
    Failed {
        error: String,
    },
    /// Stopped on a user's request.
    Cancelled {
        error: String,
    },
    /// Stopped by a shutdown: queued again at once, the attempt not counted.
    Released,
    /// Made way for a waiting job: queued again just behind the jobs due
    /// now, the attempt not counted; a pending rerun stays pending.
    Yielded,
}

/// What `wharf jobs retry` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    Requeued,
    NotFound,
    /// Only failed and cancelled jobs are retried.
    NotFinished(JobState),
    Done,
    /// Another job of its key is live.
    KeyBusy(JobId),
}

/// What `wharf jobs cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// It runs: its owner stops it at the next heartbeat.
    Requested,
    NotFound,
    AlreadyFinal(JobState),
}

/// Jobs by state, for `wharf status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub failed: u64,
}

const COLUMNS: &str = "id, kind, unique_key, payload, state, attempts, max_attempts, next_attempt_ms, owner, \
     lease_expires_ms, rerun, cancel_requested, progress, progress_total, last_error, created_ms, started_ms, \
     finished_ms, absorbed_by";

/// The claim: the first due queued job of the given kinds (a JSON array),
/// over `jobs_ready`, taken in the same statement.
const CLAIM: &str = "\
UPDATE jobs SET state = 'running', owner = ?1, lease_expires_ms = ?2 + ?3, attempts = attempts + 1,
                started_ms = ?2, progress = NULL, progress_total = NULL
WHERE id = (SELECT id FROM jobs
            WHERE state = 'queued' AND next_attempt_ms <= ?2 AND kind IN (SELECT value FROM json_each(?4))
            ORDER BY next_attempt_ms, id LIMIT 1)
RETURNING ";

const CLAIM_ONE: &str = "\
UPDATE jobs SET state = 'running', owner = ?1, lease_expires_ms = ?2 + ?3, attempts = attempts + 1,
                started_ms = ?2, progress = NULL, progress_total = NULL
WHERE id = ?4 AND state = 'queued' AND next_attempt_ms <= ?2
RETURNING ";

impl Index {
    /// Enqueues `job`, or folds it into the live job of its key.
    pub fn enqueue_job(&self, job: &NewJob, now_ms: i64) -> anyhow::Result<Enqueued> {
        self.write(|tx| enqueue(tx, job, now_ms))
    }

    /// Enqueues many jobs in one transaction.
    pub fn enqueue_jobs(&self, jobs: &[NewJob], now_ms: i64) -> anyhow::Result<Vec<Enqueued>> {
        self.write(|tx| jobs.iter().map(|job| enqueue(tx, job, now_ms)).collect())
    }

    /// Claims the first due queued job of `kinds` for `owner` under a lease
    /// of `lease_ms`, or `only` that job if it is queued (due or not).
    pub fn claim_job(
        &self,
        owner: &str,
        kinds: &[String],
        now_ms: i64,
        lease_ms: i64,
        only: Option<JobId>,
    ) -> anyhow::Result<Option<JobRow>> {
        let kinds = serde_json::to_string(kinds)?;
        self.write(|tx| claim_row(tx, owner, &kinds, now_ms, lease_ms, only))
    }

    /// [`Index::finish_job`], then, in the same transaction, a claim as
    /// [`Index::claim_job`] for the worker that just became free: one
    /// transaction per job instead of two.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_and_claim_job(
        &self,
        id: JobId,
        owner: &str,
        finish: &Finish,
        now_ms: i64,
        kinds: &[String],
        lease_ms: i64,
        only: Option<JobId>,
    ) -> anyhow::Result<(bool, Option<JobRow>)> {
        let kinds = serde_json::to_string(kinds)?;
        self.write(|tx| {
            let finished = finish_row(tx, id, owner, finish, now_ms)?;
            let next = claim_row(tx, owner, &kinds, now_ms, lease_ms, only)?;
            Ok((finished, next))
        })
    }

    /// When the next queued job of `kinds` is due, if any is queued.
    pub fn next_job_due_ms(&self, kinds: &[String]) -> anyhow::Result<Option<i64>> {
        let kinds = serde_json::to_string(kinds)?;
        self.read(|db| {
            db.prepare_cached(
                "SELECT next_attempt_ms FROM jobs
                 WHERE state = 'queued' AND kind IN (SELECT value FROM json_each(?1))
                 ORDER BY next_attempt_ms, id LIMIT 1",
            )?
            .query_row([kinds], |row| row.get(0))
            .optional()
        })
    }

    /// Renews the lease of the jobs `ids` that `owner` runs (only those it
    /// is still working on, so a job whose end could not be recorded is
    /// left to expire and be recovered); returns those a user asked to
    /// cancel.
    pub fn heartbeat_jobs(
        &self,
        owner: &str,
        ids: &[JobId],
        now_ms: i64,
        lease_ms: i64,
    ) -> anyhow::Result<Vec<JobId>> {
        let ids = serde_json::to_string(&ids.iter().map(|id| id.0).collect::<Vec<_>>())?;
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET lease_expires_ms = ?2 + ?3
                 WHERE id IN (SELECT value FROM json_each(?4)) AND state = 'running' AND owner = ?1",
                params![owner, now_ms, lease_ms, ids],
            )?;
            let mut query = tx.prepare_cached(
                "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(?2)) AND state = 'running'
                     AND owner = ?1 AND cancel_requested = 1",
            )?;
            query
                .query_map(params![owner, ids], |row| Ok(JobId(row.get(0)?)))?
                .collect()
        })
    }

    /// Records how a job `owner` claimed ended. False if it is no longer
    /// theirs (its lease expired and it was taken over): nothing changes.
    /// A finished job whose `rerun` is set is followed by a new queued job
    /// of the same kind, key and payload, in the same transaction.
    pub fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        finish: &Finish,
        now_ms: i64,
    ) -> anyhow::Result<bool> {
        self.write(|tx| finish_row(tx, id, owner, finish, now_ms))
    }

    /// Records a running job's progress (done of total, in its own unit).
    pub fn set_job_progress(
        &self,
        id: JobId,
        owner: &str,
        done: u64,
        total: Option<u64>,
    ) -> anyhow::Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET progress = ?3, progress_total = ?4 WHERE id = ?1 AND owner = ?2 AND state = 'running'",
                params![id.0, owner, sql_u64(done), total.map(sql_u64)],
            )
        })?;
        Ok(())
    }

    /// The owners of running jobs, with the latest lease expiry of each.
    pub fn job_owners(&self) -> anyhow::Result<Vec<(String, i64)>> {
        self.read(|db| {
            let mut query = db.prepare_cached(
                "SELECT owner, max(ifnull(lease_expires_ms, 0)) FROM jobs
                 WHERE state = 'running' GROUP BY owner",
            )?;
            query
                .query_map([], |row| {
                    Ok((
                        row.get::<_, Option<String>>(0)?.unwrap_or_default(),
                        row.get(1)?,
                    ))
                })?
                .collect()
        })
    }

    /// Queues again the running jobs of `owner`, who is known to be dead, or
    /// with `owner` None every running job whose lease expired before
    /// `now_ms`. A job that used up its attempts fails for good instead.
    /// Returns (requeued, failed).
    pub fn recover_jobs(&self, owner: Option<&str>, now_ms: i64) -> anyhow::Result<(u64, u64)> {
        self.write(|tx| {
            let which = "state = 'running' AND (owner = ?1 OR (?1 IS NULL AND lease_expires_ms < ?2))";
            let failed = tx.execute(
                &format!(
                    "UPDATE jobs SET state = 'failed', finished_ms = ?2, lease_expires_ms = NULL,
                         last_error = 'its worker died during each of its ' || attempts || ' attempts (last: ' || ifnull(owner, '?') || ')'
                     WHERE {which} AND attempts >= max_attempts"
                ),
                params![owner, now_ms],
            )?;
            let requeued = tx.execute(
                &format!(
                    "UPDATE jobs SET state = 'queued', next_attempt_ms = ?2, lease_expires_ms = NULL,
                         last_error = 'its worker died (' || ifnull(owner, '?') || '); queued again', owner = NULL
                     WHERE {which}"
                ),
                params![owner, now_ms],
            )?;
            Ok((requeued as u64, failed as u64))
        })
    }

    /// One job.
    pub fn job(&self, id: JobId) -> anyhow::Result<Option<JobRow>> {
        self.read(|db| {
            db.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"))?
                .query_row([id.0], job_row)
                .optional()
        })
    }

    /// Up to `limit` jobs, newest first, of `state` if given.
    pub fn jobs(&self, state: Option<JobState>, limit: usize) -> anyhow::Result<Vec<JobRow>> {
        self.read(|db| {
            let mut query = db.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            query
                .query_map(
                    params![state.map(JobState::as_str), i64::try_from(limit).unwrap_or(i64::MAX)],
                    job_row,
                )?
                .collect()
        })
    }

    /// Queues a failed or cancelled job again, its attempts reset.
    pub fn retry_job(&self, id: JobId, now_ms: i64) -> anyhow::Result<RetryOutcome> {
        self.write(|tx| {
            let Some((state, key)) = tx
                .query_row("SELECT state, unique_key FROM jobs WHERE id = ?1", [id.0], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                })
                .optional()?
            else {
                return Ok(RetryOutcome::NotFound);
            };
            match JobState::parse(&state) {
                Some(JobState::Failed | JobState::Cancelled) => {}
                Some(JobState::Done) => return Ok(RetryOutcome::Done),
                Some(other) => return Ok(RetryOutcome::NotFinished(other)),
                None => return Ok(RetryOutcome::NotFound),
            }
            if let Some(live) = key.as_deref().map(|key| live_job(tx, key)).transpose()?.flatten() {
                return Ok(RetryOutcome::KeyBusy(live.0));
            }
            tx.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, next_attempt_ms = ?2, finished_ms = NULL,
                     cancel_requested = 0, rerun = 0, absorbed_by = NULL
                 WHERE id = ?1",
                params![id.0, now_ms],
            )?;
            Ok(RetryOutcome::Requeued)
        })
    }

    /// Cancels a queued job, or asks the owner of a running one to stop it.
    pub fn cancel_job(&self, id: JobId, now_ms: i64) -> anyhow::Result<CancelOutcome> {
        self.write(|tx| {
            let Some(state) = tx
                .query_row("SELECT state FROM jobs WHERE id = ?1", [id.0], |row| {
                    row.get::<_, String>(0)
                })
                .optional()?
            else {
                return Ok(CancelOutcome::NotFound);
            };
            match JobState::parse(&state) {
                Some(JobState::Queued) => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', finished_ms = ?2, last_error = 'cancelled by a user'
                         WHERE id = ?1",
                        params![id.0, now_ms],
                    )?;
                    Ok(CancelOutcome::Cancelled)
                }
                Some(JobState::Running) => {
                    tx.execute(
                        "UPDATE jobs SET cancel_requested = 1, rerun = 0 WHERE id = ?1",
                        [id.0],
                    )?;
                    Ok(CancelOutcome::Requested)
                }
                Some(other) => Ok(CancelOutcome::AlreadyFinal(other)),
                None => Ok(CancelOutcome::NotFound),
            }
        })
    }

    /// Queued, running and failed jobs.
    pub fn job_counts(&self) -> anyhow::Result<JobCounts> {
        self.read(job_counts)
    }
}

/// Counts over the partial indexes, so they cost the live jobs, not the history.
pub(super) fn job_counts(db: &rusqlite::Connection) -> rusqlite::Result<JobCounts> {
    let count = |sql: &str| -> rusqlite::Result<u64> {
        db.query_row(sql, [], |row| row.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
    };
    Ok(JobCounts {
        queued: count("SELECT count(*) FROM jobs WHERE state = 'queued'")?,
        running: count("SELECT count(*) FROM jobs WHERE state = 'running'")?,
        failed: count("SELECT count(*) FROM jobs WHERE state = 'failed'")?,
    })
}

/// The queued or running job of `key`, if any.
fn live_job(tx: &Transaction<'_>, key: &str) -> rusqlite::Result<Option<(JobId, JobState)>> {
    tx.prepare_cached(
        "SELECT id, state FROM jobs WHERE unique_key = ?1 AND state IN ('queued', 'running')",
    )?
    .query_row([key], |row| {
        let state: String = row.get(1)?;
        Ok((
            JobId(row.get(0)?),
            JobState::parse(&state).unwrap_or(JobState::Queued),
        ))
    })
    .optional()
}

fn enqueue(tx: &Transaction<'_>, job: &NewJob, now_ms: i64) -> rusqlite::Result<Enqueued> {
    if let Some(key) = &job.unique_key {
        match live_job(tx, key)? {
            Some((id, JobState::Running)) => {
                tx.execute("UPDATE jobs SET rerun = 1 WHERE id = ?1", [id.0])?;
                return Ok(Enqueued::RerunSet(id));
            }
            Some((id, _)) => return Ok(Enqueued::AlreadyQueued(id)),
            None => {}
        }
    }
    if let Some(key) = &job.absorbed_by
        && let Some((id, JobState::Queued)) = live_job(tx, key)?
    {
        return Ok(Enqueued::Absorbed(id));
    }
    tx.prepare_cached(
        "INSERT INTO jobs (kind, unique_key, payload, max_attempts, next_attempt_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        job.kind,
        job.unique_key,
        job.payload,
        job.max_attempts.max(1),
        job.due_ms,
        now_ms
    ])?;
    let id = JobId(tx.last_insert_rowid());
    if let Some(key) = &job.absorbs
        && let Some((absorbed, JobState::Queued)) = live_job(tx, key)?
    {
        tx.execute(
            "UPDATE jobs SET state = 'cancelled', finished_ms = ?2, last_error = ?3, absorbed_by = ?4
             WHERE id = ?1",
            params![
                absorbed.0,
                now_ms,
                format!("absorbed by job {id}, whose run covers it"),
                id.0
            ],
        )?;
    }
    Ok(Enqueued::Queued(id))
}

fn claim_row(
    tx: &Transaction<'_>,
    owner: &str,
    kinds: &str,
    now_ms: i64,
    lease_ms: i64,
    only: Option<JobId>,
) -> rusqlite::Result<Option<JobRow>> {
    match only {
        Some(id) => tx
            .prepare_cached(&format!("{CLAIM_ONE}{COLUMNS}"))?
            .query_row(params![owner, now_ms, lease_ms, id.0], job_row)
            .optional(),
        None => tx
            .prepare_cached(&format!("{CLAIM}{COLUMNS}"))?
            .query_row(params![owner, now_ms, lease_ms, kinds], job_row)
            .optional(),
    }
}

fn finish_row(
    tx: &Transaction<'_>,
    id: JobId,
    owner: &str,
    finish: &Finish,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    // `rerun` as it was when the job ended, or None if it was not ours.
    let rerun: Option<i64> = match finish {
        Finish::Done => tx
            .prepare_cached(
                "UPDATE jobs SET state = 'done', finished_ms = ?3, lease_expires_ms = NULL, last_error = NULL
                 WHERE id = ?1 AND owner = ?2 AND state = 'running' RETURNING rerun",
            )?
            .query_row(params![id.0, owner, now_ms], |row| row.get(0))
            .optional()?,
        Finish::Failed { error } | Finish::Cancelled { error } => {
            let state = if matches!(finish, Finish::Failed { .. }) { "failed" } else { "cancelled" };
            tx.prepare_cached(
                "UPDATE jobs SET state = ?4, finished_ms = ?3, lease_expires_ms = NULL, last_error = ?5
                 WHERE id = ?1 AND owner = ?2 AND state = 'running' RETURNING rerun",
            )?
            .query_row(params![id.0, owner, now_ms, state, error], |row| row.get(0))
            .optional()?
        }
        // A retry is a run of its own, so it answers a pending rerun too.
        Finish::Retry { at_ms, error } => {
            return Ok(tx.execute(
                "UPDATE jobs SET state = 'queued', next_attempt_ms = ?3, owner = NULL, lease_expires_ms = NULL,
                     last_error = ?4, rerun = 0
                 WHERE id = ?1 AND owner = ?2 AND state = 'running'",
                params![id.0, owner, at_ms, error],
            )? == 1);
        }
        // Queued again, the attempt not counted: at once after a shutdown
        // (saying so), just behind the jobs due now after making way.
        Finish::Released | Finish::Yielded => {
            let (at_ms, error) = match finish {
                Finish::Released => (now_ms, Some("stopped by a shutdown; queued again")),
                _ => (now_ms + 1, None),
            };
            return Ok(tx.execute(
                "UPDATE jobs SET state = 'queued', next_attempt_ms = ?3, owner = NULL, lease_expires_ms = NULL,
                     attempts = max(attempts - 1, 0), last_error = coalesce(?4, last_error)
                 WHERE id = ?1 AND owner = ?2 AND state = 'running'",
                params![id.0, owner, at_ms, error],
            )? == 1);
        }
    };
    match rerun {
        None => return Ok(false),
        Some(0) => return Ok(true),
        Some(_) => {}
    }
    // One more run for the triggers that came while this one ran.
    tx.execute(
        "INSERT INTO jobs (kind, unique_key, payload, max_attempts, next_attempt_ms, created_ms)
         SELECT kind, unique_key, payload, max_attempts, ?2, ?2 FROM jobs WHERE id = ?1 AND rerun = 1",
        params![id.0, now_ms],
    )?;
    tx.execute("UPDATE jobs SET rerun = 0 WHERE id = ?1", [id.0])?;
    Ok(true)
}

fn sql_u64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn job_row(row: &Row<'_>) -> rusqlite::Result<JobRow> {
    let state: String = row.get(4)?;
    let count = |i: usize| -> rusqlite::Result<u32> {
        Ok(u32::try_from(row.get::<_, i64>(i)?).unwrap_or(u32::MAX))
    };
    let amount = |i: usize| -> rusqlite::Result<Option<u64>> {
        Ok(row
            .get::<_, Option<i64>>(i)?
            .map(|n| u64::try_from(n).unwrap_or(0)))
    };
    Ok(JobRow {
        id: JobId(row.get(0)?),
        kind: row.get(1)?,
        unique_key: row.get(2)?,
        payload: row.get(3)?,
        state: JobState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown job state {state:?}").into(),
            )
        })?,
        attempts: count(5)?,
        max_attempts: count(6)?,
        next_attempt_ms: row.get(7)?,
        owner: row.get(8)?,
        lease_expires_ms: row.get(9)?,
        rerun: row.get::<_, i64>(10)? != 0,
        cancel_requested: row.get::<_, i64>(11)? != 0,
        progress: amount(12)?,
        progress_total: amount(13)?,
        last_error: row.get(14)?,
        created_ms: row.get(15)?,
        started_ms: row.get(16)?,
        finished_ms: row.get(17)?,
        absorbed_by: row.get::<_, Option<i64>>(18)?.map(JobId),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        (dir, index)
    }

    fn job(kind: &str, key: Option<&str>) -> NewJob {
        NewJob {
            kind: kind.into(),
            unique_key: key.map(str::to_owned),
            payload: "{}".into(),
            max_attempts: 3,
            due_ms: 0,
            absorbs: None,
            absorbed_by: None,
        }
    }

    fn kinds(list: &[&str]) -> Vec<String> {
        list.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn one_live_job_per_key_and_a_trigger_while_it_runs_gives_exactly_one_more_run() {
        let (_dir, index) = index();
        let first = index
            .enqueue_job(&job("ingest", Some("ingest")), 1)
            .unwrap();
        let Enqueued::Queued(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            index
                .enqueue_job(&job("ingest", Some("ingest")), 2)
                .unwrap(),
            Enqueued::AlreadyQueued(id)
        );
        let claimed = index
            .claim_job("me", &kinds(&["ingest"]), 10, 1000, None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (claimed.id, claimed.attempts, claimed.state),
            (id, 1, JobState::Running)
        );
        for now in 0..1000 {
            assert_eq!(
                index
                    .enqueue_job(&job("ingest", Some("ingest")), 20 + now)
                    .unwrap(),
                Enqueued::RerunSet(id)
            );
        }
        assert!(index.finish_job(id, "me", &Finish::Done, 2000).unwrap());
        let queued = index.jobs(Some(JobState::Queued), 10).unwrap();
        assert_eq!(queued.len(), 1, "exactly one more run: {queued:?}");
        assert_ne!(queued[0].id, id);
        assert!(!index.job(id).unwrap().unwrap().rerun);
        // Without a trigger during it, the next run is the last.
        let next = index
            .claim_job("me", &kinds(&["ingest"]), 2001, 1000, None)
            .unwrap()
            .unwrap();
        assert!(
            index
                .finish_job(next.id, "me", &Finish::Done, 2002)
                .unwrap()
        );
        assert!(index.jobs(Some(JobState::Queued), 10).unwrap().is_empty());
    }

    #[test]
    fn the_unique_index_refuses_a_second_live_job_of_a_key() {
        let (_dir, index) = index();
        index.enqueue_job(&job("gc", Some("gc")), 1).unwrap();
        let raw = index.write(|tx| {
            tx.execute(
                "INSERT INTO jobs (kind, unique_key, next_attempt_ms, created_ms) VALUES ('gc', 'gc', 0, 0)",
                [],
            )
        });
        assert!(raw.is_err(), "a second live job of one key");
    }

    #[test]
    fn a_full_cleanup_absorbs_a_pending_gc_and_a_gc_is_absorbed_by_a_pending_cleanup() {
        let (_dir, index) = index();
        let gc = NewJob {
            absorbed_by: Some("cleanup".into()),
            ..job("gc", Some("gc"))
        };
        let full = NewJob {
            absorbs: Some("gc".into()),
            ..job("retention", Some("cleanup"))
        };
        let gc_id = index.enqueue_job(&gc, 1).unwrap().id();
        let full_id = index.enqueue_job(&full, 2).unwrap().id();
        let absorbed = index.job(gc_id).unwrap().unwrap();
        assert_eq!(absorbed.state, JobState::Cancelled);
        assert!(absorbed.last_error.unwrap().contains(&full_id.to_string()));
        assert_eq!(
            index.enqueue_job(&gc, 3).unwrap(),
            Enqueued::Absorbed(full_id)
        );
    }

    #[test]
    fn a_claim_takes_due_jobs_of_known_kinds_in_order_under_a_lease() {
        let (_dir, index) = index();
        let late = index
            .enqueue_job(
                &NewJob {
                    due_ms: 500,
                    ..job("ingest", None)
                },
                0,
            )
            .unwrap()
            .id();
        let early = index.enqueue_job(&job("ingest", None), 0).unwrap().id();
        index.enqueue_job(&job("export", None), 0).unwrap();
        let ingest = kinds(&["ingest"]);
        assert_eq!(index.next_job_due_ms(&ingest).unwrap(), Some(0));
        let first = index
            .claim_job("me", &ingest, 100, 50, None)
            .unwrap()
            .unwrap();
        assert_eq!((first.id, first.lease_expires_ms), (early, Some(150)));
        assert!(
            index
                .claim_job("me", &ingest, 100, 50, None)
                .unwrap()
                .is_none(),
            "not due yet"
        );
        assert_eq!(index.next_job_due_ms(&ingest).unwrap(), Some(500));
        assert_eq!(
            index
                .claim_job("me", &ingest, 500, 50, None)
                .unwrap()
                .unwrap()
                .id,
            late
        );
        // Heartbeats renew only the jobs named, and report cancel requests.
        assert!(
            index
                .heartbeat_jobs("me", &[early], 120, 50)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            index.job(early).unwrap().unwrap().lease_expires_ms,
            Some(170)
        );
        assert_eq!(
            index.cancel_job(early, 130).unwrap(),
            CancelOutcome::Requested
        );
        assert_eq!(
            index.heartbeat_jobs("me", &[early], 140, 50).unwrap(),
            [early]
        );
    }

    #[test]
    fn only_the_owner_finishes_a_job_and_retries_wait_out_their_backoff() {
        let (_dir, index) = index();
        let id = index.enqueue_job(&job("sync", None), 0).unwrap().id();
        let sync = kinds(&["sync"]);
        index.claim_job("me", &sync, 0, 50, None).unwrap().unwrap();
        assert!(
            !index
                .finish_job(id, "someone else", &Finish::Done, 1)
                .unwrap()
        );
        let retry = Finish::Retry {
            at_ms: 300,
            error: "busy".into(),
        };
        assert!(index.finish_job(id, "me", &retry, 1).unwrap());
        let row = index.job(id).unwrap().unwrap();
        assert_eq!(
            (row.state, row.next_attempt_ms, row.last_error.as_deref()),
            (JobState::Queued, 300, Some("busy"))
        );
        assert!(
            index
                .claim_job("me", &sync, 299, 50, None)
                .unwrap()
                .is_none()
        );
        index
            .claim_job("me", &sync, 300, 50, None)
            .unwrap()
            .unwrap();
        assert!(
            index
                .finish_job(
                    id,
                    "me",
                    &Finish::Failed {
                        error: "bad".into()
                    },
                    400
                )
                .unwrap()
        );
        assert_eq!(
            index.job_counts().unwrap(),
            JobCounts {
                queued: 0,
                running: 0,
                failed: 1
            }
        );
        assert_eq!(index.retry_job(id, 500).unwrap(), RetryOutcome::Requeued);
        let row = index.job(id).unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (JobState::Queued, 0));
    }

    #[test]
    fn a_released_job_is_queued_again_without_counting_the_attempt() {
        let (_dir, index) = index();
        let id = index.enqueue_job(&job("ingest", None), 0).unwrap().id();
        index
            .claim_job("me", &kinds(&["ingest"]), 0, 50, Some(id))
            .unwrap()
            .unwrap();
        assert!(index.finish_job(id, "me", &Finish::Released, 10).unwrap());
        let row = index.job(id).unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempts, row.owner),
            (JobState::Queued, 0, None)
        );
    }

    #[test]
    fn a_yielded_job_goes_behind_the_job_it_made_way_for_keeping_its_key_attempts_and_rerun() {
        let (_dir, index) = index();
        let lane = index
            .enqueue_job(&job("sync", Some("sync/*/0")), 0)
            .unwrap()
            .id();
        let ingest = kinds(&["sync", "ingest"]);
        assert_eq!(
            index
                .claim_job("me", &ingest, 5, 50, None)
                .unwrap()
                .unwrap()
                .id,
            lane
        );
        // Waiting while it runs: an ingest, and a trigger of the lane's key.
        let waiting = index.enqueue_job(&job("ingest", None), 10).unwrap().id();
        index
            .enqueue_job(&job("sync", Some("sync/*/0")), 10)
            .unwrap();
        let (yielded, next) = index
            .finish_and_claim_job(lane, "me", &Finish::Yielded, 20, &ingest, 50, None)
            .unwrap();
        assert!(yielded);
        assert_eq!(next.unwrap().id, waiting, "the waiting job runs first");
        let row = index.job(lane).unwrap().unwrap();
        assert_eq!(
            (row.state, row.attempts, row.rerun, row.last_error),
            (JobState::Queued, 0, true, None)
        );
        let (_, next) = index
            .finish_and_claim_job(waiting, "me", &Finish::Done, 30, &ingest, 50, None)
            .unwrap();
        assert_eq!(next.unwrap().id, lane, "then the lane carries on");
    }

    #[test]
    fn jobs_of_a_dead_owner_or_an_expired_lease_are_recovered_and_used_up_ones_fail() {
        let (_dir, index) = index();
        let a = index.enqueue_job(&job("ingest", None), 0).unwrap().id();
        let b = index
            .enqueue_job(
                &NewJob {
                    max_attempts: 1,
                    ..job("ingest", None)
                },
                0,
            )
            .unwrap()
            .id();
        let c = index.enqueue_job(&job("ingest", None), 0).unwrap().id();
        let ingest = kinds(&["ingest"]);
        index
            .claim_job("dead", &ingest, 0, 10_000, Some(a))
            .unwrap();
        index
            .claim_job("dead", &ingest, 0, 10_000, Some(b))
            .unwrap();
        index.claim_job("alive", &ingest, 0, 100, Some(c)).unwrap();
        assert_eq!(
            index.job_owners().unwrap(),
            [("alive".to_owned(), 100), ("dead".to_owned(), 10_000)]
        );
        assert_eq!(index.recover_jobs(Some("dead"), 50).unwrap(), (1, 1));
        assert_eq!(index.job(a).unwrap().unwrap().state, JobState::Queued);
        assert_eq!(index.job(b).unwrap().unwrap().state, JobState::Failed);
        assert_eq!(
            index.recover_jobs(None, 99).unwrap(),
            (0, 0),
            "c's lease still runs"
        );
        assert_eq!(index.recover_jobs(None, 101).unwrap(), (1, 0));
        assert_eq!(index.job(c).unwrap().unwrap().state, JobState::Queued);
    }
}
