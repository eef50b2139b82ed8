//! A mock host for testing plugin logic natively with `cargo test`.
//!
//! It behaves like the real host where a plugin can tell: only files added
//! with [`MockHost::with_file`] can be read or appended, ranges past the end
//! of a file are errors, and HTTP goes to a handler the test provides.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::host::Level;
use crate::http::{Body, Request, Response};
use crate::{FileId, PluginError};

type HttpHandler = Box<dyn FnMut(&Request, Vec<u8>) -> Result<Response, PluginError>>;

/// What the plugin saw and did during [`MockHost::run`].
pub struct MockHost {
    files: HashMap<FileId, Vec<u8>>,
    /// Clock value returned by `host::now_ms`.
    pub now_ms: i64,
    /// Everything the plugin logged, in order.
    pub logs: Vec<(Level, String)>,
    /// Everything an exporter wrote or appended, in order.
    pub output: Vec<u8>,
    http: Option<HttpHandler>,
}

thread_local! {
    static CURRENT: RefCell<Option<MockHost>> = const { RefCell::new(None) };
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    pub fn new() -> Self {
        MockHost {
            files: HashMap::new(),
            now_ms: 1_700_000_000_000,
            logs: Vec::new(),
            output: Vec::new(),
            http: None,
        }
    }

    /// Hands a file with this content to the call.
    pub fn with_file(mut self, id: FileId, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(id, content.into());
        self
    }

    pub fn with_now_ms(mut self, now_ms: i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Answers `http::send`; the handler gets the request and its body bytes
    /// (a file-range body is resolved to the bytes the host would stream).
    pub fn with_http(
        mut self,
        handler: impl FnMut(&Request, Vec<u8>) -> Result<Response, PluginError> + 'static,
    ) -> Self {
        self.http = Some(Box::new(handler));
        self
    }

    /// Runs `call` with this mock installed as the host of the current thread.
    pub fn run<R>(&mut self, call: impl FnOnce() -> R) -> R {
        let host = std::mem::take(self);
        CURRENT.with(|current| *current.borrow_mut() = Some(host));
        let result = call();
        if let Some(host) = CURRENT.with(|current| current.borrow_mut().take()) {
            *self = host;
        }
        result
    }

    pub(crate) fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }

    fn range(&self, file: FileId, offset: u64, len: u64) -> Result<&[u8], PluginError> {
        let content = self.files.get(&file).ok_or_else(|| {
            PluginError::Terminal(format!(
                "access denied: file {file} was not given to this call"
            ))
        })?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = offset
            .checked_add(len)
            .and_then(|end| usize::try_from(end).ok())
            .unwrap_or(usize::MAX);
        content.get(start..end).ok_or_else(|| {
            PluginError::InvalidParams(format!(
                "range {offset}+{len} is past the end of file {file} ({} bytes)",
                content.len()
            ))
        })
    }

    pub(crate) fn read_file(
        &mut self,
        file: FileId,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, PluginError> {
        let size = self.files.get(&file).map_or(0, |c| c.len() as u64);
        let len = u64::from(len).min(size.saturating_sub(offset));
        self.range(file, offset, len).map(<[u8]>::to_vec)
    }

    pub(crate) fn sha256_range(
        &mut self,
        file: FileId,
        offset: u64,
        len: u64,
    ) -> Result<String, PluginError> {
        let bytes = self.range(file, offset, len)?;
        Ok(sha256_hex(bytes))
    }

    pub(crate) fn crc32_range(
        &mut self,
        file: FileId,
        offset: u64,
        len: u64,
    ) -> Result<u32, PluginError> {
        self.range(file, offset, len).map(crc32)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        self.output.extend_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn append_file(
        &mut self,
        file: FileId,
        offset: u64,
        len: u64,
    ) -> Result<(), PluginError> {
        let bytes = self.range(file, offset, len)?.to_vec();
        self.output.extend_from_slice(&bytes);
        Ok(())
    }

    pub(crate) fn send(&mut self, request: &Request) -> Result<Response, PluginError> {
        let body = match &request.body {
            Body::Empty => Vec::new(),
            Body::Bytes(bytes) => bytes.clone(),
            Body::FileRange(range) => self.range(range.file, range.offset, range.len)?.to_vec(),
        };
        match self.http.as_mut() {
            Some(handler) => handler(request, body),
            None => Err(PluginError::Terminal(format!(
                "access denied: no HTTP host is allowed (MockHost::with_http was not set) for {}",
                request.url
            ))),
        }
    }
}

/// Runs `f` against the mock installed by [`MockHost::run`] on this thread.
pub(crate) fn with<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let host = current
            .as_mut()
            .expect("wharf_sdk host functions need a host: wrap the call in MockHost::run");
        f(host)
    })
}

/// CRC-32 (IEEE), bitwise; the mock host only hashes test-sized inputs.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(bytes))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn files_not_given_are_denied_and_ranges_are_checked() {
        let mut host = MockHost::new().with_file(1, b"hello".to_vec());
        host.run(|| {
            assert_eq!(crate::host::read_file(1, 1, 100).unwrap(), b"ello");
            assert!(matches!(
                crate::host::read_file(2, 0, 1),
                Err(PluginError::Terminal(_))
            ));
            assert!(matches!(
                crate::output::append_file(1, 3, 10),
                Err(PluginError::InvalidParams(_))
            ));
            crate::output::append_file(1, 0, 2).unwrap();
        });
        assert_eq!(host.output, b"he");
    }
}
