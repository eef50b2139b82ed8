//! `wharf sync [--destination NAME] [--wait]` queues a sync of every file
//! to the `[[destination]]`s (with --wait it follows it with a progress
//! bar; when no daemon runs, this process runs every lane through the
//! daemon's own pool and handler); `wharf sync status` shows each destination's rows by
//! state; `wharf sync retry-failed` queues failed files again.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::JobsFormat;
use super::status::human_bytes;
use crate::config::Config;
use crate::index::{DestinationId, Enqueued, Index, JobId, JobRow, JobState, SyncSummary, now_ms};
use crate::jobs::{self, Queue, Trigger};
use crate::plugins;
use crate::runtime::{Runtime, World};
use crate::store::DataDir;
use crate::sync::{self, SyncJob, Uploaders};

/// Opens (creating if needed) the index and records the configured
/// destinations in it, checking `destination` is one of them.
fn open(
    data_dir: &DataDir,
    config: &Config,
    destination: Option<&str>,
) -> anyhow::Result<(Arc<Index>, BTreeMap<String, DestinationId>)> {
    if config.destinations.is_empty() {
        anyhow::bail!(
            "no [[destination]] is configured in {}: add one (see the README's Sync section), e.g.\n\n[[destination]]\nname = \"backup\"\nkind = \"local\"\npath = \"/mnt/backup/wharf\"",
            data_dir.config_path().display()
        );
    }
    if let Some(name) = destination
        && !config.destinations.iter().any(|d| d.name == name)
    {
        let names: Vec<&str> = config
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        anyhow::bail!(
            "--destination {name}: no [[destination]] has that name; configured: {}",
            names.join(", ")
        );
    }
    data_dir.create().with_context(|| {
        format!(
            "cannot create the data directory {}",
            data_dir.root().display()
        )
    })?;
    let index = Arc::new(Index::open(&data_dir.index_path())?);
    let ids = sync::register_destinations(&index, config)?;
    Ok((index, ids))
}

fn selected(
    ids: &BTreeMap<String, DestinationId>,
    destination: Option<&str>,
) -> Vec<DestinationId> {
    ids.iter()
        .filter(|(name, _)| destination.is_none_or(|d| d == name.as_str()))
        .map(|(_, id)| *id)
        .collect()
}

/// `wharf sync [--destination NAME] [--wait]`.
pub(super) fn sync(
    data_dir: &DataDir,
    config: &Config,
    destination: Option<&str>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let (index, ids) = open(data_dir, config, destination)?;
    index.sync_add_missing(&selected(&ids, destination), None, now_ms())?;
    let daemon = crate::daemon::running_daemon(&index)?;
    let queue = Queue::new(index.clone(), &config.jobs);
    let requests = sync::requests(config.sync.worker_count(), destination);
    let mut lanes = Vec::with_capacity(requests.len());
    for request in requests {
        let enqueued = queue.enqueue(&request, Trigger::Cli)?;
        lanes.push((request, enqueued));
    }
    let shown: Vec<String> = lanes.iter().map(|(_, e)| e.id().to_string()).collect();
    eprintln!("sync queued (job {})", shown.join(", "));
    if !wait {
        if daemon.is_none() {
            eprintln!(
                "no daemon is running on this data directory: the sync runs when `wharf run` starts (or use --wait)"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Without a daemon this process runs every lane: a pool restricted to
    // each lane's job, all with one sync handler.
    let handlers = match daemon {
        Some(_) => None,
        None => Some(sync_handlers(data_dir, config, &index)?),
    };
    let mut pools = Vec::new();
    if let Some(handlers) = &handlers {
        for (_, enqueued) in &lanes {
            pools.push(super::jobs::pool_for_one_job(
                config,
                &index,
                handlers.clone(),
                enqueued.id(),
            )?);
        }
    }
    let bar = progress_bar();
    let mut failed_jobs = Vec::new();
    let followed = follow_lanes(
        &queue,
        &index,
        &lanes,
        destination,
        bar.as_ref(),
        &mut |id| {
            if let Some(handlers) = &handlers {
                pools.push(super::jobs::pool_for_one_job(
                    config,
                    &index,
                    handlers.clone(),
                    id,
                )?);
            }
            Ok(())
        },
    );
    for pool in pools {
        pool.drain(Duration::ZERO);
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    for (id, row) in followed? {
        if row.state != JobState::Done {
            let error = row.last_error.as_deref().unwrap_or("no error recorded");
            failed_jobs.push((id, format!("{}: {error}", row.state)));
        }
    }
    let summaries = summaries(&index, destination)?;
    let mut out = std::io::stdout().lock();
    print_summaries(&mut out, &summaries, None)?;
    for (id, error) in &failed_jobs {
        writeln!(out, "sync job {id} did not finish: {error}")?;
    }
    let failed: u64 = summaries.iter().map(|s| s.failed).sum();
    Ok(if failed_jobs.is_empty() && failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Follows each lane's job to its end, in turn; `started` runs a job this
/// process must run itself (a rerun queued while following). Returns every
/// followed job's last row.
fn follow_lanes(
    queue: &Queue,
    index: &Index,
    lanes: &[(crate::jobs::Request, Enqueued)],
    destination: Option<&str>,
    bar: Option<&ProgressBar>,
    started: &mut dyn FnMut(JobId) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(JobId, JobRow)>> {
    let mut rows = Vec::new();
    for (request, first) in lanes {
        // A lane that was running already started before this request: the
        // run that follows it (queued by this request) is the one to wait
        // for, found by asking again.
        let mut current = *first;
        let mut again = matches!(first, Enqueued::RerunSet(_));
        loop {
            let id = current.id();
            rows.push((id, follow(index, id, bar, destination)?));
            if !std::mem::take(&mut again) {
                break;
            }
            current = queue.enqueue(request, Trigger::Cli)?;
            started(current.id())?;
        }
    }
    Ok(rows)
}

/// The sync handler over the plugins the daemon would load.
fn sync_handlers(
    data_dir: &DataDir,
    config: &Config,
    index: &Arc<Index>,
) -> anyhow::Result<jobs::Handlers> {
    let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let loaded = plugins::load_all(&runtime, config, &data_dir.plugins_dir());
    for error in &loaded.errors {
        eprintln!("plugin not loaded: {error}");
    }
    let mut handlers = jobs::Handlers::new();
    handlers.register(
        sync::SYNC,
        Arc::new(SyncJob::new(
            data_dir.clone(),
            index.clone(),
            Arc::new(RwLock::new(config.clone())),
            Arc::new(Uploaders::new(World::Uploader, &loaded.registry)),
        )),
    );
    Ok(handlers)
}

/// A bar of the destinations' files (synced or failed, of all), on a terminal.
fn progress_bar() -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let style = ProgressStyle::with_template(
            "{spinner} sync {msg} {bar:30} {pos}/{len} files ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(0).with_style(style)
    })
}

/// Polls job `id` until it has ended, moving `bar`.
fn follow(
    index: &Index,
    id: JobId,
    bar: Option<&ProgressBar>,
    destination: Option<&str>,
) -> anyhow::Result<JobRow> {
    loop {
        let Some(row) = index.job(id)? else {
            anyhow::bail!("job {id} vanished from the index");
        };
        if let Some(bar) = bar {
            let summaries = summaries(index, destination)?;
            let total: u64 = summaries
                .iter()
                .map(|s| s.pending + s.in_progress + s.synced + s.retrying + s.failed)
                .sum();
            let done: u64 = summaries.iter().map(|s| s.synced + s.failed).sum();
            let bytes: u64 = summaries.iter().map(|s| s.synced_bytes).sum();
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(human_bytes(bytes));
            bar.tick();
        }
        if row.state.is_final() {
            return Ok(row);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn summaries(index: &Index, destination: Option<&str>) -> anyhow::Result<Vec<SyncSummary>> {
    Ok(index
        .sync_summaries()?
        .into_iter()
        .filter(|s| destination.is_none_or(|d| d == s.destination))
        .collect())
}

/// `wharf sync status`.
pub(super) fn status(
    data_dir: &DataDir,
    config: &Config,
    format: JobsFormat,
) -> anyhow::Result<ExitCode> {
    let (index, ids) = open(data_dir, config, None)?;
    // Files indexed since the last sync are counted as pending.
    index.sync_add_missing(&selected(&ids, None), None, now_ms())?;
    let summaries = summaries(&index, None)?;
    let empty = index.sync_empty_files()?;
    let mut out = std::io::stdout().lock();
    match format {
        JobsFormat::Json => {
            let value = json!({
                "destinations": summaries.iter().map(summary_json).collect::<Vec<_>>(),
                "skipped_empty_files": empty,
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        JobsFormat::Table => print_summaries(&mut out, &summaries, Some(empty))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_json(s: &SyncSummary) -> serde_json::Value {
    json!({
        "name": s.destination,
        "plugin": s.plugin,
        "url": s.url,
        "required": s.required,
        "pending": { "files": s.pending, "bytes": s.pending_bytes },
        "in_progress": { "files": s.in_progress, "bytes": s.in_progress_bytes },
        "synced": { "files": s.synced, "bytes": s.synced_bytes },
        "retrying": { "files": s.retrying, "bytes": s.retrying_bytes },
        "failed": { "files": s.failed, "bytes": s.failed_bytes },
        "last_error": s.last_error.as_ref().map(|(path, error)| json!({ "path": path, "error": error })),
    })
}

fn print_summaries(
    out: &mut impl Write,
    summaries: &[SyncSummary],
    empty: Option<u64>,
) -> anyhow::Result<()> {
    for s in summaries {
        let required = if s.required { ", required" } else { "" };
        writeln!(
            out,
            "{} ({} → {}{required})",
            s.destination, s.plugin, s.url
        )?;
        writeln!(
            out,
            "  pending {} ({}), in progress {} ({}), synced {} ({}), retrying {} ({}), failed {} ({})",
            s.pending,
            human_bytes(s.pending_bytes),
            s.in_progress,
            human_bytes(s.in_progress_bytes),
            s.synced,
            human_bytes(s.synced_bytes),
            s.retrying,
            human_bytes(s.retrying_bytes),
            s.failed,
            human_bytes(s.failed_bytes),
        )?;
        if let Some((path, error)) = &s.last_error {
            writeln!(out, "  last error: {path}: {error}")?;
        }
        if s.failed > 0 {
            writeln!(
                out,
                "  (`wharf sync retry-failed --destination {}` tries the failed files again)",
                s.destination
            )?;
        }
    }
    if let Some(empty) = empty.filter(|n| *n > 0) {
        writeln!(out, "empty files skipped (nothing to upload): {empty}")?;
    }
    Ok(())
}

/// `wharf sync retry-failed [--destination NAME]`.
pub(super) fn retry_failed(
    data_dir: &DataDir,
    config: &Config,
    destination: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (index, ids) = open(data_dir, config, destination)?;
    let requeued = index.sync_retry_failed(&selected(&ids, destination), now_ms())?;
    println!(
        "{requeued} failed {} queued again",
        if requeued == 1 {
            "file is"
        } else {
            "files are"
        }
    );
    if requeued > 0 {
        match crate::daemon::running_daemon(&index)? {
            Some(_) => {
                let queue = Queue::new(index.clone(), &config.jobs);
                queue.enqueue_many(&sync::requests(config.sync.worker_count(), destination))?;
            }
            None => eprintln!(
                "no daemon is running on this data directory: they sync when `wharf run` starts, or now with `wharf sync --wait`"
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
