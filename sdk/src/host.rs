//! Capabilities every plugin has: logging, the clock, and reading the files
//! handed to the current call.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::exporter::wharf::plugin::host as imports;
use crate::{FileId, PluginError};

pub use crate::__bindings::exporter::wharf::plugin::host::Level;

/// Logs a message; the host tags it with the plugin's name.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    imports::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.log(level, message));
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    return imports::now_ms();
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.now_ms)
}

/// Reads up to `len` bytes at `offset` of a file handed to this call.
pub fn read_file(file: FileId, offset: u64, len: u32) -> Result<Vec<u8>, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::read_file(file, offset, len);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.read_file(file, offset, len))
}

/// Lower-case hex sha256 of a byte range, computed by the host.
pub fn sha256_range(file: FileId, offset: u64, len: u64) -> Result<String, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::sha256_range(file, offset, len);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.sha256_range(file, offset, len))
}

/// CRC-32 (IEEE) of a byte range, computed by the host.
pub fn crc32_range(file: FileId, offset: u64, len: u64) -> Result<u32, PluginError> {
    #[cfg(target_arch = "wasm32")]
    return imports::crc32_range(file, offset, len);
    #[cfg(not(target_arch = "wasm32"))]
    crate::mock::with(|host| host.crc32_range(file, offset, len))
}
