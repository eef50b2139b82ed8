//! The handlers of the built-in job kinds. `ingest` scans the inbox; the
//! cleanup kinds (`retention`, `gc`), `export` and `sync` register theirs
//! when they arrive.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::{Handler, Handlers, INGEST, JobContext, JobError};
use crate::config::Config;
use crate::index::Index;
use crate::ingest::{self, IngestOptions, Outcome, Progress};
use crate::store::DataDir;

/// The configuration in force, replaced as a whole on reload.
pub type SharedConfig = Arc<RwLock<Config>>;

/// The handlers every daemon (and the CLI's in-process `--wait`) registers.
pub fn standard_handlers(data_dir: DataDir, index: Arc<Index>, config: SharedConfig) -> Handlers {
    let mut handlers = Handlers::new();
    handlers.register(INGEST, Arc::new(IngestJob::new(data_dir, index, config)));
    handlers
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

    fn log(&self, report: ingest::Report) {
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

/// Bytes read of the scan's total, as job progress.
struct ScanProgress<'a> {
    job: &'a JobContext<'a>,
    done: AtomicU64,
    total: AtomicU64,
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
    }
}

impl Handler for IngestJob {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        let ingest_config = self
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .ingest
            .clone();
        let mut options = IngestOptions::new(&ingest_config);
        options.cancel = job.cancel_flag();
        let progress = ScanProgress {
            job,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        };
        let report = ingest::scan_inbox(&self.data_dir, &self.index, &options, &progress)
            .map_err(JobError::Transient)?;
        self.log(report);
        if job.cancelled() {
            return Err(JobError::Cancelled);
        }
        Ok(())
    }
}
