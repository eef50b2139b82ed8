//! The `sync` handler: one lane of a sync. It takes one due row at a time
//! from the index (the claim is the hand-off: a row waits in SQLite, never
//! in memory), uploads the file with the destination's plugin, verifies the
//! sha256 the plugin reports, and records the outcome: `synced`, a retry
//! after the engine's backoff (transient), or `failed` for good
//! (terminal), logged once with an `events` row. Each attempt is a fresh
//! plugin call that reads the file from its first byte. Between two files
//! a lane makes way for a job waiting for a worker once it has run for
//! `jobs.time_slice_ms`, and carries on after it.
//!
//! What lanes share (one handler serves them all): each destination's last
//! known reachability, logged once per change, and the throughput counters
//! logged every `sync.log_interval_ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Destination, SyncPayload, Uploaders, probe, register_destinations, resolve};
use crate::config::{Config, SyncConfig};
use crate::index::{DestinationId, FileId, Index, SyncClaim, SyncOutcome, now_ms};
use crate::jobs::{
    Backoff, FailureClass, Handler, JobContext, JobError, Retry, SharedConfig, in_force,
    next_attempt,
};
use crate::runtime::{CallError, CallFile, ErrorClass};
use crate::store::{self, DataDir};

/// A lane that finds nothing due waits for a row due this soon rather
/// than ending, so short backoffs are kept without a new job.
const SHORT_WAIT: Duration = Duration::from_secs(1);

/// How often a sync gives rows to every file of the index rather than to
/// those indexed since the last pass.
const FULL_PASS: Duration = Duration::from_secs(600);

/// The `sync` job kind.
pub struct SyncJob {
    data_dir: DataDir,
    index: Arc<Index>,
    config: SharedConfig,
    uploaders: Arc<Uploaders>,
    monitor: Monitor,
    /// The destinations the last pass gave rows, the largest file id it
    /// saw, and when the last full pass was.
    covered: Mutex<Option<(Vec<DestinationId>, FileId, Instant)>>,
}

impl SyncJob {
    pub fn new(
        data_dir: DataDir,
        index: Arc<Index>,
        config: SharedConfig,
        uploaders: Arc<Uploaders>,
    ) -> SyncJob {
        SyncJob {
            data_dir,
            index,
            config,
            uploaders,
            monitor: Monitor::default(),
            covered: Mutex::new(None),
        }
    }

    /// The destinations this lane serves, by index id: resolved, with a
    /// loaded plugin, and reachable. The others are logged (once per change)
    /// and their rows wait for a later sync.
    fn usable(
        &self,
        config: &Config,
        payload: &SyncPayload,
    ) -> Result<BTreeMap<DestinationId, Destination>, JobError> {
        if let Some(name) = &payload.destination
            && !config.destinations.iter().any(|d| &d.name == name)
        {
            return Err(JobError::Terminal(anyhow::anyhow!(
                "no [[destination]] is named {name:?} in wharf.toml"
            )));
        }
        let ids = register_destinations(&self.index, config).map_err(JobError::Transient)?;
        let resolved = resolve(config, payload.destination.as_deref());
        for (name, error) in &resolved.errors {
            self.monitor.reachability(name, Err(error));
        }
        let mut usable = BTreeMap::new();
        for destination in resolved.destinations {
            let Some(&id) = ids.get(&destination.name) else {
                continue;
            };
            if self.uploaders.get(&destination.plugin).is_none() {
                let error = format!(
                    "destination {}: no uploader plugin named {} is loaded (loaded: {}); see `wharf plugin list`",
                    destination.name,
                    destination.plugin,
                    self.uploaders.names().join(", ")
                );
                self.monitor.reachability(&destination.name, Err(&error));
                continue;
            }
            if let Err(error) = probe(&destination) {
                self.monitor.reachability(&destination.name, Err(&error));
                continue;
            }
            self.monitor.reachability(&destination.name, Ok(()));
            usable.insert(id, destination);
        }
        Ok(usable)
    }

    /// One attempt at `claim`, and what it ended as.
    fn attempt(
        &self,
        claim: &SyncClaim,
        destination: &Destination,
        sync: &SyncConfig,
        backoff: &Backoff,
    ) -> SyncOutcome {
        let retry_or_fail = |error: String, class: FailureClass, hint: Option<Duration>| {
            let attempts = claim.attempts.saturating_add(1);
            match next_attempt(attempts, sync.max_attempts, class, backoff, fastrand::f64()) {
                Retry::After(delay) => {
                    let delay = hint.map_or(delay, |hint| delay.max(hint).min(backoff.cap));
                    SyncOutcome::Retry {
                        error,
                        next_attempt_ms: now_ms()
                            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
                    }
                }
                Retry::GiveUp if class == FailureClass::Transient => SyncOutcome::Failed {
                    error: format!(
                        "{error} (gave up after {attempts} attempts; sync.max_attempts)"
                    ),
                },
                Retry::GiveUp => SyncOutcome::Failed { error },
            }
        };
        let Some(plugin) = self.uploaders.get(&destination.plugin) else {
            return retry_or_fail(
                format!("the uploader plugin {} is not loaded", destination.plugin),
                FailureClass::Transient,
                None,
            );
        };
        let path = match self.data_dir.resolve(&claim.path) {
            Ok(path) => path,
            Err(reason) => {
                return SyncOutcome::Failed {
                    error: format!("{}: {reason}", claim.path),
                };
            }
        };
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == claim.size => {}
            Ok(meta) => {
                return SyncOutcome::Failed {
                    error: format!(
                        "{} is {} bytes on disk, {} in the index: it changed; run `wharf fsck`",
                        claim.path,
                        meta.len(),
                        claim.size
                    ),
                };
            }
            Err(err) => {
                return retry_or_fail(
                    format!(
                        "{} cannot be read: {err}; run `wharf fsck` if it is gone",
                        claim.path
                    ),
                    FailureClass::Transient,
                    None,
                );
            }
        }
        let file = CallFile {
            name: claim
                .path
                .strip_prefix(store::FILES)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(&claim.path)
                .to_owned(),
            size: claim.size,
            sha256: claim.sha256.clone(),
            kind: claim.kind.clone(),
            created_ms: claim.created_ms,
            modified_ms: claim.mtime_ms,
            remote_copies: Vec::new(),
            path,
        };
        match plugin.upload(&file, &destination.target, &destination.params) {
            Ok(result) => match result.remote_sha256 {
                Some(remote) if remote.eq_ignore_ascii_case(&claim.sha256) => SyncOutcome::Synced {
                    remote_ref: result.remote_ref,
                    sha256: claim.sha256.clone(),
                },
                Some(remote) => retry_or_fail(
                    format!(
                        "the stored copy at {} has sha256 {remote}, the file {}: it is sent again from its first byte",
                        result.remote_ref, claim.sha256
                    ),
                    FailureClass::Transient,
                    None,
                ),
                None => SyncOutcome::Failed {
                    error: format!(
                        "plugin {} reported no sha256 of the stored copy {}, so it cannot be verified; use a plugin or destination that reports one",
                        destination.plugin, result.remote_ref
                    ),
                },
            },
            Err(CallError::Quarantined(traps)) => {
                let error = format!(
                    "destination {}: plugin {} is quarantined after {traps} consecutive traps; fix it and reload plugins (SIGHUP)",
                    destination.name, destination.plugin
                );
                self.monitor.reachability(&destination.name, Err(&error));
                SyncOutcome::Released
            }
            Err(error) => {
                let message = format!("plugin {} {error}", destination.plugin);
                match (&error, error.class()) {
                    (CallError::Transient { retry_after, .. }, _) => {
                        retry_or_fail(message, FailureClass::Transient, *retry_after)
                    }
                    // A call that ran out of time (a stalled network) is
                    // worth another try, from the first byte.
                    (CallError::Deadline(_), _) | (_, ErrorClass::Transient) => {
                        retry_or_fail(message, FailureClass::Transient, None)
                    }
                    _ => retry_or_fail(message, FailureClass::Terminal, None),
                }
            }
        }
    }
}

impl Handler for SyncJob {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        let config = in_force(&self.config).clone();
        let payload: SyncPayload = serde_json::from_str(job.payload).map_err(|err| {
            JobError::Terminal(anyhow::anyhow!("a sync job's payload is not valid: {err}"))
        })?;
        let mut usable = self.usable(&config, &payload)?;
        if usable.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<DestinationId> = usable.keys().copied().collect();
        let now = now_ms();
        self.add_missing(&ids, now)?;
        let recovered = self
            .index
            .sync_recover(&ids, job.id, now)
            .map_err(JobError::Transient)?;
        if recovered > 0 {
            tracing::info!(
                job_id = job.id.0,
                recovered,
                "uploads a stopped sync left in progress are queued again"
            );
        }
        let backoff = Backoff {
            base: Duration::from_millis(config.jobs.backoff_base_ms),
            cap: Duration::from_millis(config.jobs.backoff_cap_ms),
        };
        let quiet_ms = i64::try_from(config.sync.file_last_modified_ms).unwrap_or(i64::MAX);
        let mut done = 0u64;
        loop {
            if job.cancelled() {
                return Err(JobError::Cancelled);
            }
            // Between two files, nothing is in flight: a waiting ingest,
            // cleanup or export takes the worker, and this lane carries on
            // after it with the rows still due.
            if job.should_yield() {
                return Err(JobError::Yielded);
            }
            let now = now_ms();
            let claim = self
                .index
                .sync_claim(&ids, job.id, now, now.saturating_sub(quiet_ms))
                .map_err(JobError::Transient)?;
            let Some(claim) = claim else {
                // A retry due within SHORT_WAIT is waited for here; later
                // ones are the next sync's.
                let now = now_ms();
                match self
                    .index
                    .sync_next_due(&ids, now)
                    .map_err(JobError::Transient)?
                {
                    Some(due) if due - now <= SHORT_WAIT.as_millis() as i64 => {
                        let wait = u64::try_from(due - now).unwrap_or(0).clamp(1, 1000);
                        std::thread::sleep(Duration::from_millis(wait));
                        continue;
                    }
                    _ => break,
                }
            };
            let Some(destination) = usable.get(&claim.destination_id) else {
                continue;
            };
            let started = Instant::now();
            let outcome = self.attempt(&claim, destination, &config.sync, &backoff);
            let recorded = self
                .index
                .sync_finish(&claim, job.id, &outcome, now_ms())
                .map_err(JobError::Transient)?;
            if recorded {
                self.report(
                    job,
                    &claim,
                    destination,
                    &outcome,
                    started.elapsed(),
                    &config.sync,
                );
            }
            if outcome == SyncOutcome::Released {
                // The destination cannot take files now (its plugin is
                // quarantined): its rows wait for the next sync.
                usable.remove(&claim.destination_id);
                ids.retain(|id| *id != claim.destination_id);
                if ids.is_empty() {
                    break;
                }
            }
            done += 1;
            job.progress(done, None);
        }
        Ok(())
    }
}

impl SyncJob {
    /// Gives every new file its rows: a full pass over the index when the
    /// destinations changed or `FULL_PASS` has passed (catching files that
    /// became ready again, e.g. after `wharf fsck --repair`), otherwise only
    /// the files indexed since the last pass, so a sync of a large index
    /// does not scan it every time.
    fn add_missing(&self, ids: &[DestinationId], now: i64) -> Result<(), JobError> {
        let mut covered = self.covered.lock().unwrap_or_else(PoisonError::into_inner);
        let after = match &*covered {
            Some((same, last, at)) if same == ids && at.elapsed() < FULL_PASS => Some(*last),
            _ => None,
        };
        let (_, last) = self
            .index
            .sync_add_missing(ids, after, now)
            .map_err(JobError::Transient)?;
        let at = match (&*covered, after) {
            (Some((_, _, at)), Some(_)) => *at,
            _ => Instant::now(),
        };
        *covered = Some((ids.to_vec(), last, at));
        Ok(())
    }

    /// Logs what an attempt changed: a terminal failure once (with its
    /// `events` row), a destination's reachability on a change, and the
    /// throughput when its interval has passed.
    fn report(
        &self,
        job: &JobContext<'_>,
        claim: &SyncClaim,
        destination: &Destination,
        outcome: &SyncOutcome,
        took: Duration,
        sync: &SyncConfig,
    ) {
        match outcome {
            SyncOutcome::Synced { .. } => {
                self.monitor.reachability(&destination.name, Ok(()));
                self.monitor.count(claim.size, false);
            }
            SyncOutcome::Retry { error, .. } => {
                self.monitor.reachability(&destination.name, Err(error));
                tracing::debug!(destination = %destination.name, path = %claim.path, error = %error, "sync attempt failed; retried later");
                self.monitor.count(0, true);
            }
            SyncOutcome::Failed { error } => {
                tracing::error!(job_id = job.id.0, destination = %destination.name, plugin = %destination.plugin, path = %claim.path, error = %error, "sync failed for good; `wharf sync retry-failed` tries again");
                let message = format!("sync of {} to {}: {error}", claim.path, destination.name);
                if let Err(err) = self.index.record_event(
                    "failed",
                    Some(job.id),
                    Some(&destination.plugin),
                    &message,
                ) {
                    tracing::error!(error = %format!("{err:#}"), "cannot record an event");
                }
                self.monitor.count(0, true);
            }
            SyncOutcome::Released => {}
        }
        tracing::trace!(path = %claim.path, took_ms = took.as_millis() as u64, "sync attempt");
        self.monitor
            .log_throughput(Duration::from_millis(sync.log_interval_ms));
    }
}

/// What the lanes of one handler share.
#[derive(Default)]
struct Monitor {
    /// Destination → whether it was reachable at the last look.
    reachable: Mutex<HashMap<String, bool>>,
    throughput: Mutex<Throughput>,
}

struct Throughput {
    since: Instant,
    files: u64,
    bytes: u64,
    failures: u64,
}

impl Default for Throughput {
    fn default() -> Self {
        Throughput {
            since: Instant::now(),
            files: 0,
            bytes: 0,
            failures: 0,
        }
    }
}

impl Monitor {
    /// Records `name`'s reachability, logging only a change.
    fn reachability(&self, name: &str, now: Result<(), &String>) {
        let reachable = now.is_ok();
        let before = self
            .reachable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), reachable);
        if before == Some(reachable) {
            return;
        }
        match now {
            Ok(()) if before.is_some() => {
                tracing::info!(destination = %name, "destination reachable again; syncing resumes");
            }
            Ok(()) => tracing::debug!(destination = %name, "destination reachable"),
            Err(error) => {
                tracing::warn!(destination = %name, error = %error, "destination unreachable; its files wait and are retried")
            }
        }
    }

    fn count(&self, bytes: u64, failed: bool) {
        let mut throughput = self
            .throughput
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failed {
            throughput.failures += 1;
        } else {
            throughput.files += 1;
            throughput.bytes += bytes;
        }
    }

    /// Logs and restarts the counters once `every` has passed since the
    /// last time, if anything happened.
    fn log_throughput(&self, every: Duration) {
        let mut throughput = self
            .throughput
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let elapsed = throughput.since.elapsed();
        if elapsed < every {
            return;
        }
        if throughput.files + throughput.failures > 0 {
            let seconds = elapsed.as_secs_f64().max(0.001);
            tracing::info!(
                files = throughput.files,
                bytes = throughput.bytes,
                mib_per_s = format!(
                    "{:.1}",
                    throughput.bytes as f64 / seconds / (1 << 20) as f64
                ),
                files_per_s = format!("{:.1}", throughput.files as f64 / seconds),
                failures = throughput.failures,
                seconds = format!("{seconds:.0}"),
                "sync throughput"
            );
        }
        *throughput = Throughput::default();
    }
}
