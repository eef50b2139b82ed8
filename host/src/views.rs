//! JSON views of index rows, shared by the CLI's `--format json` and the
//! HTTP API, so both say the same thing in the same words.

use std::collections::BTreeMap;

use serde_json::json;

use crate::index::{DatasetRow, ExportRow, FileRow, JobRow};

pub fn dataset_json(row: &DatasetRow) -> serde_json::Value {
    json!({
        "name": row.name,
        "files": row.files,
        "bytes": row.bytes,
        "version": row.version,
        "last_export_ms": row.last_export_ms,
        "cached_exports": row.exports,
        "attributes": row.attributes.iter().cloned().collect::<BTreeMap<_, _>>(),
    })
}

pub fn export_json(row: &ExportRow) -> serde_json::Value {
    json!({
        "id": row.id.0,
        "dataset": row.dataset,
        "dataset_version": row.entity_version,
        "current": row.current,
        "format": row.format,
        "params_sha256": row.params_sha256,
        "ready": row.is_ready(),
        "size": row.size,
        "sha256": row.sha256,
        "media_type": row.media_type,
        "created_ms": row.created_ms,
        "last_access_ms": row.last_access_ms,
    })
}

pub fn file_json(row: &FileRow) -> serde_json::Value {
    json!({
        "id": row.id.0,
        "path": row.path,
        "size": row.size,
        "mtime_ms": row.mtime_ms,
        "sha256": row.sha256,
        "kind": row.kind,
        "dataset": row.entity,
        "state": row.state.as_str(),
        "created_ms": row.created_ms,
    })
}

pub fn job_json(row: &JobRow) -> serde_json::Value {
    json!({
        "id": row.id.0,
        "kind": row.kind,
        "unique_key": row.unique_key,
        "state": row.state.as_str(),
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "next_attempt_ms": row.next_attempt_ms,
        "owner": row.owner,
        "lease_expires_ms": row.lease_expires_ms,
        "rerun": row.rerun,
        "cancel_requested": row.cancel_requested,
        "progress": row.progress,
        "progress_total": row.progress_total,
        "payload": row.payload,
        "last_error": row.last_error,
        "created_ms": row.created_ms,
        "started_ms": row.started_ms,
        "finished_ms": row.finished_ms,
        "absorbed_by": row.absorbed_by.map(|job| job.0),
    })
}
