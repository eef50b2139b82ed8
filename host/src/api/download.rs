//! `GET /api/v1/exports/{id}/download`: the export's file streamed from
//! disk (64 KiB at a time, never whole in memory), with its sha256 as a
//! strong `ETag`, `If-None-Match` (304), and one `Range` of bytes (206, or
//! 416 when it cannot be satisfied). A download touches the entry's
//! `last_access_ms`, extending its life in the cache.
//!
//! A download holds a `download:<file id>:…` lease on the export's file
//! while it streams, so retention leaves the file alone; it takes the lease
//! first and then reads the entry again, so a file marked for deletion
//! just before is answered as gone rather than served.

use std::io::{Seek, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use super::{ApiError, ApiState};
use crate::index::{ExportId, download_lease_name, now_ms};
use crate::lease::{self, Lease};

const CHUNK: usize = 64 << 10;

/// The lease a download holds on its file, renewed every third of it.
const DOWNLOAD_LEASE: Duration = Duration::from_secs(30);

/// What to send, decided on a blocking thread.
enum Plan {
    NotModified(String),
    Send {
        file: std::fs::File,
        lease: Lease,
        etag: String,
        size: u64,
        /// Inclusive byte range, when a `Range` was asked for.
        range: Option<(u64, u64)>,
        media_type: String,
        file_name: String,
    },
    Unsatisfiable(u64),
}

pub(super) async fn download(
    state: ApiState,
    id: ExportId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let range = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let plan = tokio::task::spawn_blocking(move || -> Result<Plan, ApiError> {
        let row = state
            .index
            .export(id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("unknown_export", format!("there is no export {}", id.0)))?;
        let gone = |dataset: &str| {
            ApiError::not_found(
                "export_gone",
                format!(
                    "export {} has no file any more (removed by cleanup); request it again with POST /api/v1/datasets/{}/exports",
                    id.0, dataset
                ),
            )
        };
        let Some(file) = row.file.filter(|_| row.is_ready()) else {
            return Err(gone(&row.dataset));
        };
        // The lease first, then the entry again: a deletion marked before
        // the lease shows there, and one after it sees the lease.
        static DOWNLOADS: AtomicU64 = AtomicU64::new(0);
        let unique = format!("{}#{}", lease::this_process(), DOWNLOADS.fetch_add(1, Ordering::Relaxed));
        let lease = Lease::acquire(
            state.index.clone(),
            &download_lease_name(file, &unique),
            DOWNLOAD_LEASE,
            Duration::from_secs(1),
        )
        .map_err(ApiError::internal)?;
        let row = state
            .index
            .export(id)
            .map_err(ApiError::internal)?
            .filter(|row| row.file == Some(file))
            .ok_or_else(|| gone(&row.dataset))?;
        let (Some(path), Some(sha256), Some(size)) = (row.path.as_deref(), row.sha256.clone(), row.size) else {
            return Err(gone(&row.dataset));
        };
        let etag = format!("\"{sha256}\"");
        state.index.touch_export(id, now_ms()).map_err(ApiError::internal)?;
        if if_none_match
            .as_deref()
            .is_some_and(|tags| tags.trim() == "*" || tags.split(',').any(|tag| tag.trim() == etag))
        {
            return Ok(Plan::NotModified(etag));
        }
        let range = match range.as_deref().map(|text| parse_range(text, size)) {
            None | Some(RangeAsk::Ignore) => None,
            Some(RangeAsk::Bytes(first, last)) => Some((first, last)),
            Some(RangeAsk::Unsatisfiable) => return Ok(Plan::Unsatisfiable(size)),
        };
        let real = state.data_dir.resolve(path).map_err(ApiError::internal)?;
        let mut file = std::fs::File::open(&real).map_err(ApiError::internal)?;
        if let Some((first, _)) = range {
            file.seek(SeekFrom::Start(first)).map_err(ApiError::internal)?;
        }
        let file_name = path.rsplit('/').next().unwrap_or("export").to_owned();
        Ok(Plan::Send {
            file,
            lease,
            etag,
            size,
            range,
            media_type: row.media_type.unwrap_or_else(|| "application/octet-stream".into()),
            file_name,
        })
    })
    .await
    .map_err(ApiError::internal)??;
    let response = match plan {
        Plan::NotModified(etag) => Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(Body::empty()),
        Plan::Unsatisfiable(size) => Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{size}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::json!({
                    "error": "range_not_satisfiable",
                    "message": format!("the export has {size} bytes; ask for a range inside them"),
                })
                .to_string(),
            )),
        Plan::Send {
            file,
            lease,
            etag,
            size,
            range,
            media_type,
            file_name,
        } => {
            let (status, length) = match range {
                Some((first, last)) => (StatusCode::PARTIAL_CONTENT, last - first + 1),
                None => (StatusCode::OK, size),
            };
            let mut builder = Response::builder()
                .status(status)
                .header(header::ETAG, etag)
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CONTENT_LENGTH, length)
                .header(header::CONTENT_TYPE, media_type)
                .header(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_str(&format!(
                        "attachment; filename=\"{}\"",
                        file_name.replace(['"', '\\'], "_")
                    ))
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
                );
            if let Some((first, last)) = range {
                builder = builder.header(
                    header::CONTENT_RANGE,
                    format!("bytes {first}-{last}/{size}"),
                );
            }
            builder.body(Body::from_stream(FileStream {
                file: tokio::fs::File::from_std(file),
                remaining: length,
                buffer: vec![0; CHUNK],
                lease: Some(lease),
            }))
        }
    };
    response.map_err(ApiError::internal)
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Not a single byte range we serve: send the whole file (RFC 9110 lets
    /// a server ignore Range).
    Ignore,
    /// Inclusive.
    Bytes(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range of a file of `size` bytes: `a-b`, `a-` or `-n`.
fn parse_range(text: &str, size: u64) -> RangeAsk {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(first), Ok(last)) if first <= last => Some((first, last.min(size.saturating_sub(1)))),
        (Ok(first), Err(_)) if last.is_empty() => Some((first, size.saturating_sub(1))),
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 {
                return RangeAsk::Unsatisfiable;
            }
            Some((size.saturating_sub(suffix), size.saturating_sub(1)))
        }
        _ => return RangeAsk::Ignore,
    };
    match parsed {
        Some((first, last)) if size > 0 && first < size && first <= last => {
            RangeAsk::Bytes(first, last)
        }
        _ => RangeAsk::Unsatisfiable,
    }
}

/// Reads `remaining` bytes of a file, a chunk per item, holding the
/// download's lease until the body is done with (sent or abandoned).
struct FileStream {
    file: tokio::fs::File,
    remaining: u64,
    buffer: Vec<u8>,
    lease: Option<Lease>,
}

impl Drop for FileStream {
    fn drop(&mut self) {
        // Releasing writes to the index: off the executor.
        if let Some(lease) = self.lease.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(lease))),
                Err(_) => drop(lease),
            }
        }
    }
}

impl futures_core::Stream for FileStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining).unwrap_or(CHUNK).min(CHUNK);
        let mut buffer = ReadBuf::new(&mut this.buffer[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut buffer) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Ready(Ok(())) => {
                let filled = buffer.filled();
                if filled.is_empty() {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the export is shorter than the index says",
                    ))));
                }
                this.remaining -= filled.len() as u64;
                Poll::Ready(Some(Ok(Bytes::copy_from_slice(filled))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Bytes(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsk::Bytes(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Bytes(90, 99));
        assert_eq!(parse_range("bytes=50-500", 100), RangeAsk::Bytes(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=9-1", 100), RangeAsk::Ignore);
    }
}
