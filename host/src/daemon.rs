//! `wharf run`: opens the data directory, the index and the plugins, and
//! serves until shutdown. Later the scheduler and workers start here.
//!
//! SIGHUP reloads the configuration and the plugins atomically: the new set
//! replaces the old one only if everything in it loaded; otherwise the last
//! good set stays and the errors are logged. A reload also lifts quarantines.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc::Receiver;

use crate::config::Config;
use crate::index::Index;
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
    loop {
        match signals.recv().await.unwrap_or(Signal::Shutdown) {
            Signal::Shutdown => break,
            Signal::Reload => match reload(&runtime, &data_dir, &index) {
                Ok((new_config, report)) => {
                    tracing::info!(
                        plugins = report.registry.len(),
                        "configuration and plugins reloaded"
                    );
                    config = new_config;
                    loaded = report;
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "reload failed; keeping the running configuration and plugins");
                }
            },
        }
    }
    tracing::info!(
        plugins = loaded.registry.len(),
        quarantine_after = config.plugins.quarantine_after,
        "wharf stopped"
    );
    Ok(())
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
