//! The `/api/v1` handlers. Each reads or writes the index on a blocking
//! thread and answers JSON.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, download};
use crate::export::{self, ExportRequest, Planned};
use crate::index::{Enqueued, ExportId, FileId, JobId};
use crate::jobs::{JobRow, Request as JobRequest, Trigger, Waker};
use crate::views::{dataset_json, export_json, file_json, job_json};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/datasets", get(datasets))
        .route("/api/v1/datasets/{name}", get(dataset))
        .route("/api/v1/datasets/{name}/exports", post(request_export))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/exports", get(exports))
        .route("/api/v1/exports/{id}/download", get(download_export))
        .route("/api/v1/files", get(files))
        .route("/api/v1/files/{id}", get(file))
        .route("/api/v1/cleanup", post(request_cleanup))
        .route("/api/v1/openapi.json", get(openapi))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wharf",
        description = "Datasets, exports (202 and a job, then 201 and a download), files and jobs. \
        Every route but /healthz needs `Authorization: Bearer TOKEN` (DATA_DIR/api-token); errors are JSON {error, message}."
    ),
    paths(
        datasets,
        dataset,
        request_export,
        job,
        exports,
        download_export,
        files,
        file,
        request_cleanup,
        openapi
    )
)]
pub(super) struct ApiDoc;

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document, OpenAPI 3.1")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// Runs blocking index work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

fn no_dataset(name: &str) -> ApiError {
    ApiError::not_found(
        "unknown_dataset",
        format!("there is no dataset {name:?}; GET /api/v1/datasets lists them"),
    )
}

#[utoipa::path(get, path = "/api/v1/datasets", tag = "datasets",
    responses((status = 200, description = "Every dataset: files, bytes, version, attributes, cached exports, last export")))]
async fn datasets(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let rows = state.index.datasets().map_err(ApiError::internal)?;
        Ok(Json(
            json!({ "datasets": rows.iter().map(dataset_json).collect::<Vec<_>>() }),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/datasets/{name}", tag = "datasets",
    params(("name" = String, Path, description = "The dataset")),
    responses((status = 200, description = "The dataset and its cached exports"), (status = 404, description = "No such dataset")))]
async fn dataset(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let row = state
            .index
            .dataset(&name)
            .map_err(ApiError::internal)?
            .ok_or_else(|| no_dataset(&name))?;
        let exports = state
            .index
            .exports(Some(&name), None, 100)
            .map_err(ApiError::internal)?;
        let mut value = dataset_json(&row);
        value["cached_exports"] = exports.iter().map(export_json).collect();
        Ok(Json(value))
    })
    .await
}

/// The body of an export request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    format: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

fn download_location(id: ExportId) -> String {
    format!("/api/v1/exports/{}/download", id.0)
}

#[utoipa::path(post, path = "/api/v1/datasets/{name}/exports", tag = "exports",
    params(("name" = String, Path, description = "The dataset")),
    request_body(content_type = "application/json", description = "{\"format\": \"tar-export\", \"params\": {\"key\": \"value\"}}"),
    responses(
        (status = 201, description = "Cached: Location is the download"),
        (status = 202, description = "A job makes it: Location is the job"),
        (status = 404, description = "Unknown dataset or format (the formats there are are named)"),
        (status = 422, description = "A parameter the format does not take, or a missing required one (named)"),
        (status = 429, description = "Busy: retry after Retry-After")))]
async fn request_export(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<ExportBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "{}; send JSON like {{\"format\": \"tar-export\", \"params\": {{}}}} with Content-Type: application/json",
                rejection.body_text()
            ),
        )
    })?;
    let request = ExportRequest {
        dataset: name,
        format: body.format,
        params: body.params.into_iter().collect(),
    };
    let waker = state.waker.clone();
    let planned = blocking(
        move || match export::plan(&state.index, &state.exporters, &request)? {
            Planned::Cached(hit) => Ok(Ok(hit)),
            Planned::Run { request, .. } => Ok(Err(enqueue(&state, &request)?)),
        },
    )
    .await?;
    match planned {
        Ok(hit) => {
            let location = download_location(hit.id);
            let mut response = (
                StatusCode::CREATED,
                Json(json!({ "export": export_json(&hit), "download": location })),
            )
                .into_response();
            set_location(&mut response, &location);
            Ok(response)
        }
        Err((enqueued, row)) => Ok(accepted(&enqueued, &row, waker.as_ref())),
    }
}

/// Queues `request` as an API-triggered job and reads back its row.
/// Blocking: call it inside [`blocking`].
fn enqueue(state: &ApiState, request: &JobRequest) -> Result<(Enqueued, JobRow), ApiError> {
    let enqueued = state
        .queue
        .enqueue(request, Trigger::Api)
        .map_err(ApiError::internal)?;
    let row = state
        .index
        .job(enqueued.id())
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the job vanished"))?;
    Ok((enqueued, row))
}

/// 202 with the job and its `Location`, waking the pool for a new job.
fn accepted(enqueued: &Enqueued, row: &JobRow, waker: Option<&Waker>) -> Response {
    if matches!(enqueued, Enqueued::Queued(_))
        && let Some(waker) = waker
    {
        waker.wake();
    }
    let location = format!("/api/v1/jobs/{}", row.id.0);
    let mut response =
        (StatusCode::ACCEPTED, Json(json!({ "job": job_json(row) }))).into_response();
    set_location(&mut response, &location);
    response
}

#[derive(Debug, Deserialize)]
struct CleanupQuery {
    mode: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/cleanup", tag = "cleanup",
    params(("mode" = Option<String>, Query,
        description = "full (default): finish interrupted deletions, every retention policy, then orphan GC; gc: orphan GC only")),
    responses(
        (status = 202, description = "The cleanup job (single-flight: a trigger while one runs makes exactly one more run; a full cleanup absorbs a pending gc); Location is the job"),
        (status = 422, description = "A mode other than full or gc")))]
async fn request_cleanup(
    State(state): State<ApiState>,
    Query(query): Query<CleanupQuery>,
) -> Result<Response, ApiError> {
    let request = match query.mode.as_deref().unwrap_or("full") {
        "full" => JobRequest::full_cleanup(),
        "gc" => JobRequest::gc(),
        other => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_mode",
                format!("{other:?} is not a cleanup mode: use mode=full or mode=gc"),
            ));
        }
    };
    let waker = state.waker.clone();
    let (enqueued, row) = blocking(move || enqueue(&state, &request)).await?;
    Ok(accepted(&enqueued, &row, waker.as_ref()))
}

fn set_location(response: &mut Response, location: &str) {
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "The job")),
    responses((status = 200, description = "The job; a done export job names its download"), (status = 404, description = "No such job")))]
async fn job(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let row = state
            .index
            .job(JobId(id))
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("unknown_job", format!("there is no job {id}")))?;
        let mut value = json!({ "job": job_json(&row) });
        if row.kind == export::EXPORT
            && let Some(made) =
                export::export_of_job(&state.index, &row.payload).map_err(ApiError::internal)?
        {
            value["export"] = export_json(&made);
            value["download"] = download_location(made.id).into();
        }
        Ok(Json(value))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportsQuery {
    dataset: Option<String>,
    /// Only exports with a smaller id (the `next` of the previous page).
    before: Option<i64>,
    limit: Option<usize>,
}

const MAX_PAGE: usize = 1000;

#[utoipa::path(get, path = "/api/v1/exports", tag = "exports",
    params(("dataset" = Option<String>, Query, description = "Only this dataset's"), ("before" = Option<i64>, Query, description = "The previous page's next"), ("limit" = Option<usize>, Query, description = "At most this many (1..1000, default 100)")),
    responses((status = 200, description = "Cached exports, newest first, and the next page's `before`")))]
async fn exports(
    State(state): State<ApiState>,
    Query(query): Query<ExportsQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let rows = state
            .index
            .exports(query.dataset.as_deref(), query.before.map(ExportId), limit)
            .map_err(ApiError::internal)?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|row| row.id.0))
            .flatten();
        Ok(Json(
            json!({ "exports": rows.iter().map(export_json).collect::<Vec<_>>(), "next": next }),
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesQuery {
    dataset: Option<String>,
    /// Only files with a larger id (the `next` of the previous page).
    after: Option<i64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/files", tag = "files",
    params(("dataset" = Option<String>, Query, description = "Only this dataset's"), ("after" = Option<i64>, Query, description = "The previous page's next"), ("limit" = Option<usize>, Query, description = "At most this many (1..1000, default 100)")),
    responses((status = 200, description = "Files in id order and the next page's `after`")))]
async fn files(
    State(state): State<ApiState>,
    Query(query): Query<FilesQuery>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
        let rows = state
            .index
            .files_page(query.dataset.as_deref(), query.after.map(FileId), limit)
            .map_err(ApiError::internal)?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|row| row.id.0))
            .flatten();
        Ok(Json(
            json!({ "files": rows.iter().map(file_json).collect::<Vec<_>>(), "next": next }),
        ))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/files/{id}", tag = "files",
    params(("id" = i64, Path, description = "The file")),
    responses((status = 200, description = "The file"), (status = 404, description = "No such file")))]
async fn file(State(state): State<ApiState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let row = state
            .index
            .file(FileId(id))
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("unknown_file", format!("there is no file {id}")))?;
        Ok(Json(file_json(&row)))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/exports/{id}/download", tag = "exports",
    params(("id" = i64, Path, description = "The export"), ("Range" = Option<String>, Header, description = "One byte range"), ("If-None-Match" = Option<String>, Header, description = "The ETag (sha256) you have")),
    responses((status = 200, description = "The export, streamed; ETag is its sha256"), (status = 206, description = "The range asked for"), (status = 304, description = "Unchanged"), (status = 404, description = "No such export, or its file was cleaned up"), (status = 416, description = "The range is outside the export")))]
async fn download_export(
    State(state): State<ApiState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download::download(state, ExportId(id), headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let document = <ApiDoc as utoipa::OpenApi>::openapi();
        let documented: Vec<&String> = document.paths.paths.keys().collect();
        let source = include_str!("routes.rs");
        let routes: Vec<&str> = source
            .match_indices(".route(\"")
            .filter_map(|(at, found)| source[at + found.len()..].split('"').next())
            .collect();
        assert!(routes.len() >= 9, "{routes:?}");
        for route in routes {
            assert!(
                documented.iter().any(|path| path.as_str() == route),
                "{route} is routed but not in the OpenAPI document: annotate its handler with #[utoipa::path] and list it in ApiDoc"
            );
        }
        let json = serde_json::to_value(&document).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
