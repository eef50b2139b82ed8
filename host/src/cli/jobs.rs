//! `wharf jobs [list|show|retry|cancel]` and `wharf ingest [--wait]`: the
//! queue as a table or JSON, and following a job with a progress bar. With
//! `--wait` and no daemon running, the job runs in this process, through
//! the same pool the daemon uses.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::JobsFormat;
use crate::config::Config;
use crate::index::{CancelOutcome, Enqueued, Index, JobId, JobRow, JobState, RetryOutcome, now_ms};
use crate::jobs::{self, Pool, PoolSettings, Queue, Request, Trigger};
use crate::lease;
use crate::runtime::Runtime;
use crate::store::DataDir;
use crate::views::job_json;

pub(super) fn open(data_dir: &DataDir) -> anyhow::Result<Arc<Index>> {
    if !data_dir.index_path().exists() {
        anyhow::bail!(
            "there is no index at {}; run `wharf init` first",
            data_dir.index_path().display()
        );
    }
    Ok(Arc::new(Index::open(&data_dir.index_path())?))
}

pub(super) fn list(
    data_dir: &DataDir,
    state: Option<JobState>,
    limit: usize,
    format: JobsFormat,
) -> anyhow::Result<ExitCode> {
    let index = open(data_dir)?;
    let rows = index.jobs(state, limit)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match format {
        JobsFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows.iter().map(job_json).collect::<Vec<_>>())?;
            writeln!(out)?;
        }
        JobsFormat::Table => {
            writeln!(
                out,
                "{:>8}  {:<10}  {:<9}  {:>8}  {:<12}  error",
                "ID", "KIND", "STATE", "ATTEMPTS", "KEY"
            )?;
            for row in &rows {
                let error = row
                    .last_error
                    .as_deref()
                    .unwrap_or("")
                    .replace(['\n', '\r'], " ");
                writeln!(
                    out,
                    "{:>8}  {:<10}  {:<9}  {:>8}  {:<12}  {}",
                    row.id,
                    row.kind,
                    row.state,
                    format!("{}/{}", row.attempts, row.max_attempts),
                    row.unique_key.as_deref().unwrap_or("-"),
                    error.trim_end()
                )?;
            }
            if rows.is_empty() {
                writeln!(out, "(no jobs)")?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show(data_dir: &DataDir, id: i64, format: JobsFormat) -> anyhow::Result<ExitCode> {
    let index = open(data_dir)?;
    let Some(row) = index.job(JobId(id))? else {
        anyhow::bail!("there is no job {id}; `wharf jobs list` shows them");
    };
    let mut out = std::io::stdout().lock();
    match format {
        JobsFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &job_json(&row))?;
            writeln!(out)?;
        }
        JobsFormat::Table => {
            let value = job_json(&row);
            if let Some(fields) = value.as_object() {
                for (name, value) in fields {
                    let shown = match value {
                        serde_json::Value::Null => "-".to_owned(),
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    writeln!(out, "{name:>16}: {shown}")?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn retry(data_dir: &DataDir, id: i64) -> anyhow::Result<ExitCode> {
    let index = open(data_dir)?;
    match index.retry_job(JobId(id), now_ms())? {
        RetryOutcome::Requeued => println!("job {id} queued again"),
        RetryOutcome::NotFound => {
            anyhow::bail!("there is no job {id}; `wharf jobs list` shows them")
        }
        RetryOutcome::Done => anyhow::bail!("job {id} is done; there is nothing to retry"),
        RetryOutcome::NotFinished(state) => {
            anyhow::bail!("job {id} is {state}; only failed or cancelled jobs are retried")
        }
        RetryOutcome::KeyBusy(live) => anyhow::bail!(
            "job {live} of the same key is queued or running and covers this one; wait for it or cancel it"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cancel(data_dir: &DataDir, id: i64) -> anyhow::Result<ExitCode> {
    let index = open(data_dir)?;
    match index.cancel_job(JobId(id), now_ms())? {
        CancelOutcome::Cancelled => println!("job {id} cancelled"),
        CancelOutcome::Requested => {
            println!("job {id} is running; its worker stops it within a heartbeat")
        }
        CancelOutcome::NotFound => {
            anyhow::bail!("there is no job {id}; `wharf jobs list` shows them")
        }
        CancelOutcome::AlreadyFinal(state) => anyhow::bail!("job {id} is {state} already"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `wharf ingest [--wait]`: enqueues an inbox scan.
pub(super) fn ingest(data_dir: &DataDir, config: &Config, wait: bool) -> anyhow::Result<ExitCode> {
    enqueue_and_follow(data_dir, config, &Request::ingest(), wait)
}

/// Enqueues `request` from the CLI; with `wait`, follows the job to its
/// end, running it in this process (the daemon's pool, one worker, only
/// this job) when no daemon is alive.
pub(super) fn enqueue_and_follow(
    data_dir: &DataDir,
    config: &Config,
    request: &Request,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    data_dir.create().with_context(|| {
        format!(
            "cannot create the data directory {}",
            data_dir.root().display()
        )
    })?;
    let index = Arc::new(Index::open(&data_dir.index_path())?);
    let queue = Queue::new(index.clone(), &config.jobs);
    let enqueued = queue.enqueue(request, Trigger::Cli)?;
    let id = enqueued.id();
    let kind = &request.kind;
    let daemon = crate::daemon::running_daemon(&index)?;
    match enqueued {
        Enqueued::Queued(_) => eprintln!("job {id} ({kind}) queued"),
        Enqueued::AlreadyQueued(_) | Enqueued::Absorbed(_) => {
            eprintln!("job {id} is queued already and covers this request")
        }
        Enqueued::RerunSet(_) => {
            eprintln!("job {id} is running; one more run follows it")
        }
    }
    if !wait {
        if daemon.is_none() {
            eprintln!(
                "no daemon is running on this data directory: it runs when `wharf run` starts (or use --wait)"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let pool = match daemon {
        Some(_) => None,
        None => {
            let shared = Arc::new(RwLock::new(config.clone()));
            let mut handlers =
                jobs::standard_handlers(data_dir.clone(), index.clone(), shared.clone());
            if request.kind != jobs::INGEST {
                let runtime = Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
                handlers.extend(jobs::cleanup_handlers(
                    data_dir.clone(),
                    index.clone(),
                    shared,
                    runtime,
                ));
            }
            Some(pool_for_one_job(config, &index, handlers, id)?)
        }
    };
    let row = follow(&index, id)?;
    if let Some(pool) = pool {
        pool.drain(Duration::ZERO);
    }
    report_end(&row)
}

/// A pool of one worker in this process that runs job `id` and nothing
/// else: how `--wait` runs a job when no daemon is up.
pub(super) fn pool_for_one_job(
    config: &Config,
    index: &Arc<Index>,
    handlers: jobs::Handlers,
    id: JobId,
) -> anyhow::Result<Pool> {
    let settings = PoolSettings {
        workers: 1,
        only: Some(id),
        ..PoolSettings::from_config(&config.jobs)
    };
    Pool::start(index.clone(), lease::this_process(), handlers, settings)
}

/// Polls job `id` until it is done, failed or cancelled, with a progress
/// bar on a terminal.
pub(super) fn follow(index: &Index, id: JobId) -> anyhow::Result<JobRow> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let style =
            ProgressStyle::with_template("{spinner} job {prefix} {msg} {bar:30} {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::new(0).with_style(style);
        bar.set_prefix(id.to_string());
        bar
    });
    loop {
        let Some(row) = index.job(id)? else {
            anyhow::bail!("job {id} vanished from the index");
        };
        if let Some(bar) = &bar {
            bar.set_message(row.state.to_string());
            if let Some(total) = row.progress_total {
                bar.set_length(total);
            }
            bar.set_position(row.progress.unwrap_or(0));
            bar.tick();
        }
        if row.state.is_final() {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(row);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report_end(row: &JobRow) -> anyhow::Result<ExitCode> {
    match row.state {
        JobState::Done => {
            println!("job {} ({}) done", row.id, row.kind);
            Ok(ExitCode::SUCCESS)
        }
        state => {
            println!(
                "job {} ({}) {state}: {}",
                row.id,
                row.kind,
                row.last_error.as_deref().unwrap_or("no error recorded")
            );
            Ok(ExitCode::from(1))
        }
    }
}
