//! The `/api/v1` handlers. Each reads or writes the index on a blocking
//! thread and answers JSON.

use std::collections::BTreeMap;
use std::time::Duration;

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
use crate::index::{Enqueued, ExportId, ExportKey, ExportRow, FileId, JobId, JobState, now_ms};
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
    params(("name" = String, Path, description = "The dataset"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (seconds, at most 60): wait for the export job instead of answering 202 at once: 201 when the export is made in time, 503 when its job failed for now (e.g. another run of the same cache key outlasted [exports] acquire_timeout_ms) and retries after Retry-After, 500 when it failed for good, 202 when it is still at work. A waiting request counts toward [api] max_in_flight.")),
    request_body(content_type = "application/json", description = "{\"format\": \"tar-export\", \"params\": {\"key\": \"value\"}}"),
    responses(
        (status = 201, description = "Cached (or made while the request waited): Location is the download"),
        (status = 202, description = "A job makes it: Location is the job"),
        (status = 404, description = "Unknown dataset or format (the formats there are are named)"),
        (status = 409, description = "The format points at copies on a sync destination (parameter `destination`, e.g. backup-lite) that is not configured or has no verified copy of some files: the destination and the first files missing are named"),
        (status = 422, description = "A parameter the format does not take, or a missing required one (named)"),
        (status = 429, description = "Busy: too many requests in flight; retry after Retry-After"),
        (status = 500, description = "With Prefer: wait, the export job failed for good; its error is the message"),
        (status = 503, description = "With Prefer: wait, the export job failed for now and is retried; retry after Retry-After")))]
async fn request_export(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
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
    let wait = preferred_wait(&headers);
    let waker = state.waker.clone();
    let planning = state.clone();
    let planned =
        blocking(
            move || match export::plan(&planning.index, &planning.exporters, &request)? {
                Planned::Cached(hit) => Ok(Ok(hit)),
                Planned::Run { request, key } => Ok(Err((enqueue(&planning, &request)?, key))),
            },
        )
        .await?;
    match planned {
        Ok(hit) => Ok(created(&hit)),
        Err(((enqueued, row), key)) => {
            let response = accepted(&enqueued, &row, waker.as_ref());
            match wait {
                Some(wait) => wait_for_export(&state, row, key, wait, response).await,
                None => Ok(response),
            }
        }
    }
}

/// 201 with the export and its download as `Location`.
fn created(export: &ExportRow) -> Response {
    let location = download_location(export.id);
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "export": export_json(export), "download": location })),
    )
        .into_response();
    set_location(&mut response, &location);
    response
}

/// The longest `Prefer: wait` honoured.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting request looks at its job.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// `Prefer: wait=N` (RFC 7240), at most [`MAX_WAIT`].
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .find_map(|preference| {
            let (name, value) = preference.trim().split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
        .map(|seconds| Duration::from_secs(seconds).min(MAX_WAIT))
}

/// Follows the export job `job` for up to `wait`: 201 as soon as the export
/// of `key` is cached, 503 with `Retry-After` when the job failed for now
/// and waits for its retry, 500 when it failed for good, else `pending`
/// (the 202).
async fn wait_for_export(
    state: &ApiState,
    job: JobRow,
    key: ExportKey,
    wait: Duration,
    pending: Response,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let id = job.id;
    loop {
        let (index, key) = (state.index.clone(), key.clone());
        let (made, row) = blocking(move || {
            let made = index.cached_export(&key).map_err(ApiError::internal)?;
            let row = index.job(id).map_err(ApiError::internal)?;
            Ok((made, row))
        })
        .await?;
        if let Some(made) = made {
            let mut response = created(&made);
            response
                .headers_mut()
                .insert("preference-applied", HeaderValue::from_static("wait"));
            return Ok(response);
        }
        let Some(row) = row else {
            return Ok(pending);
        };
        match row.state {
            JobState::Failed | JobState::Cancelled => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "export_failed",
                    format!(
                        "export job {} {}: {}; GET /api/v1/jobs/{} has the details",
                        id.0,
                        row.state.as_str(),
                        row.last_error.as_deref().unwrap_or("no error recorded"),
                        id.0
                    ),
                ));
            }
            JobState::Queued if row.attempts > 0 && row.last_error.is_some() => {
                let retry_in_ms = row.next_attempt_ms.saturating_sub(now_ms()).max(0) as u64;
                let mut error = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "retry_later",
                    format!(
                        "export job {} failed for now and is retried (attempt {} of {}): {}; \
                         request again after Retry-After, or follow /api/v1/jobs/{}",
                        id.0,
                        row.attempts + 1,
                        row.max_attempts,
                        row.last_error.as_deref().unwrap_or(""),
                        id.0
                    ),
                );
                error.retry_after_s = Some(retry_in_ms.div_ceil(1000).max(1));
                return Err(error);
            }
            _ => {}
        }
        if tokio::time::Instant::now() + WAIT_POLL > deadline {
            return Ok(pending);
        }
        tokio::time::sleep(WAIT_POLL).await;
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
        (status = 202, description = "The cleanup job (single-flight: a trigger while one runs makes exactly one more run; a full cleanup absorbs a pending gc, whose job then ends cancelled with `absorbed_by` naming the cleanup job); Location is the job"),
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
    fn prefer_wait_is_read_among_other_preferences_and_capped() {
        let wait = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("prefer", HeaderValue::from_str(value).unwrap());
            }
            preferred_wait(&headers)
        };
        assert_eq!(wait(&[]), None);
        assert_eq!(wait(&["wait=5"]), Some(Duration::from_secs(5)));
        assert_eq!(
            wait(&["respond-async", "handling=lenient, Wait = 7"]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(wait(&["wait=100000"]), Some(MAX_WAIT));
        assert_eq!(wait(&["wait=soon"]), None);
    }

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
