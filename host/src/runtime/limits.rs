//! Per-call resource limits and the memory limiter that enforces them.

use std::time::Duration;

/// What one plugin call may use. Defaults live in `config.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory the plugin may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget of one call: guest time and host-call time together.
    pub timeout: Duration,
    /// Bytes an exporter may write to its output, appended files included.
    pub output_bytes: u64,
    /// Bytes of an HTTP response body handed back to an uploader.
    pub http_response_bytes: u64,
}

/// Rejects zero and absurd limits, naming the key.
pub fn validate_limits(limits: &Limits, max_memory_bytes: u64) -> Result<(), String> {
    if limits.memory_bytes < (1 << 20) || limits.memory_bytes > max_memory_bytes {
        return Err(format!(
            "memory_bytes = {} must be between 1 MiB and the runtime's maximum of {max_memory_bytes}",
            limits.memory_bytes
        ));
    }
    if limits.timeout.is_zero() || limits.timeout > Duration::from_secs(24 * 3600) {
        return Err(format!(
            "timeout_ms = {} must be between 1 and 86400000",
            limits.timeout.as_millis()
        ));
    }
    if limits.output_bytes == 0 {
        return Err("output_bytes must be greater than 0".into());
    }
    if limits.http_response_bytes == 0 || limits.http_response_bytes > (1 << 30) {
        return Err(format!(
            "http_response_bytes = {} must be between 1 and 1073741824",
            limits.http_response_bytes
        ));
    }
    Ok(())
}

/// Denies memory and table growth past the limits and remembers that it did,
/// so a failed call can be reported as "memory limit" rather than the
/// allocation-failure trap it turns into inside the guest.
pub(crate) struct MemoryLimiter {
    memory_bytes: usize,
    pub(crate) denied: bool,
}

/// Tables hold function references; no honest plugin needs more.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub(crate) fn new(memory_bytes: u64) -> Self {
        MemoryLimiter {
            memory_bytes: usize::try_from(memory_bytes).unwrap_or(usize::MAX),
            denied: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }
}
