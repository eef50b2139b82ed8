//! `wharf run`: one daemon per data directory (a lease on it; a second one
//! names the first's pid and exits), the index, the plugins, and the jobs
//! engine: a worker pool running the registered job kinds and a scheduler
//! enqueuing them (at startup, periodically per kind with a stagger, on
//! SIGUSR1 a full cleanup).
//!
//! SIGHUP reloads the configuration and the plugins atomically: the new set
//! replaces the old one only if everything in it loaded; otherwise the last
//! good set stays and the errors are logged. A reload also lifts quarantines.
//!
//! SIGTERM drains: no new job is claimed, running jobs may finish until
//! `[jobs] drain_timeout_ms`, then they are cancelled and queued again for
//! the next start.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::Receiver;

use crate::config::Config;
use crate::index::{Index, now_ms};
use crate::jobs::{
    self, Handlers, Pool, PoolSettings, Queue, Request, Schedule, Scheduler, Trigger, Waker,
};
use crate::lease::{self, Lease, LeaseError};
use crate::plugins::{self, LoadReport};
use crate::retention;
use crate::runtime::Runtime;
use crate::store::DataDir;

/// What makes the daemon reload, clean up or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Reload,
    /// SIGUSR1: a full cleanup (retention, then GC).
    FullCleanup,
    Shutdown,
}

/// The lease that makes one daemon per data directory.
pub const DAEMON_LEASE: &str = "daemon";

/// Why the daemon did not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "another wharf daemon (pid {pid}) is running on {data_dir} (lease holder {holder}); stop it first \
         (kill -TERM {pid}) or use another --data-dir"
    )]
    AlreadyRunning {
        pid: String,
        holder: String,
        data_dir: String,
    },
}

/// Runs the daemon with the built-in job kinds until `signals` yields
/// `Shutdown` or closes.
pub async fn run(
    data_dir: DataDir,
    config: Config,
    signals: Receiver<Signal>,
) -> anyhow::Result<()> {
    run_with(data_dir, config, signals, Handlers::new()).await
}

/// As [`run`], with `extra` handlers registered beside the built-in ones
/// (they win on a shared kind).
pub async fn run_with(
    data_dir: DataDir,
    config: Config,
    mut signals: Receiver<Signal>,
    extra: Handlers,
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
    let daemon_lease = {
        let (index, data_dir, ttl) = (
            index.clone(),
            data_dir.clone(),
            Duration::from_millis(config.jobs.lease_ttl_ms),
        );
        tokio::task::spawn_blocking(move || acquire_daemon_lease(index, &data_dir, ttl)).await??
    };
    let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let mut loaded = load(&runtime, &config, &data_dir, &index)?;
    for error in &loaded.errors {
        tracing::error!(error = %error, "plugin not loaded");
    }
    retention::resolve_policies(&config.cleanup, &loaded.registry)?;
    let shared_config = Arc::new(RwLock::new(config.clone()));
    let mut handlers =
        jobs::standard_handlers(data_dir.clone(), index.clone(), shared_config.clone());
    handlers.extend(jobs::cleanup_handlers(
        data_dir.clone(),
        index.clone(),
        shared_config.clone(),
        runtime.clone(),
    ));
    handlers.extend(extra);
    let queue = Queue::new(index.clone(), &config.jobs);
    let pool = {
        let (index, owner, handlers, settings) = (
            index.clone(),
            daemon_lease.owner().to_owned(),
            handlers.clone(),
            PoolSettings::from_config(&config.jobs),
        );
        tokio::task::spawn_blocking(move || Pool::start(index, owner, handlers, settings)).await??
    };
    let waker = pool.waker();
    tracing::info!(
        data_dir = %data_dir.root().display(),
        plugins = loaded.registry.len(),
        pid = std::process::id(),
        "wharf running; SIGHUP reloads plugins, SIGUSR1 runs a full cleanup, SIGTERM stops"
    );
    let mut startup = vec![Request::ingest()];
    if handlers.contains(jobs::CLEANUP) {
        startup.push(Request::full_cleanup());
    }
    for request in startup {
        trigger(&queue, &waker, request, Trigger::Startup).await;
    }
    let mut config = config;
    let mut scheduler = Scheduler::new(
        schedules(&config, &handlers),
        stagger(&config),
        Instant::now(),
    );
    loop {
        let next = scheduler
            .next_wake()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            signal = signals.recv() => match signal.unwrap_or(Signal::Shutdown) {
                Signal::Shutdown => break,
                Signal::FullCleanup => {
                    if !handlers.contains(jobs::CLEANUP) {
                        tracing::warn!("full cleanup queued, but no retention handler is registered yet; it waits in the queue");
                    }
                    trigger(&queue, &waker, Request::full_cleanup(), Trigger::Signal).await;
                }
                Signal::Reload => match reload(&runtime, &data_dir, &index) {
                    Ok((new_config, report)) => {
                        tracing::info!(
                            plugins = report.registry.len(),
                            "configuration and plugins reloaded"
                        );
                        if schedules(&new_config, &handlers) != schedules(&config, &handlers)
                            || new_config.jobs.stagger_ms != config.jobs.stagger_ms
                        {
                            scheduler = Scheduler::new(schedules(&new_config, &handlers), stagger(&new_config), Instant::now());
                        }
                        *shared_config.write().unwrap_or_else(PoisonError::into_inner) = new_config.clone();
                        config = new_config;
                        loaded = report;
                    }
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "reload failed; keeping the running configuration and plugins");
                    }
                },
            },
            () = tokio::time::sleep_until(next.into()) => {
                for request in scheduler.due(Instant::now()) {
                    trigger(&queue, &waker, request, Trigger::Periodic).await;
                }
            }
        }
    }
    let deadline = Duration::from_millis(config.jobs.drain_timeout_ms);
    tracing::info!(
        deadline_ms = config.jobs.drain_timeout_ms,
        "draining running jobs"
    );
    let drained = tokio::task::spawn_blocking(move || pool.drain(deadline))
        .await
        .context("the job pool panicked while draining")?;
    drop(daemon_lease);
    tracing::info!(
        plugins = loaded.registry.len(),
        cancelled = drained.cancelled,
        stuck = drained.stuck,
        "wharf stopped"
    );
    Ok(())
}

fn acquire_daemon_lease(
    index: Arc<Index>,
    data_dir: &DataDir,
    ttl: Duration,
) -> anyhow::Result<Lease> {
    match Lease::acquire(index, DAEMON_LEASE, ttl, Duration::ZERO) {
        Ok(lease) => Ok(lease),
        Err(LeaseError::Timeout { holder, .. }) => Err(DaemonError::AlreadyRunning {
            pid: lease::holder_pid(&holder)
                .map_or_else(|| "unknown".to_owned(), |pid| pid.to_string()),
            holder,
            data_dir: data_dir.root().display().to_string(),
        }
        .into()),
        Err(LeaseError::Index(error)) => Err(error.context("cannot take the daemon lease")),
    }
}

/// The periodic schedules of the registered kinds.
fn schedules(config: &Config, handlers: &Handlers) -> Vec<Schedule> {
    let mut schedules = vec![Schedule {
        request: Request::ingest(),
        every: Duration::from_millis(config.ingest.scan_interval_ms),
    }];
    if handlers.contains(jobs::CLEANUP) {
        schedules.push(Schedule {
            request: Request::full_cleanup(),
            every: Duration::from_millis(config.jobs.cleanup_interval_ms),
        });
    }
    schedules
}

fn stagger(config: &Config) -> Duration {
    Duration::from_millis(config.jobs.stagger_ms)
}

/// Enqueues off the async threads, then wakes the pool.
async fn trigger(queue: &Queue, waker: &Waker, request: Request, trigger: Trigger) {
    let queue = queue.clone();
    let kind = request.kind.clone();
    match tokio::task::spawn_blocking(move || queue.enqueue(&request, trigger)).await {
        Ok(Ok(_)) => waker.wake(),
        Ok(Err(error)) => {
            tracing::error!(kind = %kind, trigger = %trigger, error = %format!("{error:#}"), "cannot enqueue a job")
        }
        Err(error) => tracing::error!(kind = %kind, error = %error, "enqueueing a job panicked"),
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
    retention::resolve_policies(&config.cleanup, &report.registry)?;
    index.record_plugins(&report.rows(), now_ms())?;
    Ok((config, report))
}
