//! A mock host for testing plugin logic natively with `cargo test`.
//!
//! It behaves like the real host where a plugin can tell: only files added
//! with [`MockHost::with_file`] exist, reads are capped at 16 MiB and clipped
//! at the end of a file, ranges past the end are `invalid-params`, local
//! keys are checked as the host checks them, and HTTP goes to a handler the
//! test provides (without one, every request is access denied).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::PluginError;
use crate::disk::DiskSpace;
use crate::host::Level;
use crate::http::{Body, Request, Response};

type HttpHandler = Box<dyn FnMut(&Request<'_>, Vec<u8>) -> Result<Response, PluginError>>;

/// Largest single read, as on the host.
const MAX_READ: u32 = 16 << 20;

/// What the plugin saw and did during [`MockHost::run`].
pub struct MockHost {
    files: HashMap<u64, Vec<u8>>,
    /// Clock value returned by `host::now_ms`.
    pub now_ms: i64,
    /// What `disk::space` returns.
    pub disk: DiskSpace,
    /// Everything the plugin logged, in order.
    pub logs: Vec<(Level, String)>,
    /// Everything an exporter wrote or appended, in order.
    pub output: Vec<u8>,
    /// What an uploader placed in a local destination, by key; `None` when
    /// the destination is not local (every `local` call is then denied).
    pub local: Option<BTreeMap<String, Vec<u8>>>,
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

fn denied(what: String) -> PluginError {
    PluginError::AccessDenied(what)
}

impl MockHost {
    pub fn new() -> Self {
        MockHost {
            files: HashMap::new(),
            now_ms: 1_700_000_000_000,
            disk: DiskSpace {
                total_bytes: 1 << 40,
                free_bytes: 1 << 39,
            },
            logs: Vec::new(),
            output: Vec::new(),
            local: None,
            http: None,
        }
    }

    /// Hands a file with this content to the call, as `File::mock(id)`.
    pub fn with_file(mut self, id: u64, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(id, content.into());
        self
    }

    pub fn with_now_ms(mut self, now_ms: i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    pub fn with_disk(mut self, total_bytes: u64, free_bytes: u64) -> Self {
        self.disk = DiskSpace {
            total_bytes,
            free_bytes,
        };
        self
    }

    /// Makes the destination local: `local::place` stores into [`MockHost::local`].
    pub fn with_local_destination(mut self) -> Self {
        self.local = Some(BTreeMap::new());
        self
    }

    /// Answers `http::send`; the handler gets the request and its body bytes
    /// (a file-range body is resolved to the bytes the host would stream).
    pub fn with_http(
        mut self,
        handler: impl FnMut(&Request<'_>, Vec<u8>) -> Result<Response, PluginError> + 'static,
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

    fn content(&self, file: u64) -> Result<&[u8], PluginError> {
        self.files
            .get(&file)
            .map(Vec::as_slice)
            .ok_or_else(|| denied(format!("file {file} was not given to this call")))
    }

    fn range(&self, file: u64, offset: u64, len: u64) -> Result<&[u8], PluginError> {
        let content = self.content(file)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = offset
            .checked_add(len)
            .and_then(|end| usize::try_from(end).ok())
            .unwrap_or(usize::MAX);
        content.get(start..end).ok_or_else(|| {
            PluginError::InvalidParams(format!(
                "range {offset}+{len} is past the end of the file ({} bytes)",
                content.len()
            ))
        })
    }

    pub(crate) fn size(&mut self, file: u64) -> u64 {
        self.content(file).map_or(0, |c| c.len() as u64)
    }

    pub(crate) fn read(
        &mut self,
        file: u64,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, PluginError> {
        if len > MAX_READ {
            return Err(PluginError::InvalidParams(format!(
                "read of {len} bytes: read at most {MAX_READ} bytes per call"
            )));
        }
        let size = self.content(file)?.len() as u64;
        let len = u64::from(len).min(size.saturating_sub(offset));
        self.range(file, offset.min(size), len).map(<[u8]>::to_vec)
    }

    pub(crate) fn sha256(
        &mut self,
        file: u64,
        offset: u64,
        len: u64,
    ) -> Result<String, PluginError> {
        Ok(sha256_hex(self.range(file, offset, len)?))
    }

    pub(crate) fn crc32(&mut self, file: u64, offset: u64, len: u64) -> Result<u32, PluginError> {
        self.range(file, offset, len).map(crc32)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), PluginError> {
        self.output.extend_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn append_file(
        &mut self,
        file: u64,
        offset: u64,
        len: u64,
    ) -> Result<(), PluginError> {
        let bytes = self.range(file, offset, len)?.to_vec();
        self.output.extend_from_slice(&bytes);
        Ok(())
    }

    pub(crate) fn send(&mut self, request: &Request<'_>) -> Result<Response, PluginError> {
        let body = match &request.body {
            Body::Empty => Vec::new(),
            Body::Bytes(bytes) => bytes.clone(),
            Body::FileRange { file, offset, len } => self.range(file.id, *offset, *len)?.to_vec(),
        };
        match self.http.as_mut() {
            Some(handler) => handler(request, body),
            None => Err(denied(format!(
                "no HTTP host is allowed (MockHost::with_http was not set) for {}",
                request.url
            ))),
        }
    }

    fn local_store(&mut self, key: &str) -> Result<&mut BTreeMap<String, Vec<u8>>, PluginError> {
        check_key(key)?;
        self.local
            .as_mut()
            .ok_or_else(|| denied("this call's destination is not a local directory".into()))
    }

    pub(crate) fn place(
        &mut self,
        file: u64,
        offset: u64,
        len: u64,
        key: &str,
    ) -> Result<(), PluginError> {
        let bytes = self.range(file, offset, len)?.to_vec();
        self.local_store(key)?.insert(key.to_owned(), bytes);
        Ok(())
    }

    pub(crate) fn stat(&mut self, key: &str) -> Result<Option<u64>, PluginError> {
        Ok(self.local_store(key)?.get(key).map(|b| b.len() as u64))
    }

    pub(crate) fn stored_sha256(&mut self, key: &str) -> Result<Option<String>, PluginError> {
        Ok(self.local_store(key)?.get(key).map(|b| sha256_hex(b)))
    }
}

/// The host's rule for local keys: a relative path of plain names.
fn check_key(key: &str) -> Result<(), PluginError> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key.contains(['\\', '\0'])
        || key.chars().any(char::is_control)
        || key.split('/').any(|part| {
            part.is_empty() || part == "." || part == ".." || part.starts_with(".wharf-part-")
        });
    if bad {
        return Err(PluginError::InvalidParams(format!(
            "key {key:?} is refused; use a relative path of plain names separated by /"
        )));
    }
    Ok(())
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
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::File;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn files_not_given_are_denied_and_ranges_are_checked() {
        let mut host = MockHost::new().with_file(1, b"hello".to_vec());
        host.run(|| {
            let file = File::mock(1);
            assert_eq!(file.read(1, 100).unwrap(), b"ello");
            assert!(matches!(
                File::mock(2).read(0, 1),
                Err(PluginError::AccessDenied(_))
            ));
            assert!(matches!(
                crate::output::append_file(&file, 3, 10),
                Err(PluginError::InvalidParams(_))
            ));
            crate::output::append_file(&file, 0, 2).unwrap();
        });
        assert_eq!(host.output, b"he");
    }

    #[test]
    fn local_keys_are_checked_like_the_host() {
        let mut host = MockHost::new()
            .with_file(1, b"hello".to_vec())
            .with_local_destination();
        host.run(|| {
            let file = File::mock(1);
            crate::local::place(&file, 0, 5, "a/b").unwrap();
            assert_eq!(crate::local::stat("a/b").unwrap(), Some(5));
            for bad in ["../x", "/abs", "a//b", "a\0b"] {
                assert!(matches!(
                    crate::local::place(&file, 0, 5, bad),
                    Err(PluginError::InvalidParams(_))
                ));
            }
        });
        assert_eq!(host.local.unwrap()["a/b"], b"hello");
    }
}
