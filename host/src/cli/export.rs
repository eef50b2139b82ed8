//! `wharf export DATASET --format F [--param k=v] [-o FILE] [--wait]`: a
//! cache hit is answered at once; a miss is an `export` job, followed with
//! a progress bar (`--wait`, implied by `-o`), in this process when no
//! daemon runs. The refusals are the API's messages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::export::{self, ExportJob, ExportRequest, Planned};
use crate::index::{Enqueued, ExportRow, Index, JobState};
use crate::jobs::{Handlers, Queue, Trigger};
use crate::store::DataDir;

pub(super) struct ExportArgs {
    pub dataset: String,
    pub format: String,
    pub params: Vec<(String, String)>,
    pub output: Option<PathBuf>,
    pub wait: bool,
}

pub(super) fn export(
    data_dir: &DataDir,
    config: &Config,
    args: ExportArgs,
) -> anyhow::Result<ExitCode> {
    let index = super::jobs::open(data_dir)?;
    let exporters = Arc::new(export::load_exporters(config, data_dir)?);
    let request = ExportRequest {
        dataset: args.dataset,
        format: args.format,
        params: args.params,
    };
    let (request, key) = match export::plan(&index, &exporters, &request)? {
        Planned::Cached(hit) => {
            println!("cached: {}", describe(data_dir, &hit));
            return deliver(data_dir, &hit, args.output.as_deref());
        }
        Planned::Run { request, key } => (request, key),
    };
    let queue = Queue::new(index.clone(), &config.jobs);
    let enqueued = queue.enqueue(&request, Trigger::Cli)?;
    let id = enqueued.id();
    match enqueued {
        Enqueued::Queued(_) => eprintln!("job {id} (export) queued"),
        _ => eprintln!("job {id} (export) is already making this export; following it"),
    }
    let daemon = crate::daemon::running_daemon(&index)?;
    if !(args.wait || args.output.is_some()) {
        if daemon.is_none() {
            eprintln!(
                "no daemon is running on this data directory: it runs when `wharf run` starts (or use --wait)"
            );
        }
        eprintln!("follow it with `wharf jobs show {id}`");
        return Ok(ExitCode::SUCCESS);
    }
    let pool = match daemon {
        Some(_) => None,
        None => {
            let mut handlers = Handlers::new();
            handlers.register(
                export::EXPORT,
                Arc::new(ExportJob::new(
                    data_dir.clone(),
                    index.clone(),
                    exporters,
                    Arc::new(RwLock::new(config.clone())),
                )),
            );
            Some(super::jobs::pool_for_one_job(config, &index, handlers, id)?)
        }
    };
    let row = super::jobs::follow(&index, id)?;
    if let Some(pool) = pool {
        pool.drain(Duration::ZERO);
    }
    if row.state != JobState::Done {
        println!(
            "job {id} (export) {}: {}",
            row.state,
            row.last_error.as_deref().unwrap_or("no error recorded")
        );
        return Ok(ExitCode::from(1));
    }
    let Some(made) = cached(&index, &key)? else {
        anyhow::bail!(
            "job {id} is done but its export is not in the cache (removed since?); run the export again"
        );
    };
    println!("exported: {}", describe(data_dir, &made));
    deliver(data_dir, &made, args.output.as_deref())
}

fn cached(index: &Index, key: &crate::index::ExportKey) -> anyhow::Result<Option<ExportRow>> {
    index.cached_export(key)
}

fn describe(data_dir: &DataDir, row: &ExportRow) -> String {
    let path = row
        .path
        .as_deref()
        .and_then(|path| data_dir.resolve(path).ok())
        .map_or_else(|| "(no file)".to_owned(), |path| path.display().to_string());
    format!(
        "export {} of {} (version {}, {}): {path}, {} bytes, sha256 {}",
        row.id.0,
        row.dataset,
        row.entity_version,
        row.format,
        row.size.unwrap_or(0),
        row.sha256.as_deref().unwrap_or("-")
    )
}

/// Copies the export to `output`, if asked to.
fn deliver(data_dir: &DataDir, row: &ExportRow, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Some(output) = output else {
        return Ok(ExitCode::SUCCESS);
    };
    let source = row
        .path
        .as_deref()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "export {} has no file any more; run the export again",
                row.id.0
            )
        })
        .and_then(|path| {
            data_dir
                .resolve(path)
                .map_err(|error| anyhow::anyhow!("{error}"))
        })?;
    std::fs::copy(&source, output).with_context(|| format!("cannot write {}", output.display()))?;
    println!("wrote {}", output.display());
    Ok(ExitCode::SUCCESS)
}
