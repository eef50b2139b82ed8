//! The handlers of the built-in job kinds. `ingest` scans the inbox;
//! `cleanup` finishes interrupted deletions, runs every configured
//! retention policy, then orphan GC; `gc` finishes interrupted deletions and
//! runs orphan GC only; an ingest that added files queues a sync. `export`
//! and `sync` (`crate::sync::SyncJob`) are registered by the daemon.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use super::{CLEANUP, GC, Handler, Handlers, INGEST, JobContext, JobError, Queue};
use crate::config::Config;
use crate::index::Index;
use crate::ingest::{self, IngestOptions, Outcome, Progress};
use crate::retention::{self, RetentionError};
use crate::runtime::Runtime;
use crate::store::DataDir;
use crate::{gc, plugins};

/// The configuration in force, replaced as a whole on reload.
pub type SharedConfig = Arc<RwLock<Config>>;

/// Reads the configuration in force. It is only ever replaced as a whole,
/// so even a lock poisoned by a panicking holder guards a whole config.
pub fn in_force(config: &SharedConfig) -> RwLockReadGuard<'_, Config> {
    config.read().unwrap_or_else(PoisonError::into_inner)
}

/// The handlers every daemon (and the CLI's in-process `--wait`) registers.
pub fn standard_handlers(data_dir: DataDir, index: Arc<Index>, config: SharedConfig) -> Handlers {
    let mut handlers = Handlers::new();
    handlers.register(INGEST, Arc::new(IngestJob::new(data_dir, index, config)));
    handlers
}

/// The cleanup kinds, `cleanup` and `gc`, which need the plugin runtime.
pub fn cleanup_handlers(
    data_dir: DataDir,
    index: Arc<Index>,
    config: SharedConfig,
    runtime: Runtime,
) -> Handlers {
    let mut handlers = Handlers::new();
    let job = |gc_only| {
        Arc::new(CleanupJob {
            data_dir: data_dir.clone(),
            index: index.clone(),
            config: config.clone(),
            runtime: runtime.clone(),
            gc_only,
        })
    };
    handlers.register(CLEANUP, job(false));
    handlers.register(GC, job(true));
    handlers
}

/// `cleanup` (every policy, then orphan GC) and `gc` (orphan GC only). Both
/// first finish deletions a crash interrupted. A failing policy is recorded
/// (an `events` row of kind `failed`) and the others still run; the job
/// then fails with every policy's error.
pub struct CleanupJob {
    data_dir: DataDir,
    index: Arc<Index>,
    config: SharedConfig,
    runtime: Runtime,
    gc_only: bool,
}

impl CleanupJob {
    /// Runs the configured policies; returns their errors, and whether any
    /// is worth retrying.
    fn policies(
        &self,
        job: &JobContext<'_>,
        config: &Config,
    ) -> Result<Vec<(String, bool)>, JobError> {
        let mut failures = Vec::new();
        if config.cleanup.policies.is_empty() {
            return Ok(failures);
        }
        // The index's destinations follow wharf.toml before any deletion, so
        // a `required` destination holds back files not yet synced to it
        // even when no sync has run since it was configured.
        crate::sync::register_destinations(&self.index, config).map_err(JobError::Transient)?;
        // The plugins as pinned now: a manifest's sha256 pin holds, so this
        // is the set the daemon would load.
        let loaded = plugins::load_all(&self.runtime, config, &self.data_dir.plugins_dir());
        let policies = match retention::resolve_policies(config, &loaded.registry) {
            Ok(policies) => policies,
            Err(error) => {
                let message = format!("cleanup policies not run: {error}");
                self.event("failed", job, None, &message);
                failures.push((message, false));
                return Ok(failures);
            }
        };
        let cancel = job.cancel_flag();
        for policy in &policies {
            match retention::run_policy(
                &self.index,
                &self.data_dir,
                policy,
                &config.cleanup,
                Some(job.id),
                &cancel,
            ) {
                Ok(report) => {
                    let applied = &report.applied;
                    tracing::info!(
                        policy = %report.policy,
                        plugin = %report.plugin,
                        candidates = report.candidates,
                        planned = report.planned,
                        deleted = applied.deleted,
                        deleted_bytes = applied.deleted_bytes,
                        refused = applied.refused.total(),
                        "retention policy applied"
                    );
                    let refused = applied.refused;
                    self.event(
                        "retention",
                        job,
                        Some(&report.plugin),
                        &format!(
                            "policy {}: {} candidates, {} planned, {} deleted ({} bytes); refused: {} leased, {} export-held, {} unsynced, {} not ready, {} gone",
                            report.policy, report.candidates, report.planned, applied.deleted, applied.deleted_bytes,
                            refused.leased, refused.export_held, refused.unsynced, refused.not_ready, refused.gone
                        ),
                    );
                    for failed in &applied.unlink_failed {
                        tracing::warn!(policy = %report.policy, error = %failed, "file marked deleting but not unlinked; the next cleanup retries");
                    }
                }
                Err(RetentionError::Cancelled) => return Err(JobError::Cancelled),
                Err(error) => {
                    let message = format!("policy {}: {error}", policy.name);
                    tracing::error!(policy = %policy.name, error = %error, "retention policy stopped");
                    self.event("failed", job, Some(&policy.plugin.name), &message);
                    failures.push((message, error.is_transient()));
                }
            }
        }
        Ok(failures)
    }

    fn event(&self, kind: &str, job: &JobContext<'_>, plugin: Option<&str>, message: &str) {
        if let Err(error) = self.index.record_event(kind, Some(job.id), plugin, message) {
            tracing::error!(error = %format!("{error:#}"), message, "cannot record an event");
        }
    }
}

impl Handler for CleanupJob {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        let config = in_force(&self.config).clone();
        let finished = retention::finish_deletions(&self.index, &self.data_dir)
            .map_err(JobError::Transient)?;
        if !finished.finished.is_empty() || !finished.failed.is_empty() {
            tracing::info!(
                finished = finished.finished.len(),
                failed = finished.failed.len(),
                "interrupted deletions finished"
            );
        }
        let failures = if self.gc_only {
            Vec::new()
        } else {
            self.policies(job, &config)?
        };
        let cancel = job.cancel_flag();
        let report = gc::collect(
            &self.data_dir,
            &self.index,
            config.cleanup.orphan_lifetime_ms,
            gc::Untracked::from_config(config.cleanup.remove_untracked_files),
            &cancel,
        )
        .map_err(JobError::Transient)?;
        if !report.untracked.is_empty() {
            tracing::warn!(
                untracked = report.untracked.len(),
                first = %report.untracked[0],
                "untracked files in the data directory's tracked area, left in place: run `wharf fsck --repair` to index them"
            );
        }
        for path in &report.removed {
            self.event("orphan-removed", job, None, path);
        }
        if !report.removed.is_empty() || !report.errors.is_empty() {
            tracing::info!(
                removed = report.removed.len(),
                bytes = report.removed_bytes,
                spared = report.spared.len(),
                errors = report.errors.len(),
                "orphan GC"
            );
        }
        for error in &report.errors {
            tracing::warn!(error = %error, "orphan GC could not judge or remove an entry");
        }
        if report.cancelled || job.cancelled() {
            return Err(JobError::Cancelled);
        }
        if failures.is_empty() {
            return Ok(());
        }
        let transient = failures.iter().any(|(_, transient)| *transient);
        let message = anyhow::anyhow!(
            "{}",
            failures
                .into_iter()
                .map(|(m, _)| m)
                .collect::<Vec<_>>()
                .join("; ")
        );
        Err(if transient {
            JobError::Transient(message)
        } else {
            JobError::Terminal(message)
        })
    }
}

/// `ingest`: one scan of the inbox. A scan cancelled (shutdown, user)
/// leaves the files it did not finish in the inbox for the next one.
pub struct IngestJob {
    data_dir: DataDir,
    index: Arc<Index>,
    config: SharedConfig,
    /// Failures the last scan logged, so each is logged once, not every scan.
    failures: Mutex<HashSet<(PathBuf, String)>>,
}

impl IngestJob {
    pub fn new(data_dir: DataDir, index: Arc<Index>, config: SharedConfig) -> IngestJob {
        IngestJob {
            data_dir,
            index,
            config,
            failures: Mutex::new(HashSet::new()),
        }
    }

    /// Files were added: a sync follows, if destinations are configured.
    fn sync_new_files(&self) {
        let config = in_force(&self.config);
        if config.destinations.is_empty() {
            return;
        }
        let requests = crate::sync::requests(config.sync.worker_count(), None);
        if let Err(error) = Queue::new(self.index.clone(), &config.jobs).enqueue_many(&requests) {
            tracing::error!(error = %format!("{error:#}"), "cannot queue a sync of the ingested files");
        }
    }

    fn log(&self, report: ingest::Report) {
        let recovered = &report.recovered;
        if !recovered.is_empty() {
            tracing::info!(
                indexed = recovered.indexed.len(),
                copies_removed = recovered.copies_removed,
                bytes_removed = recovered.copies_removed_bytes,
                problems = ?recovered.problems,
                "finished what an interrupted ingest left"
            );
        }
        let counts = report.counts();
        if counts.ingested > 0 {
            tracing::info!(
                files = counts.ingested,
                bytes = counts.ingested_bytes,
                duplicates = counts.duplicates,
                skipped = counts.skipped,
                failed = counts.failed,
                "inbox files ingested"
            );
        }
        let mut last = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let mut failures = HashSet::new();
        for file in report.files {
            let source = file.source;
            match file.outcome {
                Outcome::Ingested { ref path, .. } => {
                    tracing::debug!(source = %source.display(), path = %path, "ingested");
                }
                Outcome::Duplicate { ref path } => {
                    let key = (source, format!("duplicate of {path}"));
                    if !last.contains(&key) {
                        tracing::warn!(source = %key.0.display(), path = %path, "inbox file already in the store; left in the inbox");
                    }
                    failures.insert(key);
                }
                Outcome::Skipped(skip) => {
                    tracing::debug!(source = %source.display(), reason = %skip, "inbox file skipped for now");
                }
                Outcome::Failed(reason) => {
                    let key = (source, reason.to_string());
                    if !last.contains(&key) {
                        tracing::warn!(source = %key.0.display(), error = %key.1, "inbox file not ingested");
                    }
                    failures.insert(key);
                }
            }
        }
        *last = failures;
    }
}

/// Bytes read of the scan's total, as job progress; and where the scan
/// learns that it should make way for a waiting job.
struct ScanProgress<'a> {
    job: &'a JobContext<'a>,
    done: AtomicU64,
    total: AtomicU64,
    /// The scan's `pause`.
    pause: &'a AtomicBool,
}

impl Progress for ScanProgress<'_> {
    fn planned(&self, _files: u64, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
        self.job.progress(0, Some(bytes));
    }

    fn advanced(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.job
            .progress(done, Some(self.total.load(Ordering::Relaxed)));
        if !self.pause.load(Ordering::Relaxed) && self.job.should_yield() {
            self.pause.store(true, Ordering::Relaxed);
        }
    }
}

impl Handler for IngestJob {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        let ingest_config = in_force(&self.config).ingest.clone();
        let mut options = IngestOptions::new(&ingest_config);
        options.cancel = job.cancel_flag();
        let progress = ScanProgress {
            job,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            pause: &options.pause,
        };
        let report = ingest::scan_inbox(&self.data_dir, &self.index, &options, &progress)
            .map_err(JobError::Transient)?;
        let ingested = report.counts().ingested;
        self.log(report);
        if ingested > 0 {
            self.sync_new_files();
        }
        if job.cancelled() {
            return Err(JobError::Cancelled);
        }
        // The files left in the inbox are the next run's, after the job
        // this one made way for.
        if options.pause.load(Ordering::Relaxed) {
            return Err(JobError::Yielded);
        }
        Ok(())
    }
}
