//! The HTTP API `wharf run` serves (axum): datasets, exports (the CVAT
//! flow: `POST .../exports` → 202 and a job, or 201 and a `Location` when
//! cached; the job; the download), files and jobs, under `/api/v1`.
//!
//! - `routes.rs`: the handlers; every index read and write runs on a
//!   blocking thread, off the async executor. An export request with
//!   `Prefer: wait=N` follows its job instead of answering 202 at once.
//! - `download.rs`: a cached export streamed from disk with HTTP Range,
//!   `ETag` (its sha256) and `If-None-Match`.
//!
//! Invariant: every route but `/healthz` requires the bearer token of
//! `DATA_DIR/api-token` (created 0600 by `wharf init` or the first start),
//! compared in constant time; at most `[api] max_in_flight` requests are
//! handled at once and the rest get 429 with `Retry-After`; every error is
//! JSON `{error, message}` whose message says what to do.

mod download;
mod routes;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::ApiConfig;
use crate::export::Exporters;
use crate::index::Index;
use crate::jobs::{Queue, Waker};
use crate::store::DataDir;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub data_dir: DataDir,
    pub index: Arc<Index>,
    pub queue: Queue,
    /// Wakes the daemon's job pool after an enqueue.
    pub waker: Option<Waker>,
    pub exporters: Arc<Exporters>,
    token: Arc<str>,
    in_flight: Arc<Semaphore>,
}

impl ApiState {
    pub fn new(
        data_dir: DataDir,
        index: Arc<Index>,
        queue: Queue,
        waker: Option<Waker>,
        exporters: Arc<Exporters>,
        token: String,
        config: &ApiConfig,
    ) -> ApiState {
        ApiState {
            data_dir,
            index,
            queue,
            waker,
            exporters,
            token: token.into(),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight as usize)),
        }
    }
}

/// An error answer: `{error, message}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{error}; see the daemon's log"),
        )
    }
}

impl From<crate::export::ExportError> for ApiError {
    fn from(error: crate::export::ExportError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut api = ApiError::new(status, error.code(), error.to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            api.retry_after_s = Some(5);
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({ "error": self.code, "message": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The API's routes with their state, auth and concurrency bound.
pub fn router(state: ApiState) -> Router {
    let api = routes::routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), bound));
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(api)
        .fallback(|| async {
            ApiError::not_found(
                "no_route",
                "no such route; the routes are listed at /api/v1/openapi.json",
            )
        })
        .with_state(state)
}

/// At most `max_in_flight` requests at once; the rest are told to retry.
async fn bound(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "too many requests in flight ([api] max_in_flight); retry after the time in Retry-After",
        );
        error.retry_after_s = Some(1);
        return error.into_response();
    };
    next.run(request).await
}

/// The bearer token, compared in constant time.
async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the token of DATA_DIR/api-token as `Authorization: Bearer TOKEN`",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The API token of `data_dir`, created (32 random bytes, hex, mode 0600)
/// if there is none. Blocking.
pub fn token(data_dir: &DataDir) -> anyhow::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.api_token_path();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => anyhow::bail!(
            "{} is empty; remove it and run `wharf init` to make a new token",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => anyhow::bail!("cannot read the API token {}: {error}", path.display()),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("no randomness for the API token: {error}"))?;
    let token = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|error| {
            anyhow::anyhow!("cannot create the API token {}: {error}", path.display())
        })?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// Binds `[api] bind` and records the address in `DATA_DIR/api-address`.
pub async fn bind(
    config: &ApiConfig,
    data_dir: &DataDir,
) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(&config.bind).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot listen on {} (api.bind): {error}; choose another address in wharf.toml [api] bind, \
             or set [api] enabled = false",
            config.bind
        )
    })?;
    let address: SocketAddr = listener.local_addr()?;
    let path = data_dir.api_address_path();
    tokio::task::spawn_blocking(move || {
        crate::store::replace_file(&path, format!("{address}\n").as_bytes())
    })
    .await??;
    Ok(listener)
}

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A running API server; [`ApiServer::stop`] ends it.
pub struct ApiServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub address: SocketAddr,
}

impl ApiServer {
    /// Creates the token if needed, binds `[api] bind` and serves. An API
    /// that cannot start is logged as an error and the daemon goes on
    /// without it: its jobs matter more than its API.
    pub async fn start(
        config: &ApiConfig,
        data_dir: &DataDir,
        state_of: impl FnOnce(String) -> ApiState,
    ) -> Option<ApiServer> {
        if !config.enabled {
            return None;
        }
        let started = async {
            let token = {
                let data_dir = data_dir.clone();
                tokio::task::spawn_blocking(move || token(&data_dir)).await??
            };
            let listener = bind(config, data_dir).await?;
            anyhow::Ok((token, listener))
        };
        let (token, listener) = match started.await {
            Ok(started) => started,
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "the HTTP API is not served");
                return None;
            }
        };
        let state = state_of(token);
        let address = listener.local_addr().ok()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        tracing::info!(address = %address, "HTTP API listening");
        Some(ApiServer {
            stop,
            task,
            address,
        })
    }

    /// Stops accepting, lets requests in flight finish for up to `grace`,
    /// and removes `DATA_DIR/api-address`.
    pub async fn stop(self, data_dir: &DataDir, grace: std::time::Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("HTTP requests still in flight at shutdown were cut off");
        }
        let _ = std::fs::remove_file(data_dir.api_address_path());
    }
}
