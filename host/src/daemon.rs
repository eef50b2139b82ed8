//! `wharf run`: opens the data directory, the index and the plugins, and
//! serves until shutdown. Later the scheduler and workers start here.
//!
//! SIGHUP reloads the configuration and the plugins atomically: the new set
//! replaces the old one only if everything in it loaded; otherwise the last
//! good set stays and the errors are logged. A reload also lifts quarantines.
//!
//! Every `[ingest] scan_interval_ms` the inbox is scanned on a blocking
//! thread, one scan at a time; shutdown cancels a running scan (files not
//! finished stay in the inbox) and waits for it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};

use crate::config::Config;
use crate::index::{Index, now_ms};
use crate::ingest::{self, IngestOptions, Outcome, Report};
use crate::plugins::{self, LoadReport};
use crate::runtime::Runtime;
use crate::store::DataDir;

/// What makes the daemon reload or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Reload,
    Shutdown,
}

/// Runs the daemon until `signals` yields `Shutdown` or closes.
pub async fn run(
    data_dir: DataDir,
    config: Config,
    mut signals: Receiver<Signal>,
) -> anyhow::Result<()> {
    data_dir.create().with_context(|| {
        format!(
            "cannot create the data directory {}",
            data_dir.root().display()
        )
    })?;
    let index = Index::open(&data_dir.index_path())
        .with_context(|| format!("cannot open the index {}", data_dir.index_path().display()))?;
    let index = Arc::new(index);
    let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let mut config = config;
    let mut loaded = load(&runtime, &config, &data_dir, &index)?;
    for error in &loaded.errors {
        tracing::error!(error = %error, "plugin not loaded");
    }
    tracing::info!(
        data_dir = %data_dir.root().display(),
        plugins = loaded.registry.len(),
        pid = std::process::id(),
        "wharf running; send SIGHUP to reload plugins, SIGTERM to stop"
    );
    let mut inbox = Inbox::new(data_dir.clone(), index.clone());
    let mut ticks = scan_interval(&config);
    loop {
        tokio::select! {
            signal = signals.recv() => match signal.unwrap_or(Signal::Shutdown) {
                Signal::Shutdown => break,
                Signal::Reload => match reload(&runtime, &data_dir, &index) {
                    Ok((new_config, report)) => {
                        tracing::info!(
                            plugins = report.registry.len(),
                            "configuration and plugins reloaded"
                        );
                        if new_config.ingest.scan_interval_ms != config.ingest.scan_interval_ms {
                            ticks = scan_interval(&new_config);
                        }
                        config = new_config;
                        loaded = report;
                    }
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "reload failed; keeping the running configuration and plugins");
                    }
                },
            },
            _ = ticks.tick(), if inbox.scan.is_none() => inbox.start(&config),
            result = Inbox::finished(&mut inbox.scan) => {
                inbox.scan = None;
                inbox.log(result);
            }
        }
    }
    inbox.stop().await;
    tracing::info!(
        plugins = loaded.registry.len(),
        quarantine_after = config.plugins.quarantine_after,
        "wharf stopped"
    );
    Ok(())
}

fn scan_interval(config: &Config) -> Interval {
    let period = Duration::from_millis(config.ingest.scan_interval_ms.max(1));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// The inbox scans: at most one at a time, on a blocking thread.
struct Inbox {
    data_dir: DataDir,
    index: Arc<Index>,
    scan: Option<JoinHandle<anyhow::Result<Report>>>,
    cancel: Arc<AtomicBool>,
    /// Failures the last scan logged, so each is logged once, not every scan.
    failures: HashSet<(PathBuf, String)>,
}

impl Inbox {
    fn new(data_dir: DataDir, index: Arc<Index>) -> Inbox {
        Inbox {
            data_dir,
            index,
            scan: None,
            cancel: Arc::new(AtomicBool::new(false)),
            failures: HashSet::new(),
        }
    }

    fn start(&mut self, config: &Config) {
        let mut options = IngestOptions::new(&config.ingest);
        options.cancel = self.cancel.clone();
        let (data_dir, index) = (self.data_dir.clone(), self.index.clone());
        self.scan = Some(tokio::task::spawn_blocking(move || {
            ingest::scan_inbox(&data_dir, &index, &options, &ingest::NoProgress)
        }));
    }

    /// Waits for the running scan; never completes when none runs.
    async fn finished(
        scan: &mut Option<JoinHandle<anyhow::Result<Report>>>,
    ) -> anyhow::Result<Report> {
        match scan.as_mut() {
            Some(handle) => handle.await.context("the inbox scan panicked")?,
            None => std::future::pending().await,
        }
    }

    fn log(&mut self, result: anyhow::Result<Report>) {
        let report = match result {
            Ok(report) => report,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "inbox scan failed; retrying at the next scan");
                return;
            }
        };
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
        let mut failures = HashSet::new();
        for file in report.files {
            match file.outcome {
                Outcome::Ingested { ref path, .. } => {
                    tracing::debug!(source = %file.source.display(), path = %path, "ingested");
                }
                Outcome::Duplicate { ref path } => {
                    let key = (file.source, format!("duplicate of {path}"));
                    if !self.failures.contains(&key) {
                        tracing::warn!(source = %key.0.display(), path = %path, "inbox file already in the store; left in the inbox");
                    }
                    failures.insert(key);
                }
                Outcome::Skipped(reason) => {
                    tracing::debug!(source = %file.source.display(), reason = %reason, "inbox file skipped for now");
                }
                Outcome::Failed(reason) => {
                    let key = (file.source, reason.to_string());
                    if !self.failures.contains(&key) {
                        tracing::warn!(source = %key.0.display(), error = %key.1, "inbox file not ingested");
                    }
                    failures.insert(key);
                }
            }
        }
        self.failures = failures;
    }

    /// Cancels a running scan and waits for it to wind down.
    async fn stop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(scan) = self.scan.take() {
            match scan.await {
                Ok(result) => self.log(result),
                Err(error) => tracing::error!(error = %error, "the inbox scan panicked"),
            }
        }
    }
}

fn load(
    runtime: &Runtime,
    config: &Config,
    data_dir: &DataDir,
    index: &Index,
) -> anyhow::Result<LoadReport> {
    let report = plugins::load_all(runtime, config, &data_dir.plugins_dir());
    index.record_plugins(&report.rows(), now_ms())?;
    Ok(report)
}

/// A new configuration and plugin set, or an error if any part failed.
fn reload(
    runtime: &Runtime,
    data_dir: &DataDir,
    index: &Index,
) -> anyhow::Result<(Config, LoadReport)> {
    let config = Config::load(&data_dir.config_path())?;
    let report = plugins::load_all(runtime, &config, &data_dir.plugins_dir());
    if !report.errors.is_empty() {
        anyhow::bail!("{}", report.errors.join("; "));
    }
    index.record_plugins(&report.rows(), now_ms())?;
    Ok((config, report))
}
