//! One plugin call: a fresh `Store` from the plugin's `InstancePre`, the
//! limits of the call, what it is granted, and the classification of how it
//! ended. The world-specific calls live beside this file: `export.rs`,
//! `retention.rs` (a planner run on one instance) and `upload.rs`.
//!
//! Invariant: whatever the plugin does, a call ends in `Ok` or in exactly one
//! `CallError`, the store is dropped, and the host can serve the next call.

mod export;
mod retention;
mod upload;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};

use super::bindings::{PluginError, PluginInfo, TransientError};
use super::host::{DeniedImport, HttpAccess, LocalAccess, LogBudget, Output};
use super::limits::MemoryLimiter;
use super::registry::{Plugin, WorldPre};

pub use export::{CallFile, Exported};
pub use retention::{Batch, Decided, PlanSession};
pub use upload::{DestinationAccess, UploadTarget};

/// Named parameters of a call.
pub type Params = Vec<(String, String)>;

/// The three classes every failure falls into; the job queue retries only
/// `Transient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidParams,
    Transient,
    Terminal,
}

/// How a plugin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    #[error("transient failure: {message}")]
    Transient {
        message: String,
        /// The plugin's hint of when a retry may succeed.
        retry_after: Option<Duration>,
    },
    #[error("failed: {0}")]
    Terminal(String),
    #[error("ran past its deadline of {0:?} (guest and host time together)")]
    Deadline(Duration),
    #[error("tried to grow its memory past the limit of {0} bytes")]
    MemoryLimit(u64),
    #[error("overflowed its stack")]
    StackOverflow,
    #[error("wrote more than its output limit of {0} bytes")]
    OutputLimit(u64),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("returned an invalid result: {0}")]
    InvalidOutput(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("is quarantined after {0} consecutive traps; fix it and reload plugins")]
    Quarantined(u32),
    #[error("is a {found} plugin and cannot be called as {expected}")]
    WrongWorld {
        expected: &'static str,
        found: &'static str,
    },
    #[error("could not be run by the host: {0}")]
    Host(String),
}

impl CallError {
    /// A transient failure with no retry hint.
    pub fn transient(message: impl Into<String>) -> CallError {
        CallError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            CallError::InvalidParams(_) => ErrorClass::InvalidParams,
            CallError::Transient { .. } | CallError::Host(_) => ErrorClass::Transient,
            _ => ErrorClass::Terminal,
        }
    }

    /// Sandbox faults count towards quarantine; errors the plugin returned
    /// on purpose do not.
    fn is_trap(&self) -> bool {
        matches!(
            self,
            CallError::Deadline(_)
                | CallError::MemoryLimit(_)
                | CallError::StackOverflow
                | CallError::OutputLimit(_)
                | CallError::AccessDenied(_)
                | CallError::InvalidOutput(_)
                | CallError::Trap(_)
        )
    }
}

impl From<PluginError> for CallError {
    fn from(error: PluginError) -> Self {
        match error {
            PluginError::InvalidParams(msg) => CallError::InvalidParams(msg),
            PluginError::Transient(TransientError {
                message,
                retry_after_ms,
            }) => CallError::Transient {
                message,
                retry_after: retry_after_ms.map(Duration::from_millis),
            },
            PluginError::Terminal(msg) => CallError::Terminal(msg),
            PluginError::AccessDenied(msg) => CallError::AccessDenied(msg),
        }
    }
}

/// A transient error for the guest, without a retry hint.
pub(crate) fn transient(message: String) -> PluginError {
    PluginError::Transient(TransientError {
        message,
        retry_after_ms: None,
    })
}

/// A fault a host function detected; it wins over whatever the guest
/// returns afterwards.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Fault {
    #[error("deadline exceeded during a host call")]
    Deadline,
    #[error("output limit exceeded")]
    OutputLimit,
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// A misuse of an import that no honest plugin makes.
    #[error("{0}")]
    Trap(String),
    /// The host itself failed inside a host function (not the plugin's
    /// fault; worth retrying).
    #[error("{0}")]
    Host(String),
}

/// The data of one call's store.
pub(crate) struct CallState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) plugin: String,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    /// The call's resources: file handles, log streams, pollables.
    pub(crate) table: ResourceTable,
    pub(crate) output: Option<Output>,
    pub(crate) http: Option<HttpAccess>,
    pub(crate) local: Option<LocalAccess>,
    /// A directory on the filesystem whose space `disk.space` reports.
    pub(crate) disk: Option<PathBuf>,
    pub(crate) log: LogBudget,
    pub(crate) fault: Option<Fault>,
    /// The deadline passed while the host waited on the network for the
    /// plugin (a stalled destination): the call fails as a deadline, but it
    /// is not the plugin's fault and does not count towards quarantine.
    pub(crate) stalled_on_network: bool,
    /// Set once the plugin is instantiated: from then on every failure
    /// (a malformed result, a forged handle) is the plugin's, never the host's.
    pub(crate) running: bool,
}

impl CallState {
    /// Records a fault and returns the error that traps the guest.
    pub(crate) fn trap(&mut self, fault: Fault) -> wasmtime::Error {
        self.fault.get_or_insert(fault.clone());
        wasmtime::Error::new(fault)
    }

    /// Traps when the call's deadline has passed, so host time counts too.
    pub(crate) fn check_deadline(&mut self) -> wasmtime::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(self.trap(Fault::Deadline));
        }
        Ok(())
    }

    /// Records a denied access: the guest gets an `access-denied` value it
    /// may inspect, but the call fails as access denied whatever it returns.
    pub(crate) fn deny(&mut self, what: String) -> PluginError {
        self.fault.get_or_insert(Fault::AccessDenied(what.clone()));
        PluginError::AccessDenied(what)
    }
}

/// What one call is given besides its arguments.
#[derive(Default)]
pub(crate) struct Grants {
    pub(crate) output: Option<Output>,
    pub(crate) http: Option<HttpAccess>,
    pub(crate) local: Option<LocalAccess>,
    pub(crate) disk: Option<PathBuf>,
}

/// Most text `describe` may return, all strings together.
const MAX_DESCRIBE_BYTES: usize = 64 << 10;

impl Plugin {
    /// Calls `describe`. An answer over 64 KiB of text is an invalid result.
    pub fn describe(&self) -> Result<PluginInfo, CallError> {
        let (info, _) = self.invoke("describe", Grants::default(), |store| {
            let info = match &self.pre {
                WorldPre::Exporter(pre) => entered(store, |store| pre.instantiate(store))?
                    .wharf_plugin_export_format()
                    .call_describe(&mut *store)?,
                WorldPre::Retention(pre) => entered(store, |store| pre.instantiate(store))?
                    .wharf_plugin_retention_policy()
                    .call_describe(&mut *store)?,
                WorldPre::Uploader(pre) => entered(store, |store| pre.instantiate(store))?
                    .wharf_plugin_transfer()
                    .call_describe(&mut *store)?,
            };
            Ok(Ok(info))
        })?;
        let text = [&info.name, &info.version, &info.description]
            .iter()
            .map(|s| s.len())
            .sum::<usize>()
            + info
                .params
                .iter()
                .map(|p| {
                    p.name.len()
                        + p.description.len()
                        + p.default_value.as_ref().map_or(0, String::len)
                })
                .sum::<usize>();
        if text > MAX_DESCRIBE_BYTES {
            return Err(self.invalid_output(format!(
                "describe returned {text} bytes of text; at most {MAX_DESCRIBE_BYTES} are kept"
            )));
        }
        Ok(info)
    }

    pub(crate) fn wrong_world(&self, expected: &'static str) -> CallError {
        CallError::WrongWorld {
            expected,
            found: self.world.name(),
        }
    }

    pub(crate) fn invalid_output(&self, reason: String) -> CallError {
        let error = CallError::InvalidOutput(reason);
        self.record(&error, false);
        error
    }

    /// The one place a single call runs: quarantine check, fresh store with
    /// limits, the call itself, classification, trap accounting and the span.
    pub(crate) fn invoke<R>(
        &self,
        function: &'static str,
        grants: Grants,
        call: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<(R, CallState), CallError> {
        self.check_quarantine()?;
        let span = self.span(function);
        let _entered = span.enter();
        let mut store = self.new_store(grants);
        let started = self.arm(&mut store);
        let outcome = call(&mut store);
        let mut state = store.into_data();
        self.settle(outcome, &mut state, started)
            .map(|value| (value, state))
    }

    pub(crate) fn check_quarantine(&self) -> Result<(), CallError> {
        let threshold = self.runtime.config.quarantine_after;
        let traps = self.consecutive_traps.load(Ordering::Relaxed);
        if threshold > 0 && traps >= threshold {
            return Err(CallError::Quarantined(traps));
        }
        Ok(())
    }

    pub(crate) fn span(&self, function: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "plugin_call",
            plugin = %self.name,
            version = %self.info.version,
            world = self.world.name(),
            function,
            elapsed_us = tracing::field::Empty,
        )
    }

    pub(crate) fn new_store(&self, grants: Grants) -> Store<CallState> {
        let now = Instant::now();
        let state = CallState {
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
            plugin: self.name.clone(),
            started: now,
            deadline: now + self.limits.timeout,
            table: ResourceTable::new(),
            output: grants.output,
            http: grants.http,
            local: grants.local,
            disk: grants.disk,
            log: LogBudget::default(),
            fault: None,
            stalled_on_network: false,
            running: false,
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store
    }

    /// Starts the clock of one call: the same deadline for guest time (epochs)
    /// and host time (checked by host functions).
    pub(crate) fn arm(&self, store: &mut Store<CallState>) -> Instant {
        let started = Instant::now();
        let state = store.data_mut();
        state.deadline = started + self.limits.timeout;
        state.limiter.denied = false;
        store.set_epoch_deadline(epoch_ticks(
            self.limits.timeout,
            self.runtime.config.epoch_tick,
        ));
        started
    }

    /// Turns how a call ended into its result, counts traps and logs once.
    pub(crate) fn settle<R>(
        &self,
        outcome: wasmtime::Result<Result<R, PluginError>>,
        state: &mut CallState,
        started: Instant,
    ) -> Result<R, CallError> {
        let timeout = self.limits.timeout;
        let panic = state.log.take_panic();
        state.log.finish(&self.name);
        let result = match outcome {
            // A denied access fails the call even if the plugin carried on.
            Ok(value) => match state.fault.take() {
                Some(fault) => Err(fault_error(fault, &self.limits, timeout)),
                None => value.map_err(CallError::from),
            },
            Err(error) => Err(classify(error, state, &self.limits, timeout)),
        };
        // A trap after a panic: say what the panic said, not only that the
        // guest reached `unreachable`.
        let result = match (result, panic) {
            (Err(CallError::Trap(trap)), Some(panic)) => {
                Err(CallError::Trap(format!("{trap}; {panic}")))
            }
            (result, _) => result,
        };
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::Span::current().record("elapsed_us", elapsed_us);
        match &result {
            Ok(_) => {
                self.consecutive_traps.store(0, Ordering::Relaxed);
                tracing::debug!(elapsed_us, "plugin call succeeded");
            }
            Err(error) => {
                self.record(error, state.stalled_on_network);
                tracing::warn!(elapsed_us, error = %error, class = ?error.class(), "plugin call failed");
            }
        }
        result
    }

    /// Counts consecutive traps; quarantines at the threshold. A deadline
    /// the network used up (`stalled`) neither counts nor clears the count:
    /// a destination that stalls must not quarantine its uploader for every
    /// other destination.
    fn record(&self, error: &CallError, stalled: bool) {
        if stalled && matches!(error, CallError::Deadline(_)) {
            tracing::info!(plugin = %self.name, "the call's time ran out waiting on the network; not counted towards quarantine");
            return;
        }
        if !error.is_trap() {
            self.consecutive_traps.store(0, Ordering::Relaxed);
            return;
        }
        let traps = self.consecutive_traps.fetch_add(1, Ordering::Relaxed) + 1;
        if traps == self.runtime.config.quarantine_after {
            tracing::error!(plugin = %self.name, traps, "plugin quarantined until plugins are reloaded");
        }
    }
}

/// Marks the store as running the plugin's code once instantiation worked.
pub(crate) fn entered<T>(
    store: &mut Store<CallState>,
    instantiate: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<T>,
) -> wasmtime::Result<T> {
    let instance = instantiate(store)?;
    store.data_mut().running = true;
    Ok(instance)
}

/// Epoch ticks covering `timeout`, rounded up, plus one for the partial tick
/// the call starts in.
fn epoch_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    (timeout.as_nanos().div_ceil(tick) as u64).saturating_add(1)
}

fn fault_error(fault: Fault, limits: &super::Limits, timeout: Duration) -> CallError {
    match fault {
        Fault::Deadline => CallError::Deadline(timeout),
        Fault::OutputLimit => CallError::OutputLimit(limits.output_bytes),
        Fault::AccessDenied(what) => CallError::AccessDenied(what),
        Fault::Trap(what) => CallError::Trap(what),
        Fault::Host(what) => CallError::Host(what),
    }
}

/// Turns a wasmtime error into the reason the call failed. Flags the host
/// recorded come first: a memory-limit hit surfaces in the guest as an
/// allocation failure, and a host-side fault as a trap.
fn classify(
    error: wasmtime::Error,
    state: &mut CallState,
    limits: &super::Limits,
    timeout: Duration,
) -> CallError {
    if let Some(fault) = state.fault.take() {
        return fault_error(fault, limits, timeout);
    }
    if state.limiter.denied {
        return CallError::MemoryLimit(limits.memory_bytes);
    }
    if let Some(denied) = error.downcast_ref::<DeniedImport>() {
        return CallError::AccessDenied(denied.to_string());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => CallError::Deadline(timeout),
            Trap::StackOverflow => CallError::StackOverflow,
            trap => CallError::Trap(trap.to_string()),
        };
    }
    // After instantiation, anything else went wrong in the plugin's hands:
    // a malformed result, a bad pointer, a forged handle.
    if state.running {
        return CallError::Trap(error.root_cause().to_string());
    }
    // Before it: the host could not instantiate (for example, the instance
    // pool is exhausted); worth retrying.
    CallError::Host(format!("{error:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ticks_round_up() {
        let ms = Duration::from_millis;
        assert_eq!(epoch_ticks(ms(100), ms(5)), 21);
        assert_eq!(epoch_ticks(ms(101), ms(5)), 22);
        assert_eq!(epoch_ticks(ms(0), ms(5)), 1);
    }

    #[test]
    fn only_transient_failures_are_retryable() {
        assert_eq!(CallError::transient("x").class(), ErrorClass::Transient);
        assert_eq!(
            CallError::InvalidParams("x".into()).class(),
            ErrorClass::InvalidParams
        );
        assert_eq!(
            CallError::Deadline(Duration::ZERO).class(),
            ErrorClass::Terminal
        );
        assert_eq!(CallError::Quarantined(5).class(), ErrorClass::Terminal);
    }

    #[test]
    fn a_retry_hint_survives_into_the_call_error() {
        let error = CallError::from(PluginError::Transient(TransientError {
            message: "slow down".into(),
            retry_after_ms: Some(1500),
        }));
        assert_eq!(
            error,
            CallError::Transient {
                message: "slow down".into(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
    }
}
