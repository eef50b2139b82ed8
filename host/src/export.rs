//! Exports: plan with the index, call the exporter plugin, apply safely.
//!
//! A request (dataset, format, parameters) is checked against the loaded
//! exporters and their `describe` parameter specs ([`plan`]), which also
//! touches the dataset's `last_export_ms` and answers from the cache when
//! it can: one entry per (dataset, dataset version, format, parameters'
//! sha256), so different parameters never overwrite each other and a
//! changed dataset never gets a stale hit. A miss becomes an `export` job,
//! single-flight per cache key; its handler ([`ExportJob`]) takes a lease
//! on the key, checks the cache again, runs the plugin into `tmp/`, places
//! the result under its key's path and only then commits the `files` and
//! `exports` rows. A format that takes a `destination` parameter (a
//! manifest-only backup pointing at remote copies) is refused, before it is
//! queued and again before its plugin runs, when that destination is not
//! configured or lacks a verified copy of a file ([`DESTINATION_PARAM`]).
//!
//! Invariant: nothing half-written is ever visible: until the commit the
//! result is an unindexed file (in `tmp/`, or at its key's path after a
//! crash between the rename and the commit, which the next run under the
//! same lease removes); and one cache key never runs twice at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, ExportsConfig};
use crate::index::{EntityId, ExportKey, ExportRow, ExportSnapshot, Index, NewExport, now_ms};
use crate::jobs::{Handler, JobContext, JobError, Request, SharedConfig, in_force};
use crate::lease::{Lease, LeaseError};
use crate::runtime::{
    CallError, CallFile, Entity, ErrorClass, Exported, Params, Plugin, RemoteCopy, World,
};
use crate::store::{self, DataDir};

/// The job kind of an export.
pub const EXPORT: &str = "export";

/// The exporters a deployment has loaded, by format name.
pub type Exporters = crate::plugins::WorldPlugins;

/// What an application or the CLI asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub dataset: String,
    pub format: String,
    pub params: Params,
}

/// Why an export was refused or failed. The CLI prints these messages and
/// the API sends them with [`ExportError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("there is no dataset {name:?}; `wharf dataset list` (GET /api/v1/datasets) shows them")]
    UnknownDataset { name: String },
    #[error(
        "there is no export format {format:?}; the formats are: {}",
        list(known)
    )]
    UnknownFormat { format: String, known: Vec<String> },
    #[error("export format {format}: parameter {param:?} {message}")]
    InvalidParam {
        format: String,
        param: String,
        message: String,
    },
    #[error(
        "another export of the same dataset, format and parameters has been running for longer than \
         {waited_ms} ms; retry in a moment"
    )]
    Busy { waited_ms: u64 },
    #[error(
        "destination {destination:?} is not configured, so nothing can point at copies on it; \
         `wharf sql \"select name from destinations\"` lists the configured destinations"
    )]
    UnknownDestination { destination: String },
    #[error(
        "destination {destination:?} has no verified copy of {missing} of the {total} files of dataset \
         {dataset:?} ({}); sync them to it and request the export again, or choose a destination \
         that has them all",
        named(first, *missing)
    )]
    NotOnDestination {
        destination: String,
        dataset: String,
        missing: usize,
        total: usize,
        /// The first files missing (at most [`NAMED_FILES`]), by name.
        first: Vec<String>,
    },
    #[error("{0}")]
    Failed(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none (no exporter plugin is loaded)".into()
    } else {
        names.join(", ")
    }
}

/// "a, b, c and 4 more".
fn named(first: &[String], all: usize) -> String {
    let more = all.saturating_sub(first.len());
    if more == 0 {
        first.join(", ")
    } else {
        format!("{} and {more} more", first.join(", "))
    }
}

impl ExportError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            ExportError::UnknownDataset { .. } | ExportError::UnknownFormat { .. } => 404,
            ExportError::InvalidParam { .. } => 422,
            ExportError::UnknownDestination { .. } | ExportError::NotOnDestination { .. } => 409,
            ExportError::Busy { .. } => 429,
            ExportError::Failed(_) | ExportError::Internal(_) => 500,
        }
    }

    /// A stable, machine-readable name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::UnknownDataset { .. } => "unknown_dataset",
            ExportError::UnknownFormat { .. } => "unknown_format",
            ExportError::InvalidParam { .. } => "invalid_params",
            ExportError::Busy { .. } => "busy",
            ExportError::UnknownDestination { .. } => "unknown_destination",
            ExportError::NotOnDestination { .. } => "not_on_destination",
            ExportError::Failed(_) => "export_failed",
            ExportError::Internal(_) => "internal",
        }
    }
}

/// What a request comes to.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A cache hit (touched).
    Cached(ExportRow),
    /// A miss: this job makes it.
    Run { key: ExportKey, request: Request },
}

/// The payload of an `export` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPayload {
    pub dataset: String,
    pub entity: i64,
    pub version: i64,
    pub format: String,
    /// Complete (defaults filled in), in key order.
    pub params: Params,
    pub params_sha256: String,
}

impl ExportPayload {
    pub fn key(&self) -> ExportKey {
        ExportKey {
            entity: EntityId(self.entity),
            version: self.version,
            format: self.format.clone(),
            params_sha256: self.params_sha256.clone(),
        }
    }
}

/// The single-flight key and lease name of a cache key.
pub fn key_name(key: &ExportKey) -> String {
    format!(
        "export:{}:{}:{}:{}",
        key.entity.0, key.version, key.format, key.params_sha256
    )
}

/// Checks `request` and answers it from the cache, or says which job makes
/// it. Touches the dataset's `last_export_ms`, and a hit's `last_access_ms`.
/// Blocking (index reads and one write).
pub fn plan(
    index: &Index,
    exporters: &Exporters,
    request: &ExportRequest,
) -> Result<Planned, ExportError> {
    let Some((entity, version, last_export_ms)) = index.dataset_version(&request.dataset)? else {
        return Err(ExportError::UnknownDataset {
            name: request.dataset.clone(),
        });
    };
    let Some(plugin) = exporters.get(&request.format) else {
        return Err(ExportError::UnknownFormat {
            format: request.format.clone(),
            known: exporters.names(),
        });
    };
    let params = complete_params(&plugin, &request.params)?;
    if params.iter().any(|(name, _)| name == DESTINATION_PARAM) {
        let snapshot = index.export_snapshot(&request.dataset)?.ok_or_else(|| {
            ExportError::UnknownDataset {
                name: request.dataset.clone(),
            }
        })?;
        check_destination(index, &snapshot, &params)?;
    }
    let params_sha256 = params_sha256(&params);
    let key = ExportKey {
        entity,
        version,
        format: request.format.clone(),
        params_sha256: params_sha256.clone(),
    };
    let now = now_ms();
    // A hit whose entry and dataset were touched within the last
    // TOUCH_GRANULARITY_MS needs no write: the cache's TTL is hours, and
    // skipping the write keeps a stream of hits off the single writer.
    let recently = |at_ms: i64| now.saturating_sub(at_ms) < TOUCH_GRANULARITY_MS;
    if last_export_ms.is_some_and(recently)
        && let Some(hit) = index.cached_export(&key)?
        && recently(hit.last_access_ms)
    {
        return Ok(Planned::Cached(hit));
    }
    if let Some(hit) = index.request_export(&key, now)? {
        return Ok(Planned::Cached(hit));
    }
    let payload = ExportPayload {
        dataset: request.dataset.clone(),
        entity: entity.0,
        version,
        format: request.format.clone(),
        params,
        params_sha256,
    };
    let payload = serde_json::to_string(&payload).context("encoding the export job")?;
    Ok(Planned::Run {
        request: Request::keyed(EXPORT, &key_name(&key), &payload),
        key,
    })
}

/// The parameters checked against the plugin's specs, defaults filled in,
/// sorted by name: every name known, each given once, every required one
/// present.
fn complete_params(plugin: &Plugin, given: &Params) -> Result<Params, ExportError> {
    let specs = &plugin.info.params;
    let invalid = |param: &str, message: String| ExportError::InvalidParam {
        format: plugin.name.clone(),
        param: param.to_owned(),
        message,
    };
    let mut params = BTreeMap::new();
    for (name, value) in given {
        if !specs.iter().any(|spec| &spec.name == name) {
            let known: Vec<String> = specs.iter().map(|spec| spec.name.clone()).collect();
            return Err(invalid(
                name,
                if known.is_empty() {
                    "is not a parameter of this format, which takes none".into()
                } else {
                    format!(
                        "is not a parameter of this format; its parameters are: {}",
                        known.join(", ")
                    )
                },
            ));
        }
        if params.insert(name.clone(), value.clone()).is_some() {
            return Err(invalid(name, "is given twice; give it once".into()));
        }
    }
    for spec in specs {
        if params.contains_key(&spec.name) {
            continue;
        }
        match (&spec.default_value, spec.required) {
            (Some(default), _) => {
                params.insert(spec.name.clone(), default.clone());
            }
            (None, true) => {
                return Err(invalid(
                    &spec.name,
                    format!(
                        "is required ({}); give it with --param {}=VALUE",
                        spec.description, spec.name
                    ),
                ));
            }
            (None, false) => {}
        }
    }
    Ok(params.into_iter().collect())
}

/// The exporter parameter that names a sync destination whose verified
/// copies the result points at instead of holding the bytes (a
/// manifest-only backup: `backup-lite`). For a format that takes it, the
/// host checks before queuing, and again on the snapshot the plugin gets,
/// that the destination is configured and holds a verified copy (of the
/// file's sha256) of every file: the refusal names the destination and the
/// first files missing (HTTP 409), and nothing is cached.
pub const DESTINATION_PARAM: &str = "destination";

/// How precisely a request records when a dataset and a cache entry were
/// last asked for (`last_export_ms`, `last_access_ms`).
const TOUCH_GRANULARITY_MS: i64 = 1000;

/// How many missing files a refusal names.
const NAMED_FILES: usize = 5;

/// The destination check of [`DESTINATION_PARAM`] on `snapshot`.
fn check_destination(
    index: &Index,
    snapshot: &ExportSnapshot,
    params: &Params,
) -> Result<(), ExportError> {
    let Some((_, destination)) = params.iter().find(|(name, _)| name == DESTINATION_PARAM) else {
        return Ok(());
    };
    if !index
        .unknown_destinations(std::slice::from_ref(destination))?
        .is_empty()
    {
        return Err(ExportError::UnknownDestination {
            destination: destination.clone(),
        });
    }
    let missing: Vec<&str> = snapshot
        .files
        .iter()
        .filter(|file| {
            !file
                .remote_copies
                .iter()
                .any(|copy| &copy.destination == destination && copy.sha256 == file.sha256)
        })
        .map(|file| plugin_name(&file.path))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ExportError::NotOnDestination {
        destination: destination.clone(),
        dataset: snapshot.name.clone(),
        missing: missing.len(),
        total: snapshot.files.len(),
        first: missing
            .iter()
            .take(NAMED_FILES)
            .map(|name| (*name).to_owned())
            .collect(),
    })
}

/// A tracked file's name as plugins (and refusals) call it: its index path
/// relative to `files/`.
fn plugin_name(path: &str) -> &str {
    path.strip_prefix(store::FILES)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(path)
}

/// The sha256 of a complete, sorted parameter list: the cache key's part
/// that keeps different parameters apart.
pub fn params_sha256(params: &Params) -> String {
    let canonical = serde_json::to_vec(params).unwrap_or_default();
    hex::encode(Sha256::digest(canonical))
}

/// The `export` job: one cache key's export, under its lease.
pub struct ExportJob {
    data_dir: DataDir,
    index: Arc<Index>,
    exporters: Arc<Exporters>,
    config: SharedConfig,
}

impl ExportJob {
    pub fn new(
        data_dir: DataDir,
        index: Arc<Index>,
        exporters: Arc<Exporters>,
        config: SharedConfig,
    ) -> ExportJob {
        ExportJob {
            data_dir,
            index,
            exporters,
            config,
        }
    }

    fn settings(&self) -> ExportsConfig {
        in_force(&self.config).exports.clone()
    }
}

impl Handler for ExportJob {
    fn run(&self, job: &JobContext<'_>) -> Result<(), JobError> {
        let payload: ExportPayload = serde_json::from_str(job.payload).map_err(|error| {
            JobError::Terminal(anyhow::anyhow!("not an export job's payload: {error}"))
        })?;
        let key = payload.key();
        let settings = self.settings();
        let _lease = match Lease::acquire(
            self.index.clone(),
            &key_name(&key),
            Duration::from_millis(settings.lease_ttl_ms),
            Duration::from_millis(settings.acquire_timeout_ms),
        ) {
            Ok(lease) => lease,
            Err(LeaseError::Timeout { waited, .. }) => {
                return Err(JobError::Transient(
                    ExportError::Busy {
                        waited_ms: waited.as_millis() as u64,
                    }
                    .into(),
                ));
            }
            Err(LeaseError::Index(error)) => return Err(JobError::Transient(error)),
        };
        if self
            .index
            .cached_export(&key)
            .map_err(JobError::Transient)?
            .is_some()
        {
            tracing::debug!(job_id = job.id.0, dataset = %payload.dataset, format = %payload.format, "export already cached");
            return Ok(());
        }
        let snapshot = self
            .index
            .export_snapshot(&payload.dataset)
            .map_err(JobError::Transient)?
            .filter(|snapshot| snapshot.entity == key.entity)
            .ok_or_else(|| {
                JobError::Terminal(anyhow::anyhow!(
                    "dataset {:?} was removed after the export was requested",
                    payload.dataset
                ))
            })?;
        if snapshot.version != payload.version {
            return Err(JobError::Terminal(anyhow::anyhow!(
                "dataset {:?} changed after the export was requested (version {} → {}); request it again",
                payload.dataset,
                payload.version,
                snapshot.version
            )));
        }
        check_destination(&self.index, &snapshot, &payload.params)
            .map_err(|error| JobError::Terminal(error.into()))?;
        let plugin = self.exporters.get(&payload.format).ok_or_else(|| {
            JobError::Terminal(
                ExportError::UnknownFormat {
                    format: payload.format.clone(),
                    known: self.exporters.names(),
                }
                .into(),
            )
        })?;
        if job.cancelled() {
            return Err(JobError::Cancelled);
        }
        let total = snapshot.files.iter().map(|file| file.size).sum();
        job.progress(0, Some(total));
        let id = run_export(&self.data_dir, &self.index, &plugin, &snapshot, &payload).map_err(
            |error| match error {
                RunError::Plugin(error) if error.class() == ErrorClass::Transient => {
                    JobError::Transient(anyhow::anyhow!(
                        "export format {}: {error}",
                        payload.format
                    ))
                }
                RunError::Plugin(error) => {
                    JobError::Terminal(anyhow::anyhow!("export format {}: {error}", payload.format))
                }
                RunError::Host(error) => JobError::Transient(error),
            },
        )?;
        job.progress(total, Some(total));
        tracing::info!(job_id = job.id.0, export_id = id.0, dataset = %payload.dataset, format = %payload.format, "export cached");
        Ok(())
    }
}

enum RunError {
    Plugin(CallError),
    Host(anyhow::Error),
}

impl From<anyhow::Error> for RunError {
    fn from(error: anyhow::Error) -> Self {
        RunError::Host(error)
    }
}

/// Runs the plugin into `tmp/`, places the result at its key's path and
/// commits it. The caller holds the key's lease.
fn run_export(
    data_dir: &DataDir,
    index: &Index,
    plugin: &Plugin,
    snapshot: &ExportSnapshot,
    payload: &ExportPayload,
) -> Result<crate::index::ExportId, RunError> {
    let files = call_files(data_dir, snapshot)?;
    let entity = Entity {
        name: snapshot.name.clone(),
        version: snapshot.version as u64,
        last_export_ms: snapshot.last_export_ms,
        attributes: snapshot.attributes.clone(),
    };
    std::fs::create_dir_all(data_dir.tmp_dir()).context("cannot create the tmp directory")?;
    let tmp = data_dir.new_tmp_path(&payload.format);
    let exported = plugin
        .export(&entity, &files, &payload.params, &tmp)
        .map_err(RunError::Plugin)?;
    let outcome = place_and_commit(data_dir, index, &tmp, &exported, payload);
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome.map_err(RunError::Host)
}

fn place_and_commit(
    data_dir: &DataDir,
    index: &Index,
    tmp: &Path,
    exported: &Exported,
    payload: &ExportPayload,
) -> anyhow::Result<crate::index::ExportId> {
    let relative = store::export_path(
        payload.entity,
        payload.version,
        &payload.format,
        &payload.params_sha256,
        &exported.result.file_name,
    );
    let target = data_dir
        .resolve(&relative)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    // Under the key's lease an unindexed file at the key's path can only be
    // a run that crashed between the rename and the commit.
    if target.symlink_metadata().is_ok() && !index.is_indexed(&relative)? {
        tracing::info!(path = %relative, "removing the result of an export that crashed before its commit");
        std::fs::remove_file(&target)
            .with_context(|| format!("cannot remove {}", target.display()))?;
    }
    store::place(tmp, &target)
        .with_context(|| format!("cannot place the export at {}", target.display()))?;
    let committed = (|| {
        if let Some(parent) = target.parent() {
            store::sync_dir(parent)?;
        }
        let mtime_ms = std::fs::metadata(&target)?
            .modified()
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        index.commit_export(
            &NewExport {
                key: payload.key(),
                path: relative.clone(),
                size: exported.size,
                sha256: exported.sha256.clone(),
                mtime_ms,
                media_type: exported.result.media_type.clone(),
            },
            now_ms(),
        )
    })();
    if committed.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    committed
}

/// The snapshot's files as the plugin is told of them.
fn call_files(data_dir: &DataDir, snapshot: &ExportSnapshot) -> anyhow::Result<Vec<CallFile>> {
    snapshot
        .files
        .iter()
        .map(|file| {
            let path = data_dir
                .resolve(&file.path)
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            let name = plugin_name(&file.path).to_owned();
            Ok(CallFile {
                name,
                size: file.size,
                sha256: file.sha256.clone(),
                kind: file.kind.clone(),
                created_ms: file.created_ms,
                modified_ms: file.mtime_ms,
                remote_copies: file
                    .remote_copies
                    .iter()
                    .map(|copy| RemoteCopy {
                        destination: copy.destination.clone(),
                        remote_ref: copy.remote_ref.clone(),
                        sha256: copy.sha256.clone(),
                    })
                    .collect(),
                path,
            })
        })
        .collect()
}

/// The export a finished `export` job made, found by its payload's key.
pub fn export_of_job(index: &Index, payload: &str) -> anyhow::Result<Option<ExportRow>> {
    let Ok(payload) = serde_json::from_str::<ExportPayload>(payload) else {
        return Ok(None);
    };
    index.cached_export(&payload.key())
}

/// The exporters of a freshly loaded plugin set, for a process without a
/// daemon (the CLI). Plugins that fail to load are left out (their errors
/// are logged); a format among them is then an unknown one.
pub fn load_exporters(config: &Config, data_dir: &DataDir) -> anyhow::Result<Exporters> {
    let runtime =
        crate::runtime::Runtime::new(config.runtime_config(&data_dir.compiled_cache_dir()))?;
    let report = crate::plugins::load_all(&runtime, config, &data_dir.plugins_dir());
    for error in &report.errors {
        tracing::warn!(error = %error, "plugin not loaded");
    }
    Ok(Exporters::new(World::Exporter, &report.registry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_hash_depends_on_every_name_and_value() {
        let a = params_sha256(&vec![("a".into(), "1".into())]);
        assert_ne!(a, params_sha256(&vec![("a".into(), "2".into())]));
        assert_ne!(a, params_sha256(&vec![("b".into(), "1".into())]));
        assert_ne!(
            params_sha256(&vec![("a".into(), "1=b".into())]),
            params_sha256(&vec![("a=1".into(), "b".into())])
        );
        assert_eq!(a.len(), 64);
    }
}
