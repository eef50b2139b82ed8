//! The `host` interface (logging, the clock) and the log budget every line
//! a plugin emits goes through, whether by `host.log` or on stdout/stderr.
//!
//! Invariant: one call logs at most `MAX_MESSAGES` lines and `MAX_BYTES`
//! bytes, each line at most `MAX_LINE` bytes; what is over is dropped and
//! counted, and the count is logged once when the call ends.

use crate::runtime::bindings::{Level, host_api};
use crate::runtime::call::CallState;

/// Longest line kept; the rest is cut.
pub(crate) const MAX_LINE: usize = 4096;
/// Lines one call may log.
const MAX_MESSAGES: u32 = 1000;
/// Bytes one call may log, all lines together.
const MAX_BYTES: usize = 256 << 10;

/// What one call has logged so far.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    messages: u32,
    bytes: usize,
    dropped: u64,
    /// The first line that reads like a panic message (Rust's panic hook
    /// and the SDK's both say "panicked"), kept so the trap that follows
    /// can say why, even when the line itself was over the budget.
    panic: Option<String>,
}

impl LogBudget {
    /// Logs one line for `plugin` if the budget allows, else counts it.
    pub(crate) fn emit(&mut self, plugin: &str, level: Level, line: &str) {
        let line = cut(line);
        if self.panic.is_none() && line.contains("panicked") {
            self.panic = Some(cut_at(line, MAX_PANIC).replace('\n', " "));
        }
        if self.messages >= MAX_MESSAGES || self.bytes.saturating_add(line.len()) > MAX_BYTES {
            self.dropped += 1;
            return;
        }
        self.messages += 1;
        self.bytes += line.len();
        let cut_mark = if line.len() < MAX_LINE { "" } else { " […]" };
        match level {
            Level::Trace => tracing::trace!(plugin, "{line}{cut_mark}"),
            Level::Debug => tracing::debug!(plugin, "{line}{cut_mark}"),
            Level::Info => tracing::info!(plugin, "{line}{cut_mark}"),
            Level::Warn => tracing::warn!(plugin, "{line}{cut_mark}"),
            Level::Error => tracing::error!(plugin, "{line}{cut_mark}"),
        }
    }

    /// The panic message the plugin logged during this call, if any.
    pub(crate) fn take_panic(&mut self) -> Option<String> {
        self.panic.take()
    }

    /// Logs how many lines were dropped, once, at the end of a call.
    pub(crate) fn finish(&mut self, plugin: &str) {
        if self.dropped > 0 {
            tracing::warn!(
                plugin,
                dropped = self.dropped,
                "{} log messages of this plugin call were dropped (over {MAX_MESSAGES} lines or {MAX_BYTES} bytes)",
                self.dropped
            );
        }
        *self = LogBudget::default();
    }
}

/// Longest panic message carried into a call's error.
const MAX_PANIC: usize = 512;

/// The first `MAX_LINE` bytes of `line`, cut at a character boundary.
fn cut(line: &str) -> &str {
    cut_at(line, MAX_LINE)
}

fn cut_at(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

impl host_api::Host for CallState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.check_deadline()?;
        self.log.emit(&self.plugin, level, &message);
        Ok(())
    }

    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_drops_and_counts_what_is_over() {
        let mut budget = LogBudget::default();
        for _ in 0..MAX_MESSAGES + 5 {
            budget.emit("p", Level::Trace, "x");
        }
        assert_eq!(budget.messages, MAX_MESSAGES);
        assert_eq!(budget.dropped, 5);
        budget.finish("p");
        assert_eq!(budget.dropped, 0);
    }

    #[test]
    fn a_panic_message_is_kept_for_the_trap_even_past_the_budget() {
        let mut budget = LogBudget::default();
        for _ in 0..MAX_MESSAGES {
            budget.emit("p", Level::Trace, "x");
        }
        budget.emit(
            "p",
            Level::Error,
            "plugin panicked: at src/lib.rs:3:5:\nboom",
        );
        assert_eq!(
            budget.take_panic().as_deref(),
            Some("plugin panicked: at src/lib.rs:3:5: boom")
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let line = "é".repeat(MAX_LINE);
        let kept = cut(&line);
        assert!(kept.len() <= MAX_LINE && kept.len() >= MAX_LINE - 1);
        let mut budget = LogBudget::default();
        for _ in 0..200 {
            budget.emit("p", Level::Trace, &line);
        }
        assert!(budget.bytes <= MAX_BYTES);
        assert!(budget.dropped > 0);
    }
}
