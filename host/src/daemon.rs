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

use crate::api::{ApiServer, ApiState};
use crate::config::Config;
use crate::export::{self, ExportJob, Exporters};
use crate::index::{Index, now_ms};
use crate::jobs::{
    self, Handlers, Pool, PoolSettings, Queue, Request, Schedule, Scheduler, Trigger, Waker,
};
use crate::lease::{self, Lease, LeaseError};
use crate::plugins::{self, LoadReport};
use crate::retention;
use crate::runtime::{Runtime, World};
use crate::store::DataDir;
use crate::sync;

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
    let mut runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let mut loaded = {
        let (runtime, config, data_dir, index) = (
            runtime.clone(),
            config.clone(),
            data_dir.clone(),
            index.clone(),
        );
        tokio::task::spawn_blocking(move || load(&runtime, &config, &data_dir, &index)).await??
    };
    for error in &loaded.errors {
        tracing::error!(error = %error, "plugin not loaded");
    }
    retention::resolve_policies(&config, &loaded.registry)?;
    let shared_config = Arc::new(RwLock::new(config.clone()));
    let mut handlers =
        jobs::standard_handlers(data_dir.clone(), index.clone(), shared_config.clone());
    handlers.extend(jobs::cleanup_handlers(
        data_dir.clone(),
        index.clone(),
        shared_config.clone(),
        runtime.clone(),
    ));
    let exporters = Arc::new(Exporters::new(World::Exporter, &loaded.registry));
    handlers.register(
        export::EXPORT,
        Arc::new(ExportJob::new(
            data_dir.clone(),
            index.clone(),
            exporters.clone(),
            shared_config.clone(),
        )),
    );
    let uploaders = Arc::new(sync::Uploaders::new(World::Uploader, &loaded.registry));
    handlers.register(
        sync::SYNC,
        Arc::new(sync::SyncJob::new(
            data_dir.clone(),
            index.clone(),
            shared_config.clone(),
            uploaders.clone(),
        )),
    );
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
    let api = ApiServer::start(&config.api, &data_dir, |token| {
        ApiState::new(
            data_dir.clone(),
            index.clone(),
            queue.clone(),
            Some(waker.clone()),
            exporters.clone(),
            token,
            &config.api,
        )
    })
    .await;
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
    if handlers.contains(sync::SYNC) && !config.destinations.is_empty() {
        startup.extend(sync::requests(config.sync.worker_count(), None));
    }
    for request in startup {
        trigger(&queue, &waker, request, Trigger::Startup).await;
    }
    let mut config = config;
    // A SIGHUP compiles plugins on a blocking thread; the loop keeps serving
    // signals and schedules meanwhile. One reload at a time: a SIGHUP during
    // one makes exactly one more follow.
    let mut reloading: Option<tokio::task::JoinHandle<anyhow::Result<Reloaded>>> = None;
    let mut reload_again = false;
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
                Signal::Reload if reloading.is_some() => reload_again = true,
                Signal::Reload => reloading = Some(spawn_reload(&runtime, &config, &data_dir, &index)),
            },
            finished = async { reloading.as_mut().expect("guarded by is_some").await }, if reloading.is_some() => {
                reloading = None;
                match finished.unwrap_or_else(|panic| Err(anyhow::anyhow!("the reload panicked: {panic}"))) {
                    Ok(reloaded) => {
                        tracing::info!(
                            plugins = reloaded.report.registry.len(),
                            runtime_rebuilt = reloaded.runtime.is_some(),
                            "configuration and plugins reloaded"
                        );
                        let new_config = reloaded.config;
                        if schedules(&new_config, &handlers) != schedules(&config, &handlers)
                            || new_config.jobs.stagger_ms != config.jobs.stagger_ms
                        {
                            scheduler = Scheduler::new(schedules(&new_config, &handlers), stagger(&new_config), Instant::now());
                        }
                        *shared_config.write().unwrap_or_else(PoisonError::into_inner) = new_config.clone();
                        config = new_config;
                        loaded = reloaded.report;
                        exporters.replace(&loaded.registry);
                        uploaders.replace(&loaded.registry);
                        if let Some(rebuilt) = reloaded.runtime {
                            runtime = rebuilt;
                        }
                    }
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "reload failed; keeping the running configuration and plugins");
                    }
                }
                if std::mem::take(&mut reload_again) {
                    reloading = Some(spawn_reload(&runtime, &config, &data_dir, &index));
                }
            }
            () = tokio::time::sleep_until(next.into()) => {
                for request in scheduler.due(Instant::now()) {
                    trigger(&queue, &waker, request, Trigger::Periodic).await;
                }
            }
        }
    }
    let deadline = Duration::from_millis(config.jobs.drain_timeout_ms);
    if let Some(api) = api {
        api.stop(&data_dir, deadline).await;
    }
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
    if handlers.contains(sync::SYNC) && !config.destinations.is_empty() {
        for request in sync::requests(config.sync.worker_count(), None) {
            schedules.push(Schedule {
                request,
                every: Duration::from_millis(config.sync.interval_ms),
            });
        }
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
    // Retention checks required destinations in the index from the start.
    sync::register_destinations(index, config)?;
    Ok(report)
}

/// What a successful reload produced.
struct Reloaded {
    config: Config,
    report: LoadReport,
    /// A new runtime, when the engine settings changed.
    runtime: Option<Runtime>,
}

fn spawn_reload(
    runtime: &Runtime,
    config: &Config,
    data_dir: &DataDir,
    index: &Arc<Index>,
) -> tokio::task::JoinHandle<anyhow::Result<Reloaded>> {
    let (runtime, running, data_dir, index) = (
        runtime.clone(),
        config.clone(),
        data_dir.clone(),
        index.clone(),
    );
    tokio::task::spawn_blocking(move || reload(&runtime, &running, &data_dir, &index))
}

/// A new configuration and plugin set, or an error if any part failed.
/// When the engine settings (`[plugins]` pool size, largest memory,
/// quarantine threshold, largest component) changed, the plugins are loaded
/// into a new runtime built with them, so every limit is checked against
/// the engine that enforces it.
fn reload(
    runtime: &Runtime,
    running: &Config,
    data_dir: &DataDir,
    index: &Index,
) -> anyhow::Result<Reloaded> {
    let config = Config::load(&data_dir.config_path())?;
    let new_engine = config.runtime_config(&data_dir.compiled_cache_dir());
    let rebuilt = if engine_settings(&config) == engine_settings(running) {
        None
    } else {
        tracing::info!("engine settings changed; building a new plugin runtime");
        Some(Runtime::new(new_engine)?)
    };
    let report = plugins::load_all(
        rebuilt.as_ref().unwrap_or(runtime),
        &config,
        &data_dir.plugins_dir(),
    );
    if !report.errors.is_empty() {
        anyhow::bail!("{}", report.errors.join("; "));
    }
    retention::resolve_policies(&config, &report.registry)?;
    index.record_plugins(&report.rows(), now_ms())?;
    sync::register_destinations(index, &config)?;
    Ok(Reloaded {
        config,
        report,
        runtime: rebuilt,
    })
}

/// The settings a `Runtime` is built with, which a running one cannot change.
fn engine_settings(config: &Config) -> (u32, u64, u32, u64) {
    let plugins = &config.plugins;
    (
        plugins.max_instances,
        plugins.max_memory_bytes,
        plugins.quarantine_after,
        plugins.max_component_bytes,
    )
}

/// The daemon's lease holder, if a daemon is alive on this index.
pub fn running_daemon(index: &Index) -> anyhow::Result<Option<String>> {
    Ok(index
        .lease_holder(DAEMON_LEASE)?
        .filter(|holder| holder.expires_ms > now_ms() && !lease::holder_is_dead(&holder.owner))
        .map(|holder| holder.owner))
}

/// Asks the daemon running on `data_dir`, if any, to reload its
/// configuration and plugins (SIGHUP); its pid when there is one.
pub fn request_reload(data_dir: &DataDir) -> anyhow::Result<Option<u32>> {
    if !data_dir.index_path().exists() {
        return Ok(None);
    }
    let index = Index::open(&data_dir.index_path())
        .with_context(|| format!("cannot open the index {}", data_dir.index_path().display()))?;
    let Some(pid) = running_daemon(&index)?
        .as_deref()
        .and_then(lease::holder_pid)
    else {
        return Ok(None);
    };
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| anyhow::anyhow!("the daemon's lease names pid {pid}, which is not a pid"))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP).with_context(|| {
        format!("cannot signal the daemon (pid {pid}) to reload; send it SIGHUP yourself")
    })?;
    Ok(Some(pid))
}
