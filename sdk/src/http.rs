//! Outbound HTTP(S) for uploaders. The host connects only to the hosts the
//! destination allows (on every redirect too), streams file-range bodies
//! from disk, and signs requests with a credential you name, so no secret
//! ever enters the plugin.
//!
//! ```no_run
//! # fn f(file: &wharf_sdk::File) -> Result<(), wharf_sdk::PluginError> {
//! use wharf_sdk::http::{self, Request};
//! let response = http::send(
//!     &Request::put("https://s3.example.com/bucket/key")
//!         .header("content-type", "application/octet-stream")
//!         .file_range(file, 0, file.size())
//!         .credential("s3"),
//! )?;
//! assert!(response.is_success());
//! # Ok(()) }
//! ```

#[cfg(target_arch = "wasm32")]
use crate::__bindings::uploader::wharf::plugin::http as imports;
use crate::{File, PluginError};

pub use crate::__bindings::uploader::wharf::plugin::http::{Method, Response};

/// What a request carries.
#[derive(Debug)]
pub enum Body<'a> {
    Empty,
    Bytes(Vec<u8>),
    /// A byte range of a file handed to this call, streamed by the host.
    FileRange {
        file: &'a File,
        offset: u64,
        len: u64,
    },
}

/// An HTTP request, built with [`Request::new`] or a method shortcut.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Body<'a>,
    /// A credential of the destination, by name, for the host to sign with.
    pub credential: Option<String>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Body::Empty,
            credential: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    pub fn head(url: impl Into<String>) -> Self {
        Request::new(Method::Head, url)
    }

    pub fn put(url: impl Into<String>) -> Self {
        Request::new(Method::Put, url)
    }

    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    pub fn delete(url: impl Into<String>) -> Self {
        Request::new(Method::Delete, url)
    }

    /// Adds a header. Framing headers (`content-length`, `host`, …) are the
    /// host's and are ignored.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends these bytes.
    pub fn bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(bytes.into());
        self
    }

    /// Sends `len` bytes at `offset` of `file`, streamed by the host.
    pub fn file_range(mut self, file: &'a File, offset: u64, len: u64) -> Self {
        self.body = Body::FileRange { file, offset, len };
        self
    }

    /// Has the host sign the request with the destination's credential
    /// called `name` (see `Destination::credentials`).
    pub fn credential(mut self, name: impl Into<String>) -> Self {
        self.credential = Some(name.into());
        self
    }
}

impl Response {
    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A `Retry-After` header in seconds, as milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        let seconds: u64 = self.header("retry-after")?.trim().parse().ok()?;
        Some(seconds.saturating_mul(1000))
    }
}

/// Sends a request and returns the response.
pub fn send(request: &Request<'_>) -> Result<Response, PluginError> {
    #[cfg(target_arch = "wasm32")]
    {
        let body = match &request.body {
            Body::Empty => imports::Body::Empty,
            Body::Bytes(bytes) => imports::Body::Bytes(bytes.clone()),
            Body::FileRange { file, offset, len } => imports::Body::FileRange(imports::FileRange {
                file: &file.inner,
                offset: *offset,
                len: *len,
            }),
        };
        return imports::send(&imports::Request {
            method: request.method,
            url: request.url.clone(),
            headers: request.headers.clone(),
            body,
            credential: request.credential.clone(),
        });
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.send(request))
}
