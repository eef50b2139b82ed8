//! The `host` interface: logging, the clock, and reads and hashes of the
//! files handed to the call.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::{CHUNK, granted_size, open_range};
use crate::runtime::bindings::{Level, PluginError, host_api};
use crate::runtime::call::CallState;

/// Longest log message kept; the rest is cut so a plugin cannot flood logs.
const MAX_LOG_MESSAGE: usize = 4096;
/// Largest single `read-file`; plugins read big files in ranges.
const MAX_READ: u32 = 16 << 20;

impl host_api::Host for CallState {
    fn log(&mut self, level: Level, mut message: String) -> wasmtime::Result<()> {
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" […]");
        }
        let plugin = self.plugin.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(now)
    }

    fn read_file(
        &mut self,
        file: u64,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, PluginError>> {
        self.check_deadline()?;
        if len > MAX_READ {
            return Ok(Err(PluginError::InvalidParams(format!(
                "read-file of {len} bytes: read at most {MAX_READ} bytes per call"
            ))));
        }
        let size = match granted_size(self, file) {
            Ok(size) => size,
            Err(err) => return Ok(Err(err)),
        };
        let len = u64::from(len).min(size.saturating_sub(offset));
        let handle = match open_range(self, file, offset.min(size), len) {
            Ok(handle) => handle,
            Err(err) => return Ok(Err(err)),
        };
        let mut bytes = Vec::with_capacity(len as usize);
        Ok(handle
            .take(len)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
            .map_err(|err| PluginError::Transient(format!("file {file} cannot be read: {err}"))))
    }

    fn sha256_range(
        &mut self,
        file: u64,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<String, PluginError>> {
        let mut hasher = Sha256::new();
        Ok(self
            .digest_range(file, offset, len, |chunk| hasher.update(chunk))?
            .map(|()| hex::encode(hasher.finalize())))
    }

    fn crc32_range(
        &mut self,
        file: u64,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<u32, PluginError>> {
        let mut hasher = crc32fast::Hasher::new();
        Ok(self
            .digest_range(file, offset, len, |chunk| hasher.update(chunk))?
            .map(|()| hasher.finalize()))
    }
}

impl CallState {
    /// Feeds a granted range to `update` chunk by chunk, checking the
    /// deadline between chunks.
    fn digest_range(
        &mut self,
        file: u64,
        offset: u64,
        len: u64,
        mut update: impl FnMut(&[u8]),
    ) -> wasmtime::Result<Result<(), PluginError>> {
        self.check_deadline()?;
        let mut handle = match open_range(self, file, offset, len) {
            Ok(handle) => handle,
            Err(err) => return Ok(Err(err)),
        };
        let mut buffer = vec![0u8; CHUNK.min(len) as usize];
        let mut left = len;
        while left > 0 {
            self.check_deadline()?;
            let want = CHUNK.min(left) as usize;
            if let Err(err) = handle.read_exact(&mut buffer[..want]) {
                return Ok(Err(PluginError::Transient(format!(
                    "file {file} cannot be read: {err}"
                ))));
            }
            update(&buffer[..want]);
            left -= want as u64;
        }
        Ok(Ok(()))
    }
}
